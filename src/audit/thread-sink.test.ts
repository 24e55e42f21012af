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
import { notedHeads, notedSlots, setAuditHeadKey } from './head-seal.js';

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

  it('seals the head with the key it was started with', async () => {
    setAuditHeadKey({ id: 'mtest', key: Buffer.alloc(32, 3) });
    try {
      const keyed = threadSink(join(dir, `s${n}.db`), storeSink(store));
      try {
        await keyed.record([ev(1), ev(2), ev(3)]);
        const head = await store.db.selectFrom('audit_head').select(['seq', 'hash', 'seal']).executeTakeFirstOrThrow();
        expect(head.seal).toMatch(/^mtest\./);
        expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 3 });
      } finally {
        await keyed.close();
      }
    } finally {
      setAuditHeadKey(undefined);
    }
  });

  it('a cut-back of the main thread\'s events is recorded by the writer thread\'s next append, and the main thread does not forget it (third review)', async () => {
    setAuditHeadKey({ id: 'mtest', key: Buffer.alloc(32, 5) });
    const keyed = threadSink(join(dir, `s${n}.db`), storeSink(store));
    try {
      const deps = { store, appendAudit: appendEvents } as unknown as AccessDeps;
      await keyed.record([ev(1)]); // the thread: event 1
      const snap = await store.db.selectFrom('audit_head').select(['seq', 'hash', 'seal']).executeTakeFirstOrThrow();
      for (let i = 0; i < 4; i++) await inTx(deps, async (_tx, audit) => audit(ev(10 + i, 'grant.approved'))); // main: 2..5
      expect(notedHead()?.seq).toBe(5);
      // A database writer cuts the main thread's events back, the thread's head (genuinely sealed) put back.
      await store.db.deleteFrom('audit_events').where('seq', '>', snap.seq).execute();
      await store.db.updateTable('audit_head').set(snap).where('id', '=', 1).execute();
      await keyed.record([ev(20)]);
      const found = await queryEvents(store.db, { type: 'audit.rollback_detected', limit: 5 });
      expect(found.map((e) => [e.data.seq, e.data.headSeq])).toEqual([[5, 1]]);
      // Reported once: neither the thread's next batches nor the main thread's next append repeat it
      // (fourth review: one cut-back became a stream of alarms, then a false "rewritten").
      await keyed.record([ev(21)]);
      await keyed.record([ev(22)]);
      await inTx(deps, async (_tx, audit) => audit(ev(30, 'grant.approved')));
      expect(await queryEvents(store.db, { type: 'audit.rollback_detected', limit: 5 })).toHaveLength(1);
      expect(await verifyChain(store.db, { written: notedHeads() })).toMatchObject({ ok: true });
    } finally {
      await keyed.close();
      setAuditHeadKey(undefined);
    }
  });

  it('one cut-back, with the thread and the main thread appending at once, is reported once (fifth review: a second alarm said "rewritten")', async () => {
    setAuditHeadKey({ id: 'mtest', key: Buffer.alloc(32, 8) });
    const keyed = threadSink(join(dir, `s${n}.db`), storeSink(store));
    try {
      const deps = { store, appendAudit: appendEvents } as unknown as AccessDeps;
      await keyed.record([ev(1)]);
      await inTx(deps, async (_tx, audit) => audit(ev(2, 'grant.approved')));
      const snap = await store.db.selectFrom('audit_head').select(['seq', 'hash', 'seal']).executeTakeFirstOrThrow();
      await inTx(deps, async (_tx, audit) => audit(ev(3, 'grant.approved')));
      await keyed.record([ev(4)]);
      await store.db.deleteFrom('audit_events').where('seq', '>', snap.seq).execute();
      await store.db.updateTable('audit_head').set(snap).where('id', '=', 1).execute();
      await Promise.all([keyed.record([ev(5)]), inTx(deps, async (_tx, audit) => audit(ev(6, 'grant.approved')))]);
      const found = await queryEvents(store.db, { type: 'audit.rollback_detected', limit: 5 });
      expect(found).toHaveLength(1);
      expect(String(found[0]!.data.message)).toMatch(/cut back/);
    } finally {
      await keyed.close();
      setAuditHeadKey(undefined);
    }
  });

  it('a cut-back of the writer thread\'s events (the gateway\'s) is caught by verify and by the main thread\'s next append (fourth review)', async () => {
    setAuditHeadKey({ id: 'mtest', key: Buffer.alloc(32, 6) });
    const keyed = threadSink(join(dir, `s${n}.db`), storeSink(store));
    try {
      const deps = { store, appendAudit: appendEvents } as unknown as AccessDeps;
      await inTx(deps, async (_tx, audit) => audit(ev(1, 'grant.approved'))); // main: event 1
      const snap = await store.db.selectFrom('audit_head').select(['seq', 'hash', 'seal']).executeTakeFirstOrThrow();
      await keyed.record([ev(2), ev(3), ev(4)]); // the thread: 2..4
      await store.db.deleteFrom('audit_events').where('seq', '>', snap.seq).execute();
      await store.db.updateTable('audit_head').set(snap).where('id', '=', 1).execute();
      expect(await verifyChain(store.db, { written: notedHeads() })).toMatchObject({ ok: false, firstBad: { reason: 'truncated' } });
      await inTx(deps, async (_tx, audit) => audit(ev(5, 'grant.approved')));
      const found = await queryEvents(store.db, { type: 'audit.rollback_detected', limit: 5 });
      expect(found.map((e) => [e.data.seq, e.data.headSeq])).toEqual([[4, 1]]);
    } finally {
      await keyed.close();
      setAuditHeadKey(undefined);
    }
  });

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
