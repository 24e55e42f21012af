/**
 * Cut-off timing: how long after a grant's end (by expiry, and by revocation) an open psql
 * session running `select pg_sleep(600)` is closed, and when its upstream query stops.
 *
 *   node --import tsx bench/gateway/cutoff.ts
 */
import { spawn } from 'node:child_process';
import { startGatewayFixture, type GatewayFixture } from '../../test/support/gateway-harness.js';

async function sleepingPsql(fx: GatewayFixture, grantId: string): Promise<{ exited: Promise<number>; stderr: () => string }> {
  const child = spawn('psql', ['-X', '-c', 'select pg_sleep(600)'], { env: fx.env(grantId) });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((r) => child.on('close', () => r(performance.now())));
  for (let i = 0; i < 200 && (await running(fx)) === 0; i++) await new Promise((r) => setTimeout(r, 20));
  return { exited, stderr: () => stderr.trim().split('\n')[0] ?? '' };
}

async function running(fx: GatewayFixture): Promise<number> {
  const admin = await fx.target.admin();
  try {
    const r = await admin.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where query like 'select pg_sleep%' and state = 'active'");
    return r.rows[0]?.n ?? 0;
  } finally {
    await admin.end();
  }
}

async function upstreamGone(fx: GatewayFixture): Promise<number> {
  while ((await running(fx)) > 0) await new Promise((r) => setTimeout(r, 5));
  return performance.now();
}

const fx = await startGatewayFixture();
try {
  for (let round = 0; round < 3; round++) {
    const expiresAt = Date.now() + 1500;
    const g1 = fx.grant({ expiresAt: new Date(expiresAt) });
    const p1 = await sleepingPsql(fx, g1);
    const tEnd = performance.now() + (expiresAt - Date.now());
    const exited1 = await p1.exited;
    const gone1 = await upstreamGone(fx);
    console.log(`expiry:     psql closed ${(exited1 - tEnd).toFixed(1)} ms after the grant end, upstream query gone after ${(gone1 - tEnd).toFixed(1)} ms — "${p1.stderr()}"`);

    const g2 = fx.grant();
    const p2 = await sleepingPsql(fx, g2);
    const t0 = performance.now();
    fx.authority.revoke(g2);
    await fx.gateway.endGrant(g2, 'revoked');
    const exited2 = await p2.exited;
    const gone2 = await upstreamGone(fx);
    console.log(`revocation: psql closed ${(exited2 - t0).toFixed(1)} ms after endGrant, upstream query gone after ${(gone2 - t0).toFixed(1)} ms — "${p2.stderr()}"`);
  }
  const ends = fx.sink.ofType('gateway.session.end');
  console.log(`session.end events: ${ends.map((e) => e.data.reason).join(', ')}`);
} finally {
  await fx.stop();
}
