import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryEvents } from '../../src/audit/index.js';
import { gatewayExtension } from '../../src/server/gateway-extension.js';
import { freePort, startPgTarget, type PgTarget } from '../support/pg-target.js';
import { startTestHallpass, targetConnectionYaml, type TestHallpass } from '../support/hallpass.js';
import { eventually } from '../support/target-checks.js';

/**
 * Per-resource settings that shape the gateway session the core builds (gateway-authority.ts):
 * the policy's `gateway: { storeParameters }` and the connection's `sslmode`/`sslrootcert`, run
 * through the real server against a real target.
 */

interface ResourceSpec {
  name: string;
  /** Extra `connection:` lines (YAML, 6-space indented). */
  connection?: string;
  /** Extra resource lines (YAML, 4-space indented). */
  extra?: string;
}

/** Resources on one target, each offering `read` to alice without approval. */
function policy(target: PgTarget, resources: ResourceSpec[]): string {
  const resource = (r: ResourceSpec) => `
  - name: ${r.name}
    kind: postgres
${targetConnectionYaml(target, r.connection)}${r.extra ?? ''}    roles:
      read: { readOnly: true, privileges: { memberOf: [pg_read_all_data] } }`;
  return `
groups: [{ name: engineers }]
users:
  - { name: alice, groups: [engineers] }
resources:${resources.map(resource).join('')}
rules:
  - name: engineers-read
    who: { groups: [engineers] }
    resources: { names: [${resources.map((r) => r.name).join(', ')}] }
    roles: [read]
    duration: { default: 5m, max: 1h }
    approval: auto
    reason: { required: false }
`;
}

/** A gateway session (TLS to the gateway) on a new `read` grant of alice on `resource`, or on `existingGrant`. */
async function gatewaySession(t: TestHallpass, resource: string, existingGrant?: string): Promise<{ client: pg.Client; grantId: string }> {
  const token = await t.token('alice');
  let grantId = existingGrant;
  if (grantId === undefined) {
    const r = await t.api(token, 'POST', '/api/v1/requests', { resource, role: 'read', duration: '10m', reason: 'gateway settings test' });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.grant.status, JSON.stringify(r.body)).toBe('active');
    grantId = r.body.grant.id as string;
  }
  const creds = await t.api(token, 'GET', `/api/v1/grants/${grantId}/credentials?via=gateway`);
  expect(creds.status, JSON.stringify(creds.body)).toBe(200);
  const client = new pg.Client({
    host: '127.0.0.1', port: t.h.gateway!.address().port, user: creds.body.user, password: creds.body.password, database: creds.body.database,
    ssl: { ca: t.h.gateway!.certificatePem, checkServerIdentity: () => undefined },
  });
  client.on('error', () => {});
  return { client, grantId };
}

/** The gateway.execute events of a grant, once its session has ended (all of its events are stored). */
async function executeEvents(t: TestHallpass, grantId: string) {
  const db = t.h.deps.store.db;
  expect(await eventually(async () => (await queryEvents(db, { type: 'gateway.session.end', grantId, limit: 5 })).length === 1)).toBe(true);
  return queryEvents(db, { type: 'gateway.execute', grantId, limit: 100 });
}

describe('gateway: per-resource storeParameters', () => {
  let target: PgTarget;
  let t: TestHallpass;

  beforeAll(async () => {
    target = await startPgTarget();
    const port = await freePort();
    // `plain-db` with the default settings, `params-db` storing parameters.
    const resources = [{ name: 'plain-db' }, { name: 'params-db', extra: '    gateway: { storeParameters: true }\n' }];
    t = await startTestHallpass({ target, policy: policy(target, resources), start: { extensions: [gatewayExtension({ host: '127.0.0.1', port, requireTls: true })] } });
  });
  afterAll(async () => {
    await t?.close();
    await target?.stop();
  });

  const statement = { text: 'select $1::text as a, $2::text as b, $3::int as c', values: ['plain value', 'postgres://app:hunter2@db.internal/app', 7] };

  it('stores the parameters of an extended-protocol statement when the resource sets it, secret-looking ones redacted', async () => {
    const { client, grantId } = await gatewaySession(t, 'params-db');
    await client.connect();
    expect((await client.query(statement)).rows).toEqual([{ a: 'plain value', b: 'postgres://app:hunter2@db.internal/app', c: 7 }]);
    await client.end();
    const events = await executeEvents(t, grantId);
    expect(events).toHaveLength(1);
    expect(events[0]!.data).toMatchObject({ sql: statement.text, params: ['plain value', '[redacted]', '7'] });
    expect(JSON.stringify(events)).not.toContain('hunter2');
  });

  it('stores no parameter values by default', async () => {
    const { client, grantId } = await gatewaySession(t, 'plain-db');
    await client.connect();
    expect((await client.query(statement)).rows).toHaveLength(1);
    await client.end();
    const events = await executeEvents(t, grantId);
    expect(events).toHaveLength(1);
    expect(events[0]!.data.sql).toBe(statement.text);
    expect(events[0]!.data).not.toHaveProperty('params');
    expect(JSON.stringify(events)).not.toContain('plain value');
  });
});

