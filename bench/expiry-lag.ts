/**
 * Expiry lag: N grants (default 1,000) all ending within the same second. For each, the time
 * from its end (expires_at) to its role being gone from the target's pg_roles, observed by
 * polling pg_roles every 10 ms. Target: p99 <= 1 s.
 *
 *   node --import tsx bench/expiry-lag.ts [N=1000]
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequest } from '../src/access/requests.js';
import { startPgTarget } from '../test/support/pg-target.js';
import { startTestHallpass, testPolicy } from '../test/support/hallpass.js';
import { distribution, fmt } from './stats.js';

const N = Number(process.argv[2] ?? 1000);
const target = await startPgTarget();
// N users, each holding one read grant (one per user: a second would be an extension).
const users = Array.from({ length: N }, (_, i) => `u${i}`);
const policy = testPolicy(target).replace(
  'users:\n',
  `users:\n${users.map((u) => `  - { name: ${u}, groups: [engineers] }`).join('\n')}\n`,
);
const t = await startTestHallpass({ target, policy, schedulerPollMs: 1000 });
writeFileSync(join(t.dataDir, 'bench-note.txt'), 'expiry-lag bench');

// Everything ends in the second that starts `lead` ms from now.
const lead = Math.max(30_000, N * 120);
const endSecond = Math.ceil((Date.now() + lead) / 1000) * 1000;
const principals = new Map<string, number>(); // principal -> expires_at
const t0 = Date.now();
let next = 0;
await Promise.all(Array.from({ length: 8 }, async () => {
  while (next < N) {
    const u = users[next++]!;
    const p = await t.principal(u);
    const seconds = Math.max(1, Math.round((endSecond + 500 - Date.now()) / 1000));
    const o = await createRequest(t.h.deps, p, { resource: 'app-db', role: 'read', durationSeconds: seconds, reason: 'bench' });
    if (o.grant?.status !== 'active' || o.grant.expires_at === null) throw new Error(`grant not active: ${o.grant?.status} ${o.grant?.last_error}`);
    principals.set(o.grant.principal, o.grant.expires_at);
  }
}));
const provisionMs = Date.now() - t0;
const ends = [...principals.values()];
console.log(`provisioned ${N} grants in ${(provisionMs / 1000).toFixed(1)} s; ends span ${((Math.max(...ends) - Math.min(...ends)) / 1000).toFixed(2)} s`);
if (Date.now() > Math.min(...ends)) console.log('WARNING: provisioning overran the end time; raise the lead');

const admin = await target.admin();
const goneAt = new Map<string, number>();
while (goneAt.size < principals.size && Date.now() < endSecond + 60_000) {
  const r = await admin.query<{ rolname: string }>("select rolname from pg_roles where rolname like 'hp\\_%'");
  const now = Date.now();
  const present = new Set(r.rows.map((x) => x.rolname));
  for (const p of principals.keys()) if (!present.has(p) && !goneAt.has(p)) goneAt.set(p, now);
  await new Promise((res) => setTimeout(res, 10));
}
await admin.end();
const lags = [...principals].map(([p, end]) => ((goneAt.get(p) ?? Infinity) - end) / 1000);
const early = lags.filter((x) => x < 0).length;
const d = distribution(lags);
console.log(`expiry lag: ${N} grants ending within one second (role gone from pg_roles - expires_at), poll 10 ms`);
console.log(`  ${fmt(d, ' s', 3)}`);
console.log(`  p99 / target(1 s) = ${d.p99.toFixed(3)}   removed before their end: ${early}   never removed: ${lags.filter((x) => !Number.isFinite(x)).length}`);
await t.close();
await target.stop();
