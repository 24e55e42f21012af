/**
 * What finding a grant's audit events costs the SQLite writer, per event:
 *   node --import tsx bench/audit-grant-lookup.ts
 * Appends 256,000 gateway statement events in batches of 128 (as the gateway's batcher hands
 * them to the writer thread) through the writer's own appender, which keeps audit_grant_spans,
 * with and without an extra index on grant_id, for 1, 10, 100 and 5,000 grants whose statements
 * interleave one by one. Prints CPU per event. docs/audit.md explains why hallpass keeps spans
 * and has no grant_id index.
 */
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepareEdgeEvent } from '../src/audit/append.js';
import { sqliteAppender } from '../src/audit/sqlite-append.js';
import { configureSqlite, openStore } from '../src/store/db.js';

const N = 256_000;
const BATCH = 128;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

for (let round = 1; round <= ROUNDS; round++) {
  for (const grants of [1, 10, 100, 5000]) {
    for (const index of [false, true]) {
      const dir = mkdtempSync(join(tmpdir(), 'hp-grantlookup-'));
      const file = join(dir, 'state.sqlite');
      await (await openStore({ url: file })).close();
      const db = new Database(file);
      configureSqlite(db);
      if (index) db.exec('create index audit_grant on audit_events(grant_id) where grant_id is not null');
      const append = sqliteAppender(db);
      const events = Array.from({ length: N }, (_, k) => prepareEdgeEvent({
        type: 'gateway.execute', actor: 'usr_bench', at: 1_767_225_600_000 + k, grantId: `grt_${(k % grants).toString(16).padStart(16, '0')}`,
        data: { sessionId: 'gws_0123456789abcdef', statementId: k, sql: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;', durationMs: 0.4, tag: 'SELECT 1', rows: 1 },
      }));
      const cpu = process.cpuUsage();
      for (let i = 0; i < N; i += BATCH) append(events.slice(i, i + BATCH));
      const used = process.cpuUsage(cpu);
      const spans = (db.prepare('select count(*) as n from audit_grant_spans').get() as { n: number }).n;
      console.log(`round ${round}  ${String(grants).padStart(5)} grants  ${index ? 'spans + grant_id index' : 'spans only            '}  ${((used.user + used.system) / N).toFixed(2)} µs/event (system ${(used.system / N).toFixed(2)})  ${spans} spans`);
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
