import { sql } from 'kysely';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type StoreConnection } from '../store/db.js';
import { inTx, type AccessDeps } from '../access/context.js';
import { appendEvents } from './append.js';
import { AuditBatcher } from './batcher.js';
import { queryEvents } from './query.js';
import { notedHeads, notedSlots, sealHead, setAuditHeadKey } from './head-seal.js';

/** The newest head this process's main-thread writers noted. */
const notedHead = () => notedSlots().main;
import { highVolumeSink, storeSink } from './store-sink.js';
import { threadSink, type ThreadSink } from './thread-sink.js';
import type { AuditEventInput } from './types.js';
import { verifyChain } from './verify.js';

const dir = mkdtempSync(join(tmpdir(), 'hp-thread-sink-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const ev = (i: number, type = 'gateway.execute'): AuditEventInput => ({ type, actor: 'alice', at: 1_000 + i, data: { i, sql: 'select 1' } });

describe('threadSink (audit writer thread on the SQLite store file)', () => {
  let store: StoreConnection;
  let sink: ThreadSink;
  beforeEach(async () => {
    store = await openStore({ url: join(dir, `s${++n}.db`) });
    sink = threadSink(join(dir, `s${n}.db`), storeSink(store));
  });
  afterEach(async () => {
    await sink.close();
    await store.close();
  });

  type HeadRow = { seq: number; hash: string; seal: string | null };
  /**
   * A server's audit path on this test's store: a head key set, a writer thread started with it,
   * main-thread appends (inTx), and what a database writer can do: read the head, cut back to one.
   */
  async function keyedRun(fn: (t: {
    keyed: ThreadSink;
    main: (i: number) => Promise<void>;
    head: () => Promise<HeadRow>;
    cutBackTo: (h: HeadRow) => Promise<void>;
    rollbacks: () => Promise<Awaited<ReturnType<typeof queryEvents>>>;
  }) => Promise<void>): Promise<void> {
    setAuditHeadKey({ id: 'mtest', key: Buffer.alloc(32, 5) });
    const keyed = threadSink(join(dir, `s${n}.db`), storeSink(store));
    const deps = { store, appendAudit: appendEvents } as unknown as AccessDeps;
    try {
      await fn({
        keyed,
        main: (i) => inTx(deps, async (_tx, audit) => audit(ev(i, 'grant.approved'))),
        head: () => store.db.selectFrom('audit_head').select(['seq', 'hash', 'seal']).executeTakeFirstOrThrow(),
        cutBackTo: async (h) => {
          await store.db.deleteFrom('audit_events').where('seq', '>', h.seq).execute();
          await store.db.updateTable('audit_head').set(h).where('id', '=', 1).execute();
        },
        rollbacks: () => queryEvents(store.db, { type: 'audit.rollback_detected', limit: 5 }),
      });
    } finally {
      await keyed.close();
      setAuditHeadKey(undefined);
    }
  }

  it('seals the head with the key it was started with', () => keyedRun(async ({ keyed, head }) => {
    await keyed.record([ev(1), ev(2), ev(3)]);
    expect((await head()).seal).toMatch(/^mtest\./);
    expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 3 });
  }));

  it('is started with the previous master keys\' head keys too: after a rotation its first append records it, with no alarm', () => keyedRun(async ({ keyed, head }) => {
    await keyed.record([ev(1), ev(2)]);
    await keyed.close();
    // The server restarted with a new master key and the old one as previous.
    setAuditHeadKey({ id: 'mnew', key: Buffer.alloc(32, 6) }, [{ id: 'mtest', key: Buffer.alloc(32, 5) }]);
    const rotated = threadSink(join(dir, `s${n}.db`), storeSink(store));
    try {
      await rotated.record([ev(3)]);
    } finally {
      await rotated.close();
    }
    expect((await head()).seal).toMatch(/^mnew\./);
    expect(await queryEvents(store.db, { type: 'audit.head_unsealed', limit: 5 })).toEqual([]);
    expect((await queryEvents(store.db, { type: 'audit.head_key_rotated', limit: 5 })).map((e) => [e.data.from, e.data.to])).toEqual([['mtest', 'mnew']]);
    expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 4 });
    // The head sealed by the old key again, after the rotation is on the record: a forgery.
    const h = await head();
    setAuditHeadKey({ id: 'mtest', key: Buffer.alloc(32, 5) });
    const oldSeal = sealHead(h.seq, h.hash);
    setAuditHeadKey({ id: 'mnew', key: Buffer.alloc(32, 6) }, [{ id: 'mtest', key: Buffer.alloc(32, 5) }]);
    await store.db.updateTable('audit_head').set({ seal: oldSeal }).where('id', '=', 1).execute();
    const again = threadSink(join(dir, `s${n}.db`), storeSink(store));
    try {
      await again.record([ev(4)]);
    } finally {
      await again.close();
    }
    expect(await queryEvents(store.db, { type: 'audit.head_key_rotated', limit: 5 })).toHaveLength(1);
    expect((await queryEvents(store.db, { type: 'audit.head_unsealed', limit: 5 })).map((e) => e.data.seal)).toEqual(['invalid']);
  }));

  it('a cut-back of the main thread\'s events is recorded by the writer thread\'s next append, and the main thread does not forget it (third review)', () =>
    keyedRun(async ({ keyed, main, head, cutBackTo, rollbacks }) => {
      await keyed.record([ev(1)]); // the thread: event 1
      const snap = await head();
      for (let i = 0; i < 4; i++) await main(10 + i); // main: 2..5
      expect(notedHead()?.seq).toBe(5);
      // A database writer cuts the main thread's events back, the thread's head (genuinely sealed) put back.
      await cutBackTo(snap);
      await keyed.record([ev(20)]);
      expect((await rollbacks()).map((e) => [e.data.seq, e.data.headSeq])).toEqual([[5, 1]]);
      // Reported once: neither the thread's next batches nor the main thread's next append repeat it
      // (fourth review: one cut-back became a stream of alarms, then a false "rewritten").
      await keyed.record([ev(21)]);
      await keyed.record([ev(22)]);
      await main(30);
      expect(await rollbacks()).toHaveLength(1);
      expect(await verifyChain(store.db, { written: notedHeads() })).toMatchObject({ ok: true });
    }));

  it('one cut-back, with the thread and the main thread appending at once, is reported once (fifth review: a second alarm said "rewritten")', () =>
    keyedRun(async ({ keyed, main, head, cutBackTo, rollbacks }) => {
      await keyed.record([ev(1)]);
      await main(2);
      const snap = await head();
      await main(3);
      await keyed.record([ev(4)]);
      await cutBackTo(snap);
      await Promise.all([keyed.record([ev(5)]), main(6)]);
      const found = await rollbacks();
      expect(found).toHaveLength(1);
      expect(String(found[0]!.data.message)).toMatch(/cut back/);
    }));

  it('a cut-back of the writer thread\'s events (the gateway\'s) is caught by verify and by the main thread\'s next append (fourth review)', () =>
    keyedRun(async ({ keyed, main, head, cutBackTo, rollbacks }) => {
      await main(1); // main: event 1
      const snap = await head();
      await keyed.record([ev(2), ev(3), ev(4)]); // the thread: 2..4
      await cutBackTo(snap);
      expect(await verifyChain(store.db, { written: notedHeads() })).toMatchObject({ ok: false, firstBad: { reason: 'truncated' } });
      await main(5);
      expect((await rollbacks()).map((e) => [e.data.seq, e.data.headSeq])).toEqual([[4, 1]]);
    }));

  it('appends batches from the writer thread while state transactions append on the main connection: one intact chain', async () => {
    await sink.record([ev(-1, 'warm.up')]); // the thread is up before the race starts
    const b = new AuditBatcher(sink, { maxDelayMs: 0, maxBatch: 50 });
    const tick = () => new Promise((r) => setTimeout(r, 1));
    const producer = (async () => {
      for (let i = 0; i < 2000; i++) {
        b.add(ev(i));
        if (i % 20 === 0) await tick();
      }
    })();
    // Meanwhile state changes, each with its audit event in one transaction that reads before it
    // writes (as the lifecycle does): none may fail with SQLITE_BUSY, nor fork the chain.
    const states = (async () => {
      for (let k = 0; k < 20; k++) {
        await store.db.transaction().execute(async (tx) => {
          await tx.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow();
          await tick();
          await tick();
          return appendEvents(tx, 'sqlite', [ev(k, 'grant.activated')]);
        });
      }
    })();
    await Promise.all([producer, states]);
    await b.drain();
    expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 2021 });
    const gw = (await store.db.selectFrom('audit_events').select('data').where('type', '=', 'gateway.execute').orderBy('seq').execute())
      .map((r) => (JSON.parse(r.data) as { i: number }).i);
    expect(gw).toEqual(Array.from({ length: 2000 }, (_, i) => i)); // in order, each once
  });

  it('hands a batch it cannot clone to the fallback on this thread, and keeps order', async () => {
    await sink.record([ev(1)]);
    await sink.record([{ ...ev(2), data: { fn: () => 1, i: 2 } }]);
    await sink.record([ev(3)]);
    const events = await queryEvents(store.db, { limit: 10 });
    expect(events.map((e) => e.data.i)).toEqual([1, 2, 3]);
    expect((await verifyChain(store.db)).ok).toBe(true);
  });

  it('stores exactly what storeSink on this thread would: times to the millisecond, dates in data, redaction', async () => {
    const events: AuditEventInput[] = [
      { type: 'gateway.execute', actor: 'alice', grantId: 'grt_1', at: new Date(1_764_590_000_123), data: { when: new Date(0), n: 1.5, u: undefined, dsn: 'x', url: 'postgres://u:pw@h/db' } },
      { type: 'gateway.query', actor: '', at: 1_764_590_000_124, data: { sql: 'select 1' } },
    ];
    await sink.record(events);
    const mem = await openStore({ url: ':memory:' });
    await storeSink(mem).record(events);
    const cols = ['seq', 'at', 'type', 'actor', 'grant_id', 'data', 'prev_hash', 'hash'] as const;
    const viaThread = await store.db.selectFrom('audit_events').select(cols).orderBy('seq').execute();
    expect(viaThread).toEqual(await mem.db.selectFrom('audit_events').select(cols).orderBy('seq').execute());
    expect(viaThread[0]?.at).toBe(1_764_590_000_123);
    await mem.close();
  });

  it('reports a failed batch (nothing of it stored) and starts a new thread after close', async () => {
    await sql`create trigger block before insert on audit_events begin select raise(abort, 'disk on fire'); end`.execute(store.db);
    await expect(sink.record([ev(1), ev(2)])).rejects.toThrow('disk on fire');
    await sql`drop trigger block`.execute(store.db);
    await sink.close();
    await sink.record([ev(1), ev(2)]);
    expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 2 });
  });

  it('highVolumeSink keeps an in-memory store on this thread', async () => {
    const mem = await openStore({ url: ':memory:' });
    const s = highVolumeSink(mem);
    await s.record([ev(1)]);
    await s.close();
    expect(await verifyChain(mem.db)).toMatchObject({ ok: true, count: 1 });
    await mem.close();
  });
});
