import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { startPgTarget, type PgTarget } from '../../../test/support/pg-target.js';
import { ProviderError } from '../provider.js';
import { createPostgresProvider, type PostgresProvider } from './provider.js';
import * as sql from './sql.js';
import { canLogin, connectionFor, inAnHour, newPrincipal, resolveSecret } from './test-helpers.js';

/** Names and passwords written to break out of an identifier, a literal or a dollar quote. */
const HOSTILE = [
  'x"; DROP TABLE canary; --',
  'y" SUPERUSER CREATEROLE "z',
  "robert'); DROP TABLE canary;--",
  '$$; DROP TABLE canary; $$',
  'back\\slash\\"',
  'a""b\'\'c',
  'line\nbreak; DROP TABLE canary',
  'ünïcödé"; --',
  "E'\\x27; DROP TABLE canary; --",
];

describe('sql.ts builders against hostile input (executed on a real PostgreSQL)', () => {
  let target: PgTarget;
  let admin: pg.Client;
  const canaryIntact = async () => (await admin.query("SELECT to_regclass('public.canary') IS NOT NULL AS ok")).rows[0] as { ok: boolean };
  beforeAll(async () => {
    target = await startPgTarget();
    admin = await target.admin();
    await admin.query('CREATE TABLE public.canary (v int)');
  });
  afterAll(async () => {
    await admin.end();
    await target.stop();
  });

  it('quoteLiteral and quoteIdent round-trip every hostile string exactly', async () => {
    for (const s of HOSTILE) {
      const r = await admin.query<{ v: string }>(`SELECT ${sql.quoteLiteral(s)} AS v`);
      expect(r.rows[0]?.v).toBe(s);
      const f = await admin.query(`SELECT 1 AS ${sql.quoteIdent(s)}`);
      expect(f.fields[0]?.name).toBe(s);
    }
    expect(await canaryIntact()).toEqual({ ok: true });
  });

  it('CREATE/ALTER/GRANT/REASSIGN/DROP with hostile role, schema and table names touch only those objects', async () => {
    const rolesBefore = Number((await admin.query<{ n: string }>('SELECT count(*) AS n FROM pg_roles')).rows[0]?.n);
    const verifier = await sql.scramVerifier("p'w\\$$");
    for (const name of HOSTILE) {
      await admin.query(sql.createRole({ name, verifier, validUntil: inAnHour(), connectionLimit: 2 }));
      await admin.query(sql.alterRoleToSpec({ name, verifier, validUntil: inAnHour(), connectionLimit: 1 }));
      await admin.query(sql.setReadOnly(name, true));
      await admin.query(sql.grantMembership('pg_read_all_data', name));
      // A schema and a table named after the same hostile string, granted through the builders.
      await admin.query(`CREATE SCHEMA ${sql.quoteIdent(name)}`);
      await admin.query(`CREATE TABLE ${sql.quoteIdent(name)}.${sql.quoteIdent(name)} (v int)`);
      for (const g of sql.grantStatements({ privileges: ['SELECT', 'INSERT', 'USAGE'], on: { schema: name, tables: [name], sequences: 'all' } }, name)) {
        await admin.query(g);
      }
      const priv = await admin.query<{ ok: boolean }>('SELECT has_table_privilege($1::text, format($2::text, $3::text, $3::text), $4::text) AS ok', [name, '%I.%I', name, 'INSERT']);
      expect(priv.rows[0]?.ok).toBe(true);
    }
    const made = await admin.query<{ rolname: string; rolsuper: boolean; rolcreaterole: boolean; rolconnlimit: number }>(
      'SELECT rolname, rolsuper, rolcreaterole, rolconnlimit FROM pg_roles WHERE rolname = ANY($1) ORDER BY rolname',
      [HOSTILE],
    );
    expect(made.rows.map((r) => r.rolname).sort()).toEqual([...HOSTILE].sort());
    expect(made.rows.every((r) => !r.rolsuper && !r.rolcreaterole && r.rolconnlimit === 1)).toBe(true);
    expect(Number((await admin.query<{ n: string }>('SELECT count(*) AS n FROM pg_roles')).rows[0]?.n)).toBe(rolesBefore + HOSTILE.length);
    expect(await canaryIntact()).toEqual({ ok: true });

    const oids = (await admin.query<{ oid: string }>('SELECT oid::int8::text AS oid FROM pg_roles WHERE rolname = ANY($1)', [HOSTILE])).rows.map((r) => r.oid);
    const held = await admin.query<{ kind: sql.BatchRevocable; schema: string | null; name: string; roles: string[] }>(sql.privilegeHolders(oids).text, [oids]);
    expect(held.rows.length).toBe(HOSTILE.length * 2);
    for (const h of held.rows) await admin.query(sql.revokeAllOn(h.kind, h.schema, h.name, h.roles));
    expect((await admin.query(sql.privilegeHolders(oids).text, [oids])).rowCount).toBe(0);
    await admin.query(`CREATE ROLE orphans NOLOGIN`);
    await admin.query(`${sql.reassignOwned(HOSTILE, 'orphans')}; ${sql.dropOwned(HOSTILE)}`);
    await admin.query(sql.dropRoles(HOSTILE));
    expect((await admin.query('SELECT 1 FROM pg_roles WHERE rolname = ANY($1)', [HOSTILE])).rowCount).toBe(0);
    expect((await admin.query("SELECT 1 FROM pg_roles WHERE rolname = 'postgres' AND rolsuper")).rowCount).toBe(1);
    expect(await canaryIntact()).toEqual({ ok: true });
  });

  it('builders refuse what cannot be represented: NUL, empty names, empty lists, invalid dates', () => {
    expect(() => sql.quoteIdent('a\0b')).toThrow(TypeError);
    expect(() => sql.quoteIdent('')).toThrow(TypeError);
    expect(() => sql.quoteLiteral('a\0b')).toThrow(TypeError);
    expect(() => sql.dropRoles([])).toThrow(TypeError);
    expect(() => sql.alterValidUntil('hp_x', new Date('nope'))).toThrow(TypeError);
  });

  it('the LIKE pattern for managed roles escapes _, % and \\', () => {
    expect(sql.managedLikePattern('hp_')).toBe('hp\\_%');
    expect(sql.managedLikePattern('a%b\\c_')).toBe('a\\%b\\\\c\\_%');
  });

  describe('through the provider', () => {
    let provider: PostgresProvider;
    beforeAll(() => {
      provider = createPostgresProvider(connectionFor(target).connection, resolveSecret);
    });
    afterAll(async () => {
      await provider.close();
    });

    it('passwords with quotes, backslashes and $$ work verbatim and only verbatim', async () => {
      const secrets = ["'; DROP TABLE canary; --", "\\'", '$$ $x$ $$', "a\\\\'b\"c", ' leading and trailing ', 'E\'\\047\''];
      for (const secret of secrets) {
        const p = newPrincipal('pw');
        await provider.provision({ principal: p, secret, privileges: {}, validUntil: inAnHour() });
        expect(await canLogin(provider.connectionInfo(p, secret))).toBe(true);
        expect(await canLogin(provider.connectionInfo(p, secret.replaceAll("'", "''")))).toBe(secret.includes("'") ? false : true);
        expect(await canLogin(provider.connectionInfo(p, secret.replaceAll('\\', '\\\\')))).toBe(secret.includes('\\') ? false : true);
        await provider.revoke([p]);
      }
      expect(await canaryIntact()).toEqual({ ok: true });
    });

    it('hostile principal names and privilege identifiers are refused before any SQL is sent', async () => {
      for (const name of HOSTILE) {
        for (const principal of [name, `hp_${name}`]) {
          const err = await provider.provision({ principal, secret: 'x', privileges: {}, validUntil: inAnHour() }).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(ProviderError);
          expect((err as ProviderError).retryable).toBe(false);
          await expect(provider.revoke([principal])).rejects.toBeInstanceOf(ProviderError);
          await expect(provider.extend(principal, inAnHour())).rejects.toBeInstanceOf(ProviderError);
        }
        const p = newPrincipal('id');
        for (const privileges of [
          { memberOf: [name] },
          { grants: [{ privileges: ['SELECT'], on: { schema: name, tables: 'all' } }] },
          { grants: [{ privileges: ['SELECT'], on: { schema: 'public', tables: [name] } }] },
          { grants: [{ privileges: [`SELECT; ${name}`], on: { schema: 'public' } }] },
        ]) {
          await expect(provider.provision({ principal: p, secret: 'x', privileges, validUntil: inAnHour() })).rejects.toMatchObject({ retryable: false });
        }
      }
      expect(await provider.listManagedPrincipals()).toEqual([]);
      expect(await canaryIntact()).toEqual({ ok: true });
    });

    it('a non-printable-ASCII secret is refused (SASLprep would hash it differently on the client)', async () => {
      await expect(provider.provision({ principal: newPrincipal('u'), secret: 'pässwörd', privileges: {}, validUntil: inAnHour() })).rejects.toMatchObject({
        retryable: false,
      });
    });
  });
});
