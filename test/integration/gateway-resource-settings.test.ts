import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryEvents } from '../../src/audit/index.js';
import { gatewayExtension } from '../../src/server/gateway-extension.js';
import { freePort, startPgTarget, type PgTarget } from '../support/pg-target.js';
import { startTestHallpass, type TestHallpass } from '../support/hallpass.js';
import { eventually } from '../support/target-checks.js';

/**
 * Per-resource settings that shape the gateway session the core builds (gateway-authority.ts):
 * the policy's `gateway: { storeParameters }`, run through the real server against a real target.
 */

/** Two resources on one target: `plain-db` with the default settings, `params-db` storing parameters. */
function policy(target: PgTarget): string {
  const resource = (name: string, extra: string) => `
  - name: ${name}
    kind: postgres
    connection:
      host: ${target.host}
      port: ${target.port}
      database: ${target.database}
      admin: { user: ${target.adminUser}, password: { env: TEST_TARGET_ADMIN_PASSWORD } }
${extra}    roles:
      read: { readOnly: true, privileges: { memberOf: [pg_read_all_data] } }`;
  return `
groups: [{ name: engineers }]
users:
  - { name: alice, groups: [engineers] }
resources:${resource('plain-db', '')}${resource('params-db', '    gateway: { storeParameters: true }\n')}
rules:
  - name: engineers-read
    who: { groups: [engineers] }
    resources: { names: [plain-db, params-db] }
    roles: [read]
    duration: { default: 5m, max: 1h }
    approval: auto
    reason: { required: false }
`;
}

/** Requests `read` on `resource` as alice and opens a gateway session for it (TLS to the gateway). */
async function gatewaySession(t: TestHallpass, resource: string): Promise<{ client: pg.Client; grantId: string }> {
  const token = await t.token('alice');
  const r = await t.api(token, 'POST', '/api/v1/requests', { resource, role: 'read', duration: '10m', reason: 'gateway settings test' });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  const grantId: string = r.body.grant.id;
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
    t = await startTestHallpass({ target, policy: policy(target), start: { extensions: [gatewayExtension({ host: '127.0.0.1', port, requireTls: true })] } });
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