describe('gateway: TLS to the target from the resource connection (sslmode, sslrootcert)', () => {
  const run = promisify(execFile);
  let dir = '';
  let target: PgTarget;
  let t: TestHallpass;

  /** verify-full with `ca`, and require without a CA; same target. */
  const tlsPolicy = (ca: string) =>
    policy(target, [
      { name: 'verify-db', connection: `      sslmode: verify-full\n      sslrootcert: ${ca}\n` },
      { name: 'require-db', connection: '      sslmode: require\n' },
    ]);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hp-gw-target-tls-'));
    // A private CA, a target certificate it signed (for 127.0.0.1), and an unrelated CA.
    const o = (args: string[]) => run('openssl', args, { cwd: dir });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await o(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=target test ca']);
    await o(['req', '-x509', ...ec, '-keyout', 'other-ca.key', '-out', 'other-ca.pem', '-days', '2', '-subj', '/CN=target test ca']);
    await o(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
    writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    await o(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext']);
    target = await startPgTarget({ tls: { certPem: readFileSync(join(dir, 'server.pem'), 'utf8'), keyPem: readFileSync(join(dir, 'server.key'), 'utf8') } });
    const port = await freePort();
    t = await startTestHallpass({ target, policy: tlsPolicy(join(dir, 'ca.pem')), start: { extensions: [gatewayExtension({ host: '127.0.0.1', port, requireTls: true })] } });
  });
  afterAll(async () => {
    await t?.close();
    await target?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the target accepts TLS logins only', async () => {
    const plain = new pg.Client({ connectionString: target.adminUrl(), ssl: false });
    plain.on('error', () => {});
    await expect(plain.connect()).rejects.toThrow(/no pg_hba\.conf entry.*no encryption/);
  });

  it('a gateway session reaches the TLS-only target with verify-full and the resource CA, and with require', async () => {
    for (const resource of ['verify-db', 'require-db']) {
      const { client, grantId } = await gatewaySession(t, resource);
      await client.connect();
      const row = (await client.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()')).rows[0];
      expect(row, resource).toEqual({ ssl: true });
      await client.end();
      const ended = async () => (await queryEvents(t.h.deps.store.db, { type: 'gateway.session.end', grantId, limit: 5 })).length === 1;
      expect(await eventually(ended), resource).toBe(true);
    }
  });

  it('verify-full with the wrong CA: the gateway refuses the session (upstream_failed), and so does the provider', async () => {
    // A grant made while the CA was right, then the resource's CA changed to one that did not sign the target.
    const { grantId } = await gatewaySession(t, 'verify-db');
    writeFileSync(t.policyPath, tlsPolicy(join(dir, 'other-ca.pem')));
    expect(await t.h.policy.reload(t.h.deps)).toEqual({ changed: true });
    const { client } = await gatewaySession(t, 'verify-db', grantId);
    await expect(client.connect()).rejects.toThrow(/could not log in to verify-db/);
    const db = t.h.deps.store.db;
    expect(await eventually(async () => (await queryEvents(db, { type: 'gateway.refused', limit: 10 })).some((e) => e.data.code === 'upstream_failed'))).toBe(true);
    const check = await t.h.deps.providers.get('verify-db')!.check();
    expect(check.ok).toBe(false);
    expect(check.ok ? '' : check.error).toMatch(/certificate/i);
  });
});
