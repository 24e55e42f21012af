import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPgTarget, type PgTarget } from '../../../test/support/pg-target.js';
import { ProviderError } from '../provider.js';
import { createPostgresProvider, DEFAULT_ORPHAN_OWNER, type PostgresProvider } from './provider.js';
import { canLogin, connectAs, connectionFor, inAnHour, newPrincipal, newSecret, resolveSecret } from './test-helpers.js';

describe('postgres revoke', () => {
  let target: PgTarget;
  let provider: PostgresProvider;
  beforeAll(async () => {
    target = await startPgTarget();
    const admin = await target.admin();
    await admin.query('CREATE DATABASE other');
    await admin.query('CREATE TABLE public.shared (id serial PRIMARY KEY, v text)');
    await admin.end();
    provider = createPostgresProvider(connectionFor(target).connection, resolveSecret);
  });
  afterAll(async () => {
    await provider.close();
    await target.stop();
  });

  it('objects the role created survive under the orphan owner, in every database, and privileges are gone', async () => {
    const p = newPrincipal('owner');
    const s = newSecret();
    await provider.provision({ principal: p, secret: s, privileges: { grants: [{ privileges: ['CREATE'], on: { schema: 'public' } }] }, validUntil: inAnHour() });
    // A privilege in a second database, granted by hand: revoke must find it (pg_shdepend) or DROP ROLE would fail.
    const otherAdmin = await target.admin('other');
    await otherAdmin.query(`GRANT CREATE ON SCHEMA public TO "${p}"`);
    const info = provider.connectionInfo(p, s);
    const c = await connectAs(info);
    await c.query("CREATE TABLE public.made_during_grant AS SELECT 'kept'::text AS v");
    await c.end();
    const c2 = await connectAs(info, 'other');
    await c2.query('CREATE TABLE public.elsewhere (v int)');
    await c2.end();

    await provider.revoke([p]);

    const admin = await target.admin();
    const owner = await admin.query<{ owner: string; v: string }>(
      "SELECT pg_get_userbyid(c.relowner) AS owner, (SELECT v FROM public.made_during_grant) AS v FROM pg_class c WHERE c.oid = 'public.made_during_grant'::regclass",
    );
    expect(owner.rows[0]).toEqual({ owner: DEFAULT_ORPHAN_OWNER, v: 'kept' });
    const orphan = await admin.query<{ rolcanlogin: boolean }>('SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [DEFAULT_ORPHAN_OWNER]);
    expect(orphan.rows[0]?.rolcanlogin).toBe(false);
    expect((await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [p])).rowCount).toBe(0);
    await admin.end();
    const other = await otherAdmin.query<{ owner: string }>("SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = 'public.elsewhere'::regclass");
    expect(other.rows[0]?.owner).toBe(DEFAULT_ORPHAN_OWNER);
    const acl = await otherAdmin.query<{ acl: string }>("SELECT coalesce(nspacl::text, '') AS acl FROM pg_namespace WHERE nspname = 'public'");
    expect(acl.rows[0]?.acl).not.toContain(p);
    await otherAdmin.end();
  });

  it('what revoked roles leave to the orphan owner is usable by no one: no SECURITY DEFINER function, no PUBLIC view reads it (review 2026-12-02)', async () => {
    const create = { grants: [{ privileges: ['CREATE'] as const, on: { schema: 'public' } }] };
    // One grant's table, left behind...
    const p1 = newPrincipal('left');
    const s1 = newSecret();
    await provider.provision({ principal: p1, secret: s1, privileges: { grants: [...create.grants] }, validUntil: inAnHour() });
    const c1 = await connectAs(provider.connectionInfo(p1, s1));
    await c1.query("CREATE TABLE public.findings AS SELECT 'card 4111'::text AS v");
    await c1.end();
    await provider.revoke([p1]);
    // ...and another grant's ways into it, each open to everyone.
    const p2 = newPrincipal('peek');
    const s2 = newSecret();
    await provider.provision({ principal: p2, secret: s2, privileges: { grants: [...create.grants] }, validUntil: inAnHour() });
    const c2 = await connectAs(provider.connectionInfo(p2, s2));
    await c2.query("CREATE FUNCTION public.peek() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER AS 'SELECT v FROM public.findings'");
    await c2.query('CREATE PROCEDURE public.poke() LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$');
    await c2.query('CREATE VIEW public.peek_view AS SELECT v FROM public.findings');
    await c2.query('GRANT SELECT ON public.peek_view TO PUBLIC');
    await c2.query('CREATE TABLE public.shared_out (v int)');
    await c2.query('GRANT SELECT ON public.shared_out TO PUBLIC');
    // Column grants and large objects have ACLs of their own (second review).
    await c2.query("CREATE TABLE public.colsecret AS SELECT 'card 4111'::text AS v");
    await c2.query('GRANT SELECT (v) ON public.colsecret TO PUBLIC');
    const lo = (await c2.query<{ oid: number }>("SELECT lo_from_bytea(0, 'lo secret') AS oid")).rows[0]!.oid;
    await c2.query(`GRANT SELECT ON LARGE OBJECT ${lo} TO PUBLIC`);
    // A grant option passed on: a plain REVOKE is refused ("dependent privileges exist") and failed
    // the whole batch on every retry (second review).
    const p4 = newPrincipal('relay');
    const s4 = newSecret();
    await provider.provision({ principal: p4, secret: s4, privileges: {}, validUntil: inAnHour() });
    await c2.query("CREATE TABLE public.chain AS SELECT 'chain secret'::text AS v");
    await c2.query(`GRANT SELECT ON public.chain TO "${p4}" WITH GRANT OPTION`);
    await c2.end();
    const c4 = await connectAs(provider.connectionInfo(p4, s4));
    await c4.query('GRANT SELECT ON public.chain TO PUBLIC');
    await c4.end();
    await provider.revoke([p2, p4]);

    const admin = await target.admin();
    try {
      const routines = await admin.query<{ proname: string; prosecdef: boolean; public_exec: boolean; owner: string }>(
        `SELECT proname, prosecdef, has_function_privilege('public', oid, 'EXECUTE') AS public_exec, pg_get_userbyid(proowner) AS owner
           FROM pg_proc WHERE proname IN ('peek', 'poke') ORDER BY proname`);
      expect(routines.rows).toEqual([
        { proname: 'peek', prosecdef: false, public_exec: false, owner: DEFAULT_ORPHAN_OWNER },
        { proname: 'poke', prosecdef: false, public_exec: false, owner: DEFAULT_ORPHAN_OWNER },
      ]);
      const acl = await admin.query<{ relname: string; acl: string }>("SELECT relname, coalesce(relacl::text, '') AS acl FROM pg_class WHERE relname IN ('peek_view', 'shared_out') ORDER BY relname");
      for (const r of acl.rows) expect(r.acl, r.relname).not.toMatch(/(^|[{,])=/); // no PUBLIC entry
    } finally {
      await admin.end();
    }
    // A later grant with no rights there reads nothing through them.
    const p3 = newPrincipal('later');
    const s3 = newSecret();
    await provider.provision({ principal: p3, secret: s3, privileges: { grants: [{ privileges: ['USAGE'], on: { schema: 'public' } }] }, validUntil: inAnHour() });
    const c3 = await connectAs(provider.connectionInfo(p3, s3));
    try {
      await expect(c3.query('SELECT * FROM public.peek()')).rejects.toThrow(/permission denied/);
      await expect(c3.query('SELECT * FROM public.peek_view')).rejects.toThrow(/permission denied/);
      await expect(c3.query('SELECT * FROM public.shared_out')).rejects.toThrow(/permission denied/);
      await expect(c3.query('SELECT v FROM public.colsecret')).rejects.toThrow(/permission denied/);
      await expect(c3.query(`SELECT lo_get(${lo})`)).rejects.toThrow(/permission denied/);
      await expect(c3.query('SELECT v FROM public.chain')).rejects.toThrow(/permission denied/);
    } finally {
      await c3.end();
      await provider.revoke([p3]);
    }
  });

  it('a grant option on a table the role does not own, passed on to PUBLIC, goes with the role (third review: revoke failed for good)', async () => {
    const p = newPrincipal('optn');
    const s = newSecret();
    await provider.provision({ principal: p, secret: s, privileges: {}, validUntil: inAnHour() });
    const admin = await target.admin();
    try {
      await admin.query("CREATE TABLE public.payroll AS SELECT 'salary 9000'::text AS v");
      await admin.query(`GRANT SELECT ON public.payroll TO "${p}" WITH GRANT OPTION`);
      const c = await connectAs(provider.connectionInfo(p, s));
      await c.query('GRANT SELECT ON public.payroll TO PUBLIC');
      await c.end();
      await provider.revoke([p]);
      expect((await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [p])).rowCount).toBe(0);
      const acl = await admin.query<{ acl: string }>("SELECT coalesce(relacl::text, '') AS acl FROM pg_class WHERE oid = 'public.payroll'::regclass");
      expect(acl.rows[0]?.acl).not.toMatch(/(^|[{,])=r/); // PUBLIC's read, granted by the principal, is gone
    } finally {
      await admin.query('DROP TABLE IF EXISTS public.payroll');
      await admin.end();
    }
  });

  it('revokes 200 roles sharing grants on one table in one batch, terminating the open sessions among them', async () => {
    const roles = Array.from({ length: 200 }, () => newPrincipal('bulk'));
    const s = newSecret();
    const privileges = { memberOf: ['pg_read_all_data'], grants: [{ privileges: ['SELECT', 'UPDATE', 'USAGE'], on: { schema: 'public', tables: ['shared'], sequences: 'all' } }] };
    for (const p of roles) await provider.provision({ principal: p, secret: s, privileges, validUntil: inAnHour() });
    const sessions = await Promise.all(roles.slice(0, 10).map((p) => connectAs(provider.connectionInfo(p, s))));
    await provider.revoke(roles);
    for (const c of sessions) {
      await expect(c.query('SELECT 1')).rejects.toThrow();
      await c.end().catch(() => {});
    }
    const admin = await target.admin();
    expect((await admin.query('SELECT 1 FROM pg_roles WHERE rolname = ANY($1)', [roles])).rowCount).toBe(0);
    const acls = await admin.query<{ acl: string }>(
      "SELECT coalesce(relacl::text, '') AS acl FROM pg_class WHERE relnamespace = 'public'::regnamespace UNION ALL SELECT coalesce(nspacl::text, '') FROM pg_namespace WHERE nspname = 'public'",
    );
    expect(acls.rows.map((r) => r.acl).join(' ')).not.toMatch(/hp_bulk_|\b\d{4,}=/);
    await admin.end();
    expect(await provider.listManagedPrincipals()).toEqual([]);
    expect(await canLogin(provider.connectionInfo(roles[0] ?? '', s))).toBe(false);
    await provider.revoke(roles);
  });

  it('two instances revoking the same batch at once both succeed (idempotent under a race)', async () => {
    const roles = Array.from({ length: 50 }, () => newPrincipal('race'));
    const privileges = { grants: [{ privileges: ['SELECT'], on: { schema: 'public', tables: ['shared'] } }] };
    for (const p of roles) await provider.provision({ principal: p, secret: newSecret(), privileges, validUntil: inAnHour() });
    const second = createPostgresProvider(connectionFor(target).connection, resolveSecret);
    try {
      await Promise.all([provider.revoke(roles), second.revoke([...roles].reverse())]);
    } finally {
      await second.close();
    }
    expect(await provider.listManagedPrincipals()).toEqual([]);
  });

  it('target down: a retryable ProviderError with no password in it; works again once the target is back', async () => {
    const p = newPrincipal('down');
    const s = `pw-${newSecret()}`;
    await target.pause();
    try {
      for (const call of [
        () => provider.provision({ principal: p, secret: s, privileges: { memberOf: ['pg_read_all_data'] }, validUntil: inAnHour() }),
        () => provider.revoke([p]),
        () => provider.extend(p, inAnHour()),
        () => provider.listManagedPrincipals(),
      ]) {
        const err = await call().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ProviderError);
        const pe = err as ProviderError;
        expect(pe.retryable).toBe(true);
        expect(pe.message).not.toContain(s);
        expect(pe.message).not.toContain(target.adminPassword);
      }
      const health = await provider.check();
      expect(health.ok).toBe(false);
      expect(JSON.stringify(health)).not.toContain(target.adminPassword);
    } finally {
      await target.resume();
    }
    await provider.provision({ principal: p, secret: s, privileges: { memberOf: ['pg_read_all_data'] }, validUntil: inAnHour() });
    expect(await canLogin(provider.connectionInfo(p, s))).toBe(true);
    await provider.revoke([p]);
  });

  it('works with a least-privilege admin (CREATEROLE, not superuser) as documented', async () => {
    const su = await target.admin();
    const adminPw = newSecret();
    await su.query(`CREATE ROLE hallpass_admin LOGIN CREATEROLE PASSWORD '${adminPw}'`);
    await su.query("ALTER ROLE hallpass_admin SET createrole_self_grant = 'set, inherit'");
    await su.query('GRANT pg_read_all_data TO hallpass_admin WITH ADMIN OPTION');
    await su.query('GRANT pg_signal_backend TO hallpass_admin');
    await su.query('GRANT USAGE ON SCHEMA public TO hallpass_admin');
    await su.end();
    process.env.HP_TEST_LEAST_PRIV_ADMIN = adminPw;
    const limited = createPostgresProvider(
      { host: target.host, port: target.port, database: target.database, admin: { user: 'hallpass_admin', password: { env: 'HP_TEST_LEAST_PRIV_ADMIN' } }, orphanOwner: 'hallpass_orphans_lp' },
      resolveSecret,
      { deployment: 'hallpass mLP' }, // marking its roles (COMMENT ON ROLE) needs nothing more
    );
    try {
      expect(await limited.check()).toMatchObject({ ok: true });
      const p = newPrincipal('lp');
      const s = newSecret();
      const wanted = { memberOf: ['pg_read_all_data'], grants: [{ privileges: ['CREATE'], on: { schema: 'public' } }], readOnly: false };
      // Regression: without the grant option PostgreSQL only WARNs and grants nothing; that must fail loudly.
      const refused = await limited.provision({ principal: p, secret: s, privileges: wanted, validUntil: inAnHour() }).catch((e: unknown) => e);
      expect(refused).toMatchObject({ name: 'ProviderError', retryable: false });
      expect((refused as Error).message).toMatch(/may not grant/);
      expect(await limited.listManagedPrincipals()).not.toContain(p);
      const su2 = await target.admin();
      await su2.query('GRANT USAGE, CREATE ON SCHEMA public TO hallpass_admin WITH GRANT OPTION');
      await su2.end();
      await limited.provision({ principal: p, secret: s, privileges: wanted, validUntil: inAnHour() });
      const c = await connectAs(limited.connectionInfo(p, s));
      await c.query('CREATE TABLE public.lp_made (v int)');
      await limited.extend(p, inAnHour());
      await limited.revoke([p]);
      await expect(c.query('SELECT 1')).rejects.toThrow();
      await c.end().catch(() => {});
      expect(await canLogin(limited.connectionInfo(p, s))).toBe(false);
      const check = await target.admin();
      const owner = await check.query<{ owner: string }>("SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = 'public.lp_made'::regclass");
      await check.end();
      expect(owner.rows[0]?.owner).toBe('hallpass_orphans_lp');
    } finally {
      await limited.close();
    }
  });
});

