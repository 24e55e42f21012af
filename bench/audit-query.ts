/**
 * Audit queries on a log the size the gateway makes (one event per statement):
 *   node --import tsx bench/audit-query.ts [events]     # default 1,000,000
 * Fills a SQLite state store (WAL, as openStore sets it) through the gateway's appender with
 * gateway.execute events of 5,000 grants, a grant.activated every 997 events and a request
 * event every 1,009, their `at` a millisecond apart with up to 50 ms of disorder (batches from
 * several sessions), then times each query form the API and `hallpass audit` use and prints the
 * plans SQLite chose for the statements it ran. No target: the point is that no query reads the whole log.
 */
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect, type CompiledQuery } from 'kysely';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepareEdgeEvent } from '../src/audit/append.js';
import { exportEvents } from '../src/audit/export.js';
import { queryEvents, type AuditQuery } from '../src/audit/query.js';
import { sqliteAppender } from '../src/audit/sqlite-append.js';
import { configureSqlite, openStore } from '../src/store/db.js';
import type { DB } from '../src/store/schema.js';

const N = Number(process.argv[2] ?? 1_000_000);
const dir = mkdtempSync(join(tmpdir(), 'hp-auditq-'));
const file = join(dir, 'state.sqlite');
const T0 = Date.UTC(2026, 0, 1);
const grant = (k: number) => `grt_${(k % 5000).toString(16).padStart(16, '0')}`;

try {
  await (await openStore({ url: file })).close();
  const raw = new Database(file);
  configureSqlite(raw);
  const append = sqliteAppender(raw);
  const started = Date.now();
  for (let i = 0; i < N; i += 1000) {
    const batch = [];
    for (let k = i; k < Math.min(N, i + 1000); k++) {
      const type = k % 997 === 0 ? 'grant.activated' : k % 1009 === 0 ? 'request.created' : 'gateway.execute';
      batch.push(prepareEdgeEvent({
        type, actor: 'usr_bench', at: T0 + k - ((k * 7919) % 50),
        ...(type === 'request.created' ? { requestId: `req_${k.toString(16).padStart(16, '0')}` } : { grantId: grant(k) }),
        data: { sessionId: 'gws_0123456789abcdef', statementId: k, sql: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;', durationMs: 0.4, tag: 'SELECT 1', rows: 1 },
      }));
    }
    append(batch);
  }
  raw.close();
  console.log(`filled ${N.toLocaleString('en')} events in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const store = await openStore({ url: file });
  const reader = new Database(file, { readonly: true });
  const statements: CompiledQuery[] = [];
  const traced = new Kysely<DB>({ dialect: new SqliteDialect({ database: new Database(file, { readonly: true }) }), log: (e) => void statements.push(e.query) });
  const mid = T0 + Math.floor(N / 2);
  const cases: Array<[string, AuditQuery]> = [
    ['grant (200 events), first 100', { grantId: grant(7), limit: 100 }],
    ['grant (200 events), all', { grantId: grant(7), limit: 1000 }],
    ['grant with no events', { grantId: 'grt_ffffffffffffffff', limit: 100 }],
    ['grant, the last second', { grantId: grant(7), since: T0 + N - 1000, limit: 100 }],
    ['request', { requestId: `req_${(1009 * 400).toString(16).padStart(16, '0')}`, limit: 100 }],
    ['request, family gateway.*', { requestId: `req_${(1009 * 400).toString(16).padStart(16, '0')}`, typePrefix: 'gateway.', limit: 100 }],
    ['type grant.activated, last 90% of log', { type: 'grant.activated', since: T0 + N / 10, limit: 100 }],
    ['type grant.activated, first 100', { type: 'grant.activated', limit: 100 }],
    ['type grant.activated, a 1 s window', { type: 'grant.activated', since: mid, until: mid + 1000, limit: 100 }],
    ['type family grant.*, first 100', { typePrefix: 'grant.', limit: 100 }],
    ['type family gateway.*, first 100', { typePrefix: 'gateway.', limit: 100 }],
    ['the last second', { since: T0 + N - 1000, limit: 100 }],
    ['a 1 s window mid-log', { since: mid, until: mid + 1000, limit: 100 }],
    ['the last half of the log, first 100', { since: mid, limit: 100 }],
    ['an empty window', { since: T0 + N + 60_000, limit: 100 }],
    ['gateway.execute after seq N/2', { type: 'gateway.execute', afterSeq: N / 2, limit: 100 }],
  ];
  console.log(`\n${'query'.padEnd(40)} ${'rows'.padStart(5)} ${'ms'.padStart(8)}  plan`);
  for (const [label, q] of cases) {
    await queryEvents(store.db, q); // warm the page cache the same way for every form
    const t = process.hrtime.bigint();
    const rows = await queryEvents(store.db, q);
    const msTaken = Number(process.hrtime.bigint() - t) / 1e6;
    statements.length = 0;
    await queryEvents(traced, q);
    console.log(`${label.padEnd(40)} ${String(rows.length).padStart(5)} ${msTaken.toFixed(1).padStart(8)}  ${plans(reader, statements)}`);
  }
  for (const [label, filters] of [['export a 100,000-event window (jsonl)', { since: mid, until: mid + 100_000 }], ['export one grant (jsonl)', { grantId: grant(11) }]] as const) {
    const t = process.hrtime.bigint();
    let bytes = 0;
    const n = await exportEvents(store.db, 'jsonl', (chunk) => { bytes += chunk.length; }, filters);
    console.log(`${label.padEnd(40)} ${String(n).padStart(6)} events, ${(bytes / 1e6).toFixed(1)} MB in ${(Number(process.hrtime.bigint() - t) / 1e6).toFixed(0)} ms`);
  }
  reader.close();
  await traced.destroy();
  await store.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/** SQLite's plans for the statements a query ran (each distinct plan once, with how often it ran). */
function plans(db: Database.Database, statements: CompiledQuery[]): string {
  const seen = new Map<string, number>();
  for (const q of statements) {
    const rows = db.prepare(`explain query plan ${q.sql}`).all(...(q.parameters as unknown[])) as Array<{ detail: string }>;
    const detail = rows.map((r) => r.detail).join(', ');
    if (detail.includes('audit_head')) continue;
    seen.set(detail, (seen.get(detail) ?? 0) + 1);
  }
  return [...seen].map(([d, n]) => (n > 1 ? `${n}× ${d}` : d)).join('; ');
}
