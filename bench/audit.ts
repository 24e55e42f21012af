/**
 * Audit append throughput, side by side in one run:
 *   node --import tsx bench/audit.ts [events]
 * Embedded store (SQLite file, WAL, synchronous=NORMAL as openStore sets them) and PostgreSQL
 * (the machine's, via HALLPASS_TEST_PG_URL or 127.0.0.1:5432), each with AuditBatcher into
 * storeSink (as the gateway audits: one transaction per batch, the producer pausing while the
 * batcher is overloaded) and with one transaction per event. Target: >= 10,000 events/s on the
 * embedded store.
 */
import { sql } from 'kysely';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendEvents } from '../src/audit/append.js';
import { AuditBatcher } from '../src/audit/batcher.js';
import { highVolumeSink, storeSink } from '../src/audit/store-sink.js';
import type { AuditEventInput } from '../src/audit/types.js';
import { verifyChain } from '../src/audit/verify.js';
import { openStore, type StoreConnection } from '../src/store/db.js';
import { createTestDatabase } from '../test/support/services.js';

const TARGET = 10_000;
const N = Number(process.argv[2] ?? 100_000);
const SINGLE_N = Math.min(N, 5_000);

interface Row {
  store: string;
  mode: string;
  events: number;
  seconds: number;
}
const rows: Row[] = [];
const cpuNotes: string[] = [];

function event(i: number): AuditEventInput {
  return {
    type: 'gateway.query',
    actor: 'usr_k2j4h5g6f7d8s9a0',
    grantId: 'grt_q1w2e3r4t5y6u7i8',
    at: Date.now(),
    data: { session: 'ses_1', n: i, sql: 'select id, email, created_at from customers where id = $1 limit 10', rows: 1, micros: 412 },
  };
}

async function timed(store: string, mode: string, events: number, fn: () => Promise<void>): Promise<void> {
  const t0 = process.hrtime.bigint();
  await fn();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  rows.push({ store, mode, events, seconds });
}

async function runAll(label: string, open: () => Promise<StoreConnection>): Promise<void> {
  {
    const s = await open();
    await timed(label, 'AuditBatcher (defaults)', N, async () => {
      const b = new AuditBatcher(storeSink(s));
      for (let i = 0; i < N; i++) {
        if (b.overloaded) await b.whenRelieved();
        b.add(event(i));
      }
      await b.drain();
    });
    await timed(label, 'verifyChain (read + rehash)', N, async () => {
      const r = await verifyChain(s.db);
      if (!r.ok || r.count !== N) throw new Error(`chain not ok after the batcher run: ${JSON.stringify(r)}`);
    });
    await s.close();
  }
  if (label.startsWith('sqlite')) {
    // The gateway's path in the server: the batcher into a writer thread (highVolumeSink).
    const s = await open();
    const sink = highVolumeSink(s);
    await sink.record([event(-1)]); // the thread is up before the clock starts
    await timed(label, 'AuditBatcher + writer thread', N, async () => {
      const b = new AuditBatcher(sink);
      for (let i = 0; i < N; i++) {
        if (b.overloaded) await b.whenRelieved();
        b.add(event(i));
      }
      await b.drain();
    });
    // What a batch costs: the writer thread fed fixed-size batches one after another; CPU of the
    // whole process (both threads) per event. Small batches pay the per-batch price (a
    // transaction, its WAL pages, a thread round trip) on few events: this is why the batcher
    // waits for flushAt events (or maxDelayMs) rather than writing whatever has arrived.
    const BATCH_N = Math.min(N, 50_000);
    for (const size of [25, 100, 250, 1000]) {
      const c0 = process.cpuUsage();
      await timed(label, `writer thread, batches of ${size}`, BATCH_N, async () => {
        for (let i = 0; i < BATCH_N; i += size) await sink.record(Array.from({ length: Math.min(size, BATCH_N - i) }, (_, k) => event(i + k)));
      });
      const c = process.cpuUsage(c0);
      cpuNotes.push(`writer thread, batches of ${String(size).padStart(4)}: ${((c.user + c.system) / BATCH_N).toFixed(1)} µs CPU per event`);
    }
    await sink.close();
    const r = await verifyChain(s.db);
    if (!r.ok || r.count !== N + 1 + BATCH_N * 4) throw new Error(`chain not ok after the writer-thread run: ${JSON.stringify(r)}`);
    await s.close();
  }
  {
    const s = await open();
    await timed(label, 'one transaction per event', SINGLE_N, async () => {
      for (let i = 0; i < SINGLE_N; i++) {
        await s.db.transaction().execute((tx) => appendEvents(tx, s.dialect, [event(i)]));
      }
    });
    if (s.dialect === 'postgres') {
      await timed(label, 'one tx per event, 8 concurrent', SINGLE_N, async () => {
        let next = 0;
        const worker = async () => {
          while (next < SINGLE_N) {
            const i = next++;
            await s.db.transaction().execute((tx) => appendEvents(tx, s.dialect, [event(i)]));
          }
        };
        await Promise.all(Array.from({ length: 8 }, worker));
      });
    }
    const r = await verifyChain(s.db);
    if (!r.ok) throw new Error(`chain not ok: ${r.message}`);
    await s.close();
  }
}

/** Reads the pragmas back from the store, so the output states what was measured. */
async function sqliteSettings(s: StoreConnection): Promise<string> {
  const mode = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(s.db);
  const sync = await sql<{ synchronous: number }>`pragma synchronous`.execute(s.db);
  const names = ['OFF', 'NORMAL', 'FULL', 'EXTRA'];
  const level = sync.rows[0]?.synchronous ?? -1;
  return `journal_mode=${mode.rows[0]?.journal_mode ?? '?'}, synchronous=${names[level] ?? level}`;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'hp-bench-audit-'));
  let n = 0;
  try {
    const probe = await openStore({ url: join(dir, 'probe.db') });
    console.log(`embedded store: SQLite file in ${dir}, ${await sqliteSettings(probe)}`);
    await probe.close();
    await runAll('sqlite (file, WAL, synchronous=NORMAL)', () => openStore({ url: join(dir, `b${++n}.db`) }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const drops: Array<() => Promise<void>> = [];
  try {
    await runAll('postgres (local, 1 instance)', async () => {
      const d = await createTestDatabase('hp_bench');
      drops.push(d.drop);
      return openStore({ url: d.url });
    });
  } catch (err) {
    console.log(`postgres skipped: ${(err as Error).message}`);
  } finally {
    for (const d of drops) await d();
  }

  console.log(`audit append benchmark: node ${process.version}, ${cpus().length} CPU(s), ${N} events per batcher run, target ${TARGET} events/s`);
  console.log('store                                   | mode                              |  events |  seconds |  events/s | x target');
  for (const r of rows) {
    const rate = r.events / r.seconds;
    console.log(
      `${r.store.padEnd(39)} | ${r.mode.padEnd(33)} | ${String(r.events).padStart(7)} | ${r.seconds.toFixed(3).padStart(8)} | ${Math.round(rate).toString().padStart(9)} | ${(rate / TARGET).toFixed(2).padStart(8)}`,
    );
  }
  for (const note of cpuNotes) console.log(note);
}

await main();
