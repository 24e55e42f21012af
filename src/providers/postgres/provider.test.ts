import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startPgTarget, type PgTarget } from '../../../test/support/pg-target.js';
import { runProviderConformance } from '../provider.conformance.js';
import { ProviderError } from '../provider.js';
import { providerFactories } from '../registry.js';
import { createPostgresProvider, type PostgresProvider } from './provider.js';
import * as sql from './sql.js';
import { canLogin, connectAs, connectionFor, inAnHour, newPrincipal, newSecret, resolveSecret } from './test-helpers.js';

const readOnly = { memberOf: ['pg_read_all_data'], readOnly: true };
const writer = { grants: [{ privileges: ['SELECT', 'INSERT', 'UPDATE', 'USAGE'], on: { schema: 'public', tables: ['items'], sequences: 'all' } }] };

async function seed(target: PgTarget): Promise<void> {
  const admin = await target.admin();
  await admin.query('CREATE TABLE IF NOT EXISTS public.items (id serial PRIMARY KEY, name text NOT NULL)');
  await admin.query("INSERT INTO public.items (name) VALUES ('one'), ('two')");
  await admin.end();
}

runProviderConformance('postgres', async () => {
  const target = await startPgTarget();
  await seed(target);
  const provider = providerFactories.get('postgres')?.create({ name: 'conformance', kind: 'postgres', connection: connectionFor(target).connection }, resolveSecret);
  if (!provider) throw new Error('postgres is not registered');
  return { provider, privileges: { read: readOnly, write: writer }, canLogin, teardown: () => target.stop() };
});

