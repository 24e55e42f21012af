import { describe, expect, it } from 'vitest';
import { ProviderError } from '../provider.js';
import { parseConnection, parsePrivileges } from './config.js';
import { sslFor } from './connection.js';
import { isRetryable, scrub, toProviderError } from './errors.js';
import { postgresConnectionInfo } from './provider.js';
import { grantStatements } from './sql.js';

const conn = { host: 'db.internal', database: 'app', admin: { user: 'hallpass', password: { env: 'PG_ADMIN_PW' } } };

describe('postgres config', () => {
  it('applies the default port and keeps the secret a reference', () => {
    expect(parseConnection(conn)).toEqual({ ...conn, port: 5432 });
    expect(parseConnection({ ...conn, admin: { user: 'u', password: { file: '/run/secrets/pg' } } }).admin.password).toEqual({ file: '/run/secrets/pg' });
  });

  it('rejects an inline admin password, unknown keys and bad sslmode with a message naming the field', () => {
    for (const bad of [
      { ...conn, admin: { user: 'u', password: 'hunter2' } },
      { ...conn, admin: { user: 'u', password: { env: 'X', file: '/y' } } },
      { ...conn, password: 'hunter2' },
      { ...conn, sslmode: 'prefer' },
      { ...conn, port: 70000 },
    ]) {
      expect(() => parseConnection(bad)).toThrow(ProviderError);
    }
    expect(() => parseConnection({ ...conn, port: 70000 })).toThrow(/\/port/);
  });

  it('accepts the documented privileges shape', () => {
    const p = {
      memberOf: ['pg_read_all_data'],
      grants: [{ privileges: ['SELECT', 'USAGE'], on: { schema: 'billing', tables: ['Invoices', 'payments'], sequences: 'all' } }],
      connectionLimit: 5,
      readOnly: true,
    };
    expect(parsePrivileges(p)).toEqual(p);
    expect(parsePrivileges({})).toEqual({});
  });

  it('rejects identifiers outside the strict pattern, unknown privileges and managed roles in memberOf', () => {
    for (const bad of [
      { memberOf: ['pg read'] },
      { memberOf: ['a'.repeat(64)] },
      { memberOf: ['hp_someone'] },
      { memberOf: ['hallpass_orphans'] },
      { grants: [{ privileges: ['ALL'], on: { schema: 'public' } }] },
      { grants: [{ privileges: [], on: { schema: 'public' } }] },
      { grants: [{ privileges: ['SELECT'], on: { schema: 'public', tables: 'some' } }] },
      { grants: [{ privileges: ['SELECT'], on: { schema: 'pub"lic' } }] },
      { connectionLimit: 0 },
      { superuser: true },
    ]) {
      expect(() => parsePrivileges(bad), JSON.stringify(bad)).toThrow(ProviderError);
    }
  });

  it('sends each privilege only to the object kinds it applies to, with USAGE on the schema', () => {
    expect(grantStatements({ privileges: ['SELECT', 'UPDATE', 'USAGE', 'CREATE', 'TRIGGER'], on: { schema: 's', tables: 'all', sequences: 'all' } }, 'hp_a')).toEqual([
      'GRANT USAGE, CREATE ON SCHEMA "s" TO "hp_a"',
      'GRANT SELECT, UPDATE, TRIGGER ON ALL TABLES IN SCHEMA "s" TO "hp_a"',
      'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "s" TO "hp_a"',
    ]);
    expect(grantStatements({ privileges: ['SELECT'], on: { schema: 'S', tables: ['T1', 't2'] } }, 'hp_a')).toEqual([
      'GRANT USAGE ON SCHEMA "S" TO "hp_a"',
      'GRANT SELECT ON TABLE "S"."T1", "S"."t2" TO "hp_a"',
    ]);
  });
});

