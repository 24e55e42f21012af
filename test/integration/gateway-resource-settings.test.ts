import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
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
  /** Reach the target at this host/port instead of its own. */
  at?: { host?: string; port?: number };
}

/** Resources on one target, each offering `read` to alice without approval. */
function policy(target: PgTarget, resources: ResourceSpec[]): string {
  const resource = (r: ResourceSpec) => `
  - name: ${r.name}
    kind: postgres
${targetConnectionYaml(target, r.connection, r.at)}${r.extra ?? ''}    roles:
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

/** Gateway credentials (`?via=gateway`) for a new `read` grant of alice on `resource`, or for `existingGrant`. */
async function gatewayCredentials(t: TestHallpass, resource: string, existingGrant?: string) {
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
  return { grantId, creds: creds.body as { user: string; password: string; database: string } };
}

/** A gateway session (TLS to the gateway) on a new `read` grant of alice on `resource`, or on `existingGrant`. */
async function gatewaySession(t: TestHallpass, resource: string, existingGrant?: string): Promise<{ client: pg.Client; grantId: string }> {
  const { grantId, creds } = await gatewayCredentials(t, resource, existingGrant);
  const client = new pg.Client({
    host: '127.0.0.1', port: t.h.gateway!.address().port, user: creds.user, password: creds.password, database: creds.database,
    ssl: { ca: t.h.gateway!.certificatePem, checkServerIdentity: () => undefined },
  });
  client.on('error', () => {});
  return { client, grantId };
}

/** A TCP relay to `to` that keeps the first 8 bytes each connection sent (its startup packet's length and code). */
async function recordingRelay(to: { host: string; port: number }): Promise<{ port: number; starts: Buffer[]; close(): Promise<void> }> {
  const starts: Buffer[] = [];
  const server: Server = createServer((client) => {
    const upstream = connect(to.port, to.host);
    let head = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      if (head.length < 8) {
        head = Buffer.concat([head, chunk]).subarray(0, 8);
        if (head.length === 8) starts.push(head);
      }
    });
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    // The target may close first (it does after a CancelRequest, which the gateway sends without
    // half-closing): the pipe then stops reading the client, whose FIN would never be read and
    // would keep server.close() waiting (seen under load).
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no relay address');
  return { port: address.port, starts, close: () => new Promise((r) => server.close(() => r())) };
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

  it('stores the parameters of an extended-protocol statement when the resource sets it, secrets in them masked', async () => {
    const { client, grantId } = await gatewaySession(t, 'params-db');
    await client.connect();
    expect((await client.query(statement)).rows).toEqual([{ a: 'plain value', b: 'postgres://app:hunter2@db.internal/app', c: 7 }]);
    await client.end();
    const events = await executeEvents(t, grantId);
    expect(events).toHaveLength(1);
    expect(events[0]!.data).toMatchObject({ sql: statement.text, params: ['plain value', expect.stringMatching(/^postgres:\/\/app:\[sealed:v1\.[^\]]+\]@db\.internal\/app$/), '7'] });
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

  it('keeps passwords written into SQL off the record, whether the statement runs, fails or is denied', async () => {
    const { client, grantId } = await gatewaySession(t, 'plain-db');
    const db = t.h.deps.store.db;
    // The grant may be an earlier test's, extended: this session's end is one more.
    const ended = async () => (await queryEvents(db, { type: 'gateway.session.end', grantId, limit: 50 })).length;
    const endedBefore = await ended();
    await client.connect();
    // Runs (a URL in a literal), fails upstream (dblink is not installed), is denied by the read
    // role's guardrails, fails upstream.
    expect((await client.query("select 'postgres://app:hunter3@db/x' as url")).rows).toEqual([{ url: 'postgres://app:hunter3@db/x' }]);
    await expect(client.query("SELECT dblink_connect('host=db password=hunter4 user=app')")).rejects.toThrow(/dblink_connect/);
    await expect(client.query("ALTER ROLE CURRENT_USER PASSWORD 'hunter5'")).rejects.toThrow();
    await expect(client.query({ text: "CREATE USER MAPPING FOR CURRENT_USER SERVER nosuch OPTIONS (password 'hunter6')" })).rejects.toThrow();
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    await client.end();
    expect(await eventually(async () => (await ended()) === endedBefore + 1)).toBe(true);
    const events = await queryEvents(db, { grantId, limit: 100 });
    const text = JSON.stringify(events);
    for (const secret of ['hunter3', 'hunter4', 'hunter5', 'hunter6']) expect(text).not.toContain(secret);
    // Sealed, not blanked: SQL can read its own text back, so what a mask hides must stay recoverable.
    const sealed = (before: string, after: string) => new RegExp(`${before.replace(/[()]/g, '\\$&')}\\[sealed:v1\\.[^\\]]+\\]${after.replace(/[()]/g, '\\$&')}`);
    expect(text).toMatch(sealed("select 'postgres://app:", "@db/x' as url"));
    expect(text).toMatch(sealed("SELECT dblink_connect('host=db password=", " user=app')"));
    expect(text).toMatch(sealed("ALTER ROLE CURRENT_USER PASSWORD '", "'"));
    expect(text).toMatch(sealed("OPTIONS (password '", "')"));

    // An admin opens one event's sealed text, with a reason that is on the record first.
    const alter = events.find((e) => String(e.data.sql).startsWith('ALTER ROLE'))!;
    const path = `/api/v1/audit/${alter.seq}/reveal`;
    expect((await t.api(await t.token('alice'), 'POST', path, { reason: 'incident 7' })).status).toBe(403);
    expect((await t.api(t.adminToken, 'POST', path, {})).status).toBe(400);
    const opened = await t.api(t.adminToken, 'POST', path, { reason: 'incident 7' });
    expect(opened.status, JSON.stringify(opened.body)).toBe(200);
    expect(opened.body).toMatchObject({ opened: 1, failed: 0, event: { seq: alter.seq, data: { sql: "ALTER ROLE CURRENT_USER PASSWORD 'hunter5'" } } });
    const revealed = await queryEvents(db, { type: 'audit.revealed', limit: 10 });
    expect(revealed.at(-1)).toMatchObject({ actor: 'admin', data: { seq: alter.seq, reason: 'incident 7', opened: 1, failed: 0 } });
    expect(JSON.stringify(revealed)).not.toContain('hunter5');
    expect((await t.api(t.adminToken, 'POST', '/api/v1/audit/999999/reveal', { reason: 'x' })).status).toBe(404);
  });
});

describe('gateway: TLS to the target from the resource connection (sslmode, sslrootcert)', () => {
  const run = promisify(execFile);
  let dir = '';
  let target: PgTarget;
  let t: TestHallpass;

  let relay: Awaited<ReturnType<typeof recordingRelay>>;

  /**
   * verify-full with `ca`, and require without a CA; the same target reached as `127.1` (a name its
   * certificate does not carry) with require + CA (libpq's verify-ca) and with verify-full; and
   * through a relay that records how each connection starts.
   */
  const tlsPolicy = (ca: string) =>
    policy(target, [
      { name: 'verify-db', connection: `      sslmode: verify-full\n      sslrootcert: ${ca}\n` },
      { name: 'require-db', connection: '      sslmode: require\n' },
      { name: 'chain-db', connection: `      sslmode: require\n      sslrootcert: ${ca}\n`, at: { host: '127.1' } },
      { name: 'name-db', connection: `      sslmode: verify-full\n      sslrootcert: ${ca}\n`, at: { host: '127.1' } },
      { name: 'relayed-db', connection: `      sslmode: verify-full\n      sslrootcert: ${ca}\n`, at: { port: relay.port } },
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
    relay = await recordingRelay(target);
    const port = await freePort();
    t = await startTestHallpass({ target, policy: tlsPolicy(join(dir, 'ca.pem')), start: { extensions: [gatewayExtension({ host: '127.0.0.1', port, requireTls: true })] } });
  });
  afterAll(async () => {
    await t?.close();
    await relay?.close();
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

  it('require with a CA file checks the chain but not the name (verify-ca); verify-full checks the name too', async () => {
    const { client, grantId } = await gatewaySession(t, 'chain-db');
    await client.connect();
    expect((await client.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()')).rows).toEqual([{ ssl: true }]);
    await client.end();
    expect(await eventually(async () => (await queryEvents(t.h.deps.store.db, { type: 'gateway.session.end', grantId, limit: 5 })).length === 1)).toBe(true);
    // The same target, CA and address under verify-full: 127.1 is not a name in its certificate.
    const check = await t.h.deps.providers.get('name-db')!.check();
    expect(check.ok).toBe(false);
    expect(check.ok ? '' : check.error).toMatch(/127\.1|altnames|host ?name/i);
  });

  it('Ctrl-C in psql cancels the query on the TLS target, and the cancel request itself goes inside TLS', async () => {
    const { creds } = await gatewayCredentials(t, 'relayed-db');
    const child = spawn('psql', ['-X', '-c', 'select pg_sleep(60)'], {
      env: { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(t.h.gateway!.address().port), PGUSER: creds.user, PGPASSWORD: creds.password, PGDATABASE: creds.database, PGSSLMODE: 'require', PGCONNECT_TIMEOUT: '10' },
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const sleeping = async () => {
      const admin = await target.admin();
      try {
        return (await admin.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(60)' and state = 'active'")).rows[0]?.n ?? 0;
      } finally {
        await admin.end();
      }
    };
    expect(await eventually(async () => (await sleeping()) === 1)).toBe(true);
    const before = relay.starts.length;
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/canceling statement due to user request/);
    expect(await sleeping()).toBe(0);
    // Every connection through the relay (provider, session, cancel) opened with SSLRequest; the
    // cancel was one more of them, and no CancelRequest ever went in clear.
    const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    const CANCEL_CODE = Buffer.from([0x04, 0xd2, 0x16, 0x2e]);
    expect(relay.starts.length).toBeGreaterThan(before);
    expect(relay.starts.every((s) => s.equals(SSL_REQUEST)), relay.starts.map((s) => s.toString('hex')).join(' ')).toBe(true);
    expect(relay.starts.some((s) => s.subarray(4).equals(CANCEL_CODE))).toBe(false);
  });

  it('the wrong CA: the gateway refuses the session (upstream_failed) under verify-full and under require + CA, and so does the provider', async () => {
    // Grants made while the CA was right, then the resources' CA changed to one that did not sign the target.
    const granted = [await gatewaySession(t, 'verify-db'), await gatewaySession(t, 'chain-db')].map((s) => s.grantId);
    writeFileSync(t.policyPath, tlsPolicy(join(dir, 'other-ca.pem')));
    expect(await t.h.policy.reload(t.h.deps)).toEqual({ changed: true });
    const db = t.h.deps.store.db;
    const refusals = async () => (await queryEvents(db, { type: 'gateway.refused', limit: 100 })).filter((e) => e.data.code === 'upstream_failed').length;
    for (const [i, resource] of (['verify-db', 'chain-db'] as const).entries()) {
      const before = await refusals();
      const { client } = await gatewaySession(t, resource, granted[i]);
      await expect(client.connect()).rejects.toThrow(new RegExp(`could not log in to ${resource}`));
      expect(await eventually(async () => (await refusals()) === before + 1), resource).toBe(true);
      const check = await t.h.deps.providers.get(resource)!.check();
      expect(check.ok, resource).toBe(false);
      expect(check.ok ? '' : check.error).toMatch(/certificate/i);
    }
  });
});