describe('postgres provider against a scram-sha-256 target', () => {
  let target: PgTarget;
  let provider: PostgresProvider;
  beforeAll(async () => {
    target = await startPgTarget();
    await seed(target);
    provider = createPostgresProvider(connectionFor(target).connection, resolveSecret);
  });
  afterAll(async () => {
    await provider.close();
    await target.stop();
  });

  it('a read role logs in with its password and reads, but cannot write', async () => {
    const p = newPrincipal('read');
    const s = newSecret();
    await provider.provision({ principal: p, secret: s, privileges: readOnly, validUntil: inAnHour() });
    const c = await connectAs(provider.connectionInfo(p, s));
    expect((await c.query<{ n: string }>('SELECT count(*) AS n FROM public.items')).rows[0]?.n).toBe('2');
    expect((await c.query<{ v: string }>("SELECT current_setting('default_transaction_read_only') AS v")).rows[0]?.v).toBe('on');
    await expect(c.query("INSERT INTO public.items (name) VALUES ('x')")).rejects.toMatchObject({ code: '25006' });
    // Read-only is a guardrail; the privileges are the boundary: switching it off still cannot write.
    await c.query('SET default_transaction_read_only = off');
    await expect(c.query("INSERT INTO public.items (name) VALUES ('x')")).rejects.toMatchObject({ code: '42501' });
    await c.end();
    await provider.revoke([p]);
  });

  it('a write role (table grants + sequences) can insert into the granted table only', async () => {
    const admin = await target.admin();
    await admin.query('CREATE TABLE IF NOT EXISTS public.secrets (v text)');
    await admin.end();
    const p = newPrincipal('write');
    const s = newSecret();
    await provider.provision({ principal: p, secret: s, privileges: writer, validUntil: inAnHour() });
    const c = await connectAs(provider.connectionInfo(p, s));
    await c.query("INSERT INTO public.items (name) VALUES ('from-writer')");
    await expect(c.query('SELECT * FROM public.secrets')).rejects.toMatchObject({ code: '42501' });
    await c.end();
    await provider.revoke([p]);
  });

  it('the stored password is a SCRAM verifier (plaintext never sent) and a wrong password is refused', async () => {
    const p = newPrincipal('scram');
    const s = newSecret();
    await provider.provision({ principal: p, secret: s, privileges: readOnly, validUntil: inAnHour() });
    const admin = await target.admin();
    const row = (await admin.query<{ rolpassword: string }>('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [p])).rows[0];
    await admin.end();
    expect(row?.rolpassword).toMatch(/^SCRAM-SHA-256\$4096:/);
    expect(row?.rolpassword).not.toContain(s);
    expect(await canLogin(provider.connectionInfo(p, `${s}x`))).toBe(false);
    expect(await canLogin(provider.connectionInfo(p, s))).toBe(true);
    await provider.revoke([p]);
  });

  it('scramVerifier computes exactly what PostgreSQL stores for the same password and salt', async () => {
    const admin = await target.admin();
    const password = `q'\\"$$ ${newSecret()}`;
    await admin.query(`CREATE ROLE scram_ref PASSWORD ${sql.quoteLiteral(password)}`);
    const stored = (await admin.query<{ v: string }>("SELECT rolpassword AS v FROM pg_authid WHERE rolname = 'scram_ref'")).rows[0]?.v ?? '';
    await admin.query('DROP ROLE scram_ref');
    await admin.end();
    const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$/.exec(stored);
    expect(m).not.toBeNull();
    expect(await sql.scramVerifier(password, Buffer.from(m?.[2] ?? '', 'base64'), Number(m?.[1]))).toBe(stored);
  });

  it('two deployments on one cluster each list only the roles they marked, and unmarked ones (review 2026-12-02: one swept the other\'s)', async () => {
    const mine = createPostgresProvider(connectionFor(target).connection, resolveSecret, { deployment: 'hallpass mA' });
    const theirs = createPostgresProvider(connectionFor(target).connection, resolveSecret, { deployment: 'hallpass mB' });
    try {
      const a = newPrincipal('depa');
      const b = newPrincipal('depb');
      await mine.provision({ principal: a, secret: newSecret(), privileges: {}, validUntil: inAnHour() });
      await theirs.provision({ principal: b, secret: newSecret(), privileges: {}, validUntil: inAnHour() });
      const unmarked = newPrincipal('hand');
      const admin = await target.admin();
      try {
        await admin.query(`CREATE ROLE "${unmarked}" NOLOGIN`);
        expect((await admin.query<{ d: string }>("SELECT shobj_description(oid, 'pg_authid') AS d FROM pg_roles WHERE rolname = $1", [a])).rows[0]?.d).toBe('hallpass mA');
      } finally {
        await admin.end();
      }
      const listedMine = await mine.listManagedPrincipals();
      expect(listedMine).toContain(a);
      expect(listedMine).toContain(unmarked);
      expect(listedMine).not.toContain(b);
      // After a master key rotation the deployment's name changes; its roles marked with the old
      // name are still its own (review 2026-12-02: they were never swept again).
      const rotated = createPostgresProvider(connectionFor(target).connection, resolveSecret, { deployment: 'hallpass mA2', earlierDeployments: ['hallpass mA'] });
      const forgetful = createPostgresProvider(connectionFor(target).connection, resolveSecret, { deployment: 'hallpass mA2' });
      try {
        expect(await rotated.listManagedPrincipals()).toEqual(expect.arrayContaining([a, unmarked]));
        expect(await rotated.listManagedPrincipals()).not.toContain(b);
        expect(await forgetful.listManagedPrincipals()).not.toContain(a);
      } finally {
        await rotated.close();
        await forgetful.close();
      }
      expect(await theirs.listManagedPrincipals()).not.toContain(a);
      // Re-provisioning (a retried activation) keeps the mark.
      await mine.provision({ principal: a, secret: newSecret(), privileges: {}, validUntil: inAnHour() });
      expect(await theirs.listManagedPrincipals()).not.toContain(a);
      await mine.revoke([a, unmarked]);
      await theirs.revoke([b]);
    } finally {
      await mine.close();
      await theirs.close();
    }
  });

  it('VALID UNTIL in the past refuses login (the first layer of expiry)', async () => {
    const p = newPrincipal('past');
    const s = newSecret();
    await provider.provision({ principal: p, secret: s, privileges: readOnly, validUntil: new Date(Date.now() - 1000) });
    expect(await canLogin(provider.connectionInfo(p, s))).toBe(false);
    await provider.extend(p, inAnHour());
    expect(await canLogin(provider.connectionInfo(p, s))).toBe(true);
    await provider.revoke([p]);
  });

  it('real time: a credential valid for ~1.5 s logs in before and is refused after VALID UNTIL passes', async () => {
    const p = newPrincipal('rt');
    const s = newSecret();
    const until = new Date(Date.now() + 1500);
    await provider.provision({ principal: p, secret: s, privileges: readOnly, validUntil: until });
    expect(await canLogin(provider.connectionInfo(p, s))).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, until.getTime() - Date.now() + 200));
    expect(await canLogin(provider.connectionInfo(p, s))).toBe(false);
    await provider.revoke([p]);
  });

  it('extend moves VALID UNTIL; extending a missing principal is a non-retryable error', async () => {
    const p = newPrincipal('ext');
    await provider.provision({ principal: p, secret: newSecret(), privileges: readOnly, validUntil: inAnHour() });
    const later = new Date(Date.UTC(2099, 0, 2, 3, 4, 5));
    await provider.extend(p, later);
    const admin = await target.admin();
    const row = (await admin.query<{ rolvaliduntil: Date }>('SELECT rolvaliduntil FROM pg_roles WHERE rolname = $1', [p])).rows[0];
    await admin.end();
    expect(row?.rolvaliduntil.toISOString()).toBe(later.toISOString());
    await provider.revoke([p]);
    await expect(provider.extend(p, later)).rejects.toMatchObject({ name: 'ProviderError', retryable: false });
  });

  it('provision twice converges: connection limit, read-only and memberships follow the latest spec', async () => {
    const p = newPrincipal('conv');
    const s = newSecret();
    await provider.provision({ principal: p, secret: s, privileges: { ...readOnly, connectionLimit: 3 }, validUntil: inAnHour() });
    await provider.provision({ principal: p, secret: s, privileges: { ...readOnly, connectionLimit: 3 }, validUntil: inAnHour() });
    await provider.provision({ principal: p, secret: s, privileges: { memberOf: ['pg_write_all_data'] }, validUntil: inAnHour() });
    const admin = await target.admin();
    const role = (await admin.query<{ rolconnlimit: number; rolconfig: string[] | null }>('SELECT rolconnlimit, rolconfig FROM pg_roles WHERE rolname = $1', [p])).rows[0];
    const groups = (
      await admin.query<{ g: string }>(
        'SELECT g.rolname AS g FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1',
        [p],
      )
    ).rows.map((r) => r.g);
    await admin.end();
    expect(role?.rolconnlimit).toBe(-1);
    expect(role?.rolconfig ?? []).not.toContain('default_transaction_read_only=on');
    expect(groups).toEqual(['pg_write_all_data']);
    await provider.revoke([p]);
  });

  it('regression: concurrent provisions granting on one table all succeed (no "tuple concurrently updated")', async () => {
    const roles = Array.from({ length: 40 }, () => newPrincipal('conc'));
    const results = await Promise.allSettled(roles.map((p) => provider.provision({ principal: p, secret: newSecret(), privileges: writer, validUntil: inAnHour() })));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    const listed = await provider.listManagedPrincipals();
    expect(roles.every((p) => listed.includes(p))).toBe(true);
    await provider.revoke(roles);
  });

  it('revoke terminates an open session, removes the role and keeps it out', async () => {
    const p = newPrincipal('live');
    const s = newSecret();
    await provider.provision({ principal: p, secret: s, privileges: readOnly, validUntil: inAnHour() });
    const open = await connectAs(provider.connectionInfo(p, s));
    await open.query('SELECT 1');
    await provider.revoke([p]);
    await expect(open.query('SELECT 1')).rejects.toThrow();
    await open.end().catch(() => {});
    const admin = await target.admin();
    expect((await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [p])).rowCount).toBe(0);
    expect((await admin.query('SELECT 1 FROM pg_stat_activity WHERE usename = $1', [p])).rowCount).toBe(0);
    await admin.end();
    expect(await canLogin(provider.connectionInfo(p, s))).toBe(false);
    await provider.revoke([p]);
  });

  it('listManagedPrincipals escapes the LIKE wildcard: hpX... and hp-less roles are not listed', async () => {
    const admin = await target.admin();
    await admin.query('CREATE ROLE "hpXnotours" NOLOGIN');
    await admin.query('CREATE ROLE "hp" NOLOGIN');
    await admin.end();
    const p = newPrincipal('list');
    await provider.provision({ principal: p, secret: newSecret(), privileges: readOnly, validUntil: inAnHour() });
    const listed = await provider.listManagedPrincipals();
    expect(listed).toContain(p);
    expect(listed).not.toContain('hpXnotours');
    expect(listed.every((r) => r.startsWith('hp_'))).toBe(true);
    await provider.revoke([p]);
  });

  it('the DSN and env work with psql, even for a password full of URL and shell metacharacters', async () => {
    const p = newPrincipal('psql');
    const s = `a'b"c\\d$$e f@g:h/i?j#k%l&m`;
    await provider.provision({ principal: p, secret: s, privileges: readOnly, validUntil: inAnHour() });
    const info = provider.connectionInfo(p, s);
    const run = promisify(execFile);
    const byDsn = await run('psql', [info.dsn, '-Atc', 'SELECT current_user'], { env: { PATH: process.env.PATH ?? '' } });
    expect(byDsn.stdout.trim()).toBe(p);
    const byEnv = await run('psql', ['-Atc', 'SELECT count(*) FROM public.items'], { env: { PATH: process.env.PATH ?? '', ...info.env } });
    expect(Number(byEnv.stdout.trim())).toBeGreaterThanOrEqual(2);
    await provider.revoke([p]);
  });

  it('reads the admin password from a file; a missing secret is a non-retryable error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hp-secret-'));
    const file = join(dir, 'pw');
    writeFileSync(file, `${target.adminPassword}\n`, { mode: 0o600 });
    const base = connectionFor(target).connection;
    const fromFile = createPostgresProvider({ ...base, admin: { user: target.adminUser, password: { file } } }, resolveSecret);
    expect(await fromFile.check()).toMatchObject({ ok: true });
    await fromFile.close();
    const missing = createPostgresProvider({ ...base, admin: { user: target.adminUser, password: { env: 'HP_TEST_NOT_SET_ANYWHERE' } } }, resolveSecret);
    const err = await missing.listManagedPrincipals().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as ProviderError).retryable).toBe(false);
    expect((err as ProviderError).message).toMatch(/HP_TEST_NOT_SET_ANYWHERE/);
    await missing.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a wrong admin password is a non-retryable error that does not echo the password; check() says why', async () => {
    const wrong = `wrong-${newSecret()}`;
    process.env.HP_TEST_WRONG_ADMIN_PW = wrong;
    const bad = createPostgresProvider({ ...connectionFor(target).connection, admin: { user: target.adminUser, password: { env: 'HP_TEST_WRONG_ADMIN_PW' } } }, resolveSecret);
    const err = await bad.listManagedPrincipals().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as ProviderError).retryable).toBe(false);
    expect((err as ProviderError).message).toMatch(/password authentication failed/);
    expect((err as ProviderError).message).not.toContain(wrong);
    const health = await bad.check();
    expect(health.ok).toBe(false);
    expect(JSON.stringify(health)).not.toContain(wrong);
    await bad.close();
  });

  it('a plaintext admin password in the policy file is rejected by the schema', () => {
    const base = connectionFor(target).connection;
    expect(() => createPostgresProvider({ ...base, admin: { user: 'postgres', password: 'hunter2' } }, resolveSecret)).toThrow(ProviderError);
  });

  it('invalid privileges are refused before touching the target', async () => {
    const p = newPrincipal('bad');
    const bad = { grants: [{ privileges: ['SELECT'], on: { schema: 'public; DROP TABLE items' } }] };
    await expect(provider.provision({ principal: p, secret: newSecret(), privileges: bad, validUntil: inAnHour() })).rejects.toMatchObject({
      name: 'ProviderError',
      retryable: false,
    });
    expect(await provider.listManagedPrincipals()).not.toContain(p);
  });
});
