/**
 * A hallpass server with the PostgreSQL gateway that dies of an uncaught exception right after a
 * statement ran through the gateway (for test/integration/crash-shutdown.test.ts). Its audit event
 * is then still in the batcher's queue. Environment: CRASH_TARGET (JSON: host, port, database,
 * adminUser, adminPassword), CRASH_DATA_DIR.
 */
import pg from 'pg';
import { gatewayExtension } from '../../src/server/gateway-extension.js';
import { untilSignal } from '../../src/server/run.js';
import { startTestHallpass } from './hallpass.js';
import { freePort, type PgTarget } from './pg-target.js';

const target = JSON.parse(process.env.CRASH_TARGET ?? '') as PgTarget;
const t = await startTestHallpass({
  target, dataDir: process.env.CRASH_DATA_DIR,
  start: { extensions: [gatewayExtension({ host: '127.0.0.1', port: await freePort(), requireTls: true })] },
});
void untilSignal(t.h);

const alice = await t.token('alice');
const r = await t.api(alice, 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '10m', reason: 'crash test' });
const creds = await t.api(alice, 'GET', `/api/v1/grants/${r.body.grant.id}/credentials?via=gateway`);
const client = new pg.Client({
  host: '127.0.0.1', port: t.h.gateway!.address().port, user: creds.body.user, password: creds.body.password,
  database: creds.body.database, ssl: { rejectUnauthorized: false },
});
client.on('error', () => {});
await client.connect();
await client.query("select 'ran before the crash' as x");
process.stdout.write(`grant ${r.body.grant.id}\n`);
setImmediate(() => {
  throw new Error('boom: a bug nothing caught');
});