describe('postgres errors', () => {
  it('scrub removes known secrets (raw and URL-encoded), URL userinfo, PASSWORD clauses and SCRAM verifiers', () => {
    const msg = scrub(
      "connect postgres://admin:s3cr%2Fet@h/db failed; pw s3cr/et; ALTER ROLE x PASSWORD 'it''s' VALID; SCRAM-SHA-256$4096:abc=$def:ghi=",
      ['s3cr/et'],
    );
    expect(msg).not.toMatch(/s3cr|it''s|abc=|def:ghi/);
    expect(msg).toContain('postgres://admin:[redacted]@h/db');
  });

  it('classifies connection failures as retryable and faults as not', () => {
    expect(isRetryable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isRetryable(Object.assign(new Error('the database system is starting up'), { code: '57P03' }))).toBe(true);
    expect(isRetryable(Object.assign(new Error('canceling statement due to lock timeout'), { code: '55P03' }))).toBe(true);
    expect(isRetryable(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isRetryable(Object.assign(new Error('password authentication failed'), { code: '28P01' }))).toBe(false);
    expect(isRetryable(Object.assign(new Error('permission denied'), { code: '42501' }))).toBe(false);
    const e = toProviderError('revoke', Object.assign(new Error('x PASSWORD \'p\''), { code: '08006' }), []);
    expect(e).toMatchObject({ name: 'ProviderError', retryable: true });
    expect(e.message).toBe('postgres revoke failed: x PASSWORD [redacted] (08006)');
  });
});

describe('postgres connectionInfo', () => {
  it('builds a URL-encoded DSN, libpq env vars, and brackets IPv6 hosts', () => {
    const c = parseConnection({ ...conn, host: '::1', sslmode: 'verify-full' });
    const info = postgresConnectionInfo(c, 'hp_x', 'p@ss:w/rd?#%');
    expect(info.dsn).toBe('postgresql://hp_x:p%40ss%3Aw%2Frd%3F%23%25@[::1]:5432/app?sslmode=verify-full');
    expect(info.env).toEqual({ PGHOST: '::1', PGPORT: '5432', PGDATABASE: 'app', PGUSER: 'hp_x', PGPASSWORD: 'p@ss:w/rd?#%', PGSSLMODE: 'verify-full' });
  });

  it('tells the gateway how to reach the target over TLS; the sslrootcert path (a hallpass host file) stays out of the DSN and env', () => {
    const info = (c: object) => postgresConnectionInfo(parseConnection({ ...conn, ...c }), 'hp_x', 'pw');
    expect(info({}).tls).toBeUndefined();
    expect(info({ sslmode: 'disable', sslrootcert: '/etc/hallpass/ca.pem' }).tls).toBeUndefined();
    expect(info({ sslmode: 'require' }).tls).toEqual({ mode: 'require', caFile: undefined });
    const full = info({ sslmode: 'verify-full', sslrootcert: '/etc/hallpass/ca.pem' });
    expect(full.tls).toEqual({ mode: 'verify-full', caFile: '/etc/hallpass/ca.pem' });
    expect(full.dsn).not.toContain('ca.pem');
    expect(Object.values(full.env).join(' ')).not.toContain('ca.pem');
  });
});

describe('postgres admin TLS (sslFor)', () => {
  it("maps libpq's sslmode and sslrootcert to pg options", () => {
    expect(sslFor(undefined, undefined)).toBe(false);
    expect(sslFor('disable', 'CA')).toBe(false);
    expect(sslFor('require', undefined)).toEqual({ rejectUnauthorized: false });
    expect(sslFor('verify-full', undefined)).toEqual({ rejectUnauthorized: true });
    expect(sslFor('verify-full', 'CA')).toEqual({ ca: 'CA', rejectUnauthorized: true });
    // require with a CA: the chain is checked, the host name is not (libpq verify-ca)
    const ca = sslFor('require', 'CA');
    expect(ca).toMatchObject({ ca: 'CA', rejectUnauthorized: true });
    expect(typeof ca === 'object' && ca.checkServerIdentity?.('other.example', {} as never)).toBeUndefined();
  });
});
