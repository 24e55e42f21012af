/**
 * Time to access: an auto-approved request -> a credential that logs in, against the raw
 * PostgreSQL round trip (CREATE ROLE ... ; GRANT ... ; log in as it) measured in the same run on
 * the same target. Target: hallpass p95 <= 2x raw p95.
 *
 *   node --import tsx bench/time-to-access.ts [N=200]
 */
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { startPgTarget } from '../test/support/pg-target.js';
import { startTestHallpass } from '../test/support/hallpass.js';
import { distribution, fmt } from './stats.js';

const N = Number(process.argv[2] ?? 200);
const target = await startPgTarget();
const t = await startTestHallpass({ target, schedulerPollMs: 1000 });
const alice = await t.token('alice');
const host = t.h.url;

async function login(dsn: string | pg.ClientConfig): Promise<void> {
  const c = new pg.Client(typeof dsn === 'string' ? { connectionString: dsn } : dsn);
  await c.connect();
  await c.end();
}

async function viaHallpass(): Promise<{ ms: number; grantId: string }> {
  const t0 = performance.now();
  const r = await fetch(`${host}/api/v1/requests`, {
    method: 'POST', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
    body: JSON.stringify({ resource: 'app-db', role: 'read', duration: '5m', reason: 'bench' }),
  });
  const body = (await r.json()) as { grant: { id: string } };
  const c = await fetch(`${host}/api/v1/grants/${body.grant.id}/credentials`, { headers: { authorization: `Bearer ${alice}` } });
  const creds = (await c.json()) as { dsn: string };
  await login(creds.dsn);
  return { ms: performance.now() - t0, grantId: body.grant.id };
}

const admin = await target.admin();
async function raw(i: number): Promise<number> {
  const name = `raw_${i}_${randomBytes(4).toString('hex')}`;
  const pw = randomBytes(24).toString('base64url');
  const t0 = performance.now();
  await admin.query(`create role "${name}" login password '${pw}' valid until '${new Date(Date.now() + 300_000).toISOString()}'; grant pg_read_all_data to "${name}"`);
  await login({ host: target.host, port: target.port, database: target.database, user: name, password: pw });
  const ms = performance.now() - t0;
  await admin.query(`drop role "${name}"`);
  return ms;
}

// warm up both paths
for (let i = 0; i < 5; i++) {
  const { grantId } = await viaHallpass();
  await t.api(alice, 'POST', `/api/v1/grants/${grantId}/revoke`, {});
  await raw(-i);
}
const hp: number[] = [];
const rw: number[] = [];
for (let i = 0; i < N; i++) {
  // interleave so both see the same machine conditions
  const { ms, grantId } = await viaHallpass();
  hp.push(ms);
  await t.api(alice, 'POST', `/api/v1/grants/${grantId}/revoke`, {}); // not timed: one read grant at a time per user
  rw.push(await raw(i));
}
const dh = distribution(hp);
const dr = distribution(rw);
console.log(`time to access (auto-approved request -> credential that logs in), ${N} requests, store=SQLite (WAL, synchronous=NORMAL), target=PostgreSQL 17 scram-sha-256`);
console.log(`  raw CREATE ROLE+GRANT+login : ${fmt(dr, ' ms')}`);
console.log(`  hallpass HTTP request+creds+login: ${fmt(dh, ' ms')}`);
console.log(`  ratio p50 ${(dh.p50 / dr.p50).toFixed(2)}x  p95 ${(dh.p95 / dr.p95).toFixed(2)}x  (target p95 <= 2x)`);
await admin.end();
await t.close();
await target.stop();
