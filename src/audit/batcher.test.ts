import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { openStore, type StoreConnection } from '../store/db.js';
import { ev } from './audit.conformance.js';
import { AuditBatcher, type AuditBatcherOptions } from './batcher.js';
import { storeSink } from './store-sink.js';
import type { AuditEventInput } from './types.js';
import { verifyChain } from './verify.js';
import { queryEvents } from './query.js';

const n = (e: AuditEventInput): number => e.data?.i as number;

/** Runs `fn` under fake timers, restoring real ones however it ends. */
async function withFakeTimers(fn: () => Promise<void>): Promise<void> {
  vi.useFakeTimers();
  try {
    await fn();
  } finally {
    vi.useRealTimers();
  }
}

/**
 * A batcher with `options` over a sink that records each batch's size and holds each write open
 * until finish() is called.
 */
function gatedBatcher(options: AuditBatcherOptions) {
  const calls: number[] = [];
  let release = (): void => undefined;
  const sink = { record: (events: readonly AuditEventInput[]) => (calls.push(events.length), new Promise<void>((r) => (release = r))) };
  return { calls, finish: () => release(), b: new AuditBatcher(sink, options) };
}

describe('AuditBatcher', () => {
  it('stores events in order, in batches no larger than maxBatch', async () => {
    const batches: number[][] = [];
    const b = new AuditBatcher({ record: async (events) => void batches.push(events.map(n)) }, { maxBatch: 3, maxDelayMs: 1 });
    for (let i = 0; i < 8; i++) b.add(ev(i));
    await b.drain();
    expect(batches.flat()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(Math.max(...batches.map((x) => x.length))).toBeLessThanOrEqual(3);
    expect(b.pending).toBe(0);
  });

  it('retries a failed batch and loses nothing on drain (clean shutdown)', async () => {
    const stored: number[] = [];
    let failures = 2;
    const errors: unknown[] = [];
    const b = new AuditBatcher(
      {
        record: async (events) => {
          if (failures-- > 0) throw new Error('sink down');
          stored.push(...events.map(n));
        },
      },
      { onError: (e) => errors.push(e) },
    );
    for (let i = 0; i < 5; i++) b.add(ev(i));
    await b.drain();
    expect(stored).toEqual([0, 1, 2, 3, 4]);
    expect(errors).toHaveLength(2);
  });

  it('reports overload at the high-water mark and relief under half of it', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new AuditBatcher({ record: () => gate }, { highWater: 4, maxDelayMs: 0 });
    for (let i = 0; i < 4; i++) b.add(ev(i));
    expect(b.overloaded).toBe(true);
    let relieved = false;
    const relief = b.whenRelieved().then(() => (relieved = true));
    expect(relieved).toBe(false);
    release();
    await relief;
    await b.drain();
    expect(b.overloaded).toBe(false);
    expect(relieved).toBe(true);
  });

  it('reports events it could not store after the last attempt instead of dropping them silently', async () => {
    const b = new AuditBatcher({ record: async () => Promise.reject(new Error('down')) });
    b.add(ev(1));
    await expect(b.drain({ timeoutMs: 200 })).rejects.toThrow(/1 audit events not stored/);
    expect(b.pending).toBe(1);
  });

  it('drain counts a store that recovers near the deadline as recovered, and does not hang on a sink that never answers', async () => {
    await withFakeTimers(async () => {
      // Three failures (retried after 50, 100 and, cut by the deadline, 150 ms), then the store is
      // back just at the deadline: that success must count as one and the rest be stored (it once
      // counted as a fourth failure, and drain gave up with two events queued).
      let calls = 0;
      const b = new AuditBatcher({ record: async () => { if (++calls <= 3) throw new Error('down'); } }, { maxBatch: 1 });
      for (let i = 0; i < 3; i++) b.add(ev(i));
      const done = b.drain({ timeoutMs: 300 });
      await vi.advanceTimersByTimeAsync(1000);
      await done;
      expect(b.pending).toBe(0);
    });
    const stuck = new AuditBatcher({ record: () => new Promise<void>(() => {}) });
    stuck.add(ev(1));
    // Before, this awaited the sink forever (the test's own timeout would end it).
    await expect(stuck.drain({ timeoutMs: 200 })).rejects.toThrow(/1 audit events not stored/);
  });

  it('drain waits out a store that is down for a while instead of giving up at once', async () => {
    let downUntil = Date.now() + 300;
    let attempts = 0;
    const stored: number[] = [];
    const b = new AuditBatcher({
      record: async (events) => {
        attempts++;
        if (Date.now() < downUntil) throw new Error('down');
        for (const e of events) stored.push((e.data as { i: number }).i);
      },
    });
    for (let i = 0; i < 500; i++) b.add(ev(i));
    await b.drain({ timeoutMs: 5000 });
    expect(stored).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(attempts).toBeLessThan(15); // backing off, not spinning
    downUntil = 0;
  });

  it('drain stores a queue of more batches than it has attempts (regression: it gave up after 20 successful batches)', async () => {
    let stored = 0;
    const b = new AuditBatcher({ record: async (events) => void (stored += events.length) }, { maxBatch: 2, maxDelayMs: 60_000 });
    for (let i = 0; i < 50; i++) b.add(ev(i));
    await b.drain({ timeoutMs: 200 });
    expect(stored).toBe(50);
    expect(b.pending).toBe(0);
  });

  // Regression: after each write the one or two events that arrived meanwhile were flushed at
  // once, so a steady stream became thousands of one-event transactions (or writer-thread round
  // trips) a second instead of a batch per maxDelayMs.
  it('lets events that arrive during a write wait for companions, unless a full batch is waiting', async () => {
    await withFakeTimers(async () => {
      const { calls, finish, b } = gatedBatcher({ maxBatch: 10, maxDelayMs: 5 });
      b.add(ev(1));
      await vi.advanceTimersByTimeAsync(5);
      expect(calls).toEqual([1]); // in flight
      b.add(ev(2));
      b.add(ev(3));
      finish();
      await vi.advanceTimersByTimeAsync(4);
      expect(calls).toEqual([1]); // the two wait for companions
      b.add(ev(4));
      await vi.advanceTimersByTimeAsync(1);
      expect(calls).toEqual([1, 3]);
      for (let i = 5; i < 25; i++) b.add(ev(i)); // two full batches queue up during this write
      finish();
      await vi.advanceTimersByTimeAsync(0);
      expect(calls).toEqual([1, 3, 10]); // a full batch goes at once
      finish();
      await vi.advanceTimersByTimeAsync(0);
      expect(calls).toEqual([1, 3, 10, 10]);
      finish();
      await vi.advanceTimersByTimeAsync(5);
      expect(calls).toEqual([1, 3, 10, 10]);
      expect(b.pending).toBe(0);
    });
  });

  // Regression: a steady few thousand events a second with a 5 ms delay made 25-event batches,
  // which cost the SQLite writer 1.5-2x the CPU per event of batches of 100 or more.
  it('starts a flush as soon as flushAt events wait, without waiting out the delay', async () => {
    await withFakeTimers(async () => {
      const { calls, finish, b } = gatedBatcher({ maxBatch: 10, maxDelayMs: 60_000, flushAt: 4 });
      for (let i = 0; i < 3; i++) b.add(ev(i));
      await vi.advanceTimersByTimeAsync(1000);
      expect(calls).toEqual([]); // three wait for companions
      b.add(ev(3));
      expect(calls).toEqual([4]); // the fourth starts the flush, no timer needed
      for (let i = 4; i < 9; i++) b.add(ev(i)); // five arrive during the write
      expect(calls).toEqual([4]);
      finish();
      await vi.advanceTimersByTimeAsync(0);
      expect(calls).toEqual([4, 5]); // enough waited: they go when the write ends
      finish();
      b.add(ev(9));
      await vi.advanceTimersByTimeAsync(59_999);
      expect(calls).toEqual([4, 5]);
      await vi.advanceTimersByTimeAsync(1);
      expect(calls).toEqual([4, 5, 1]); // a lone event waits maxDelayMs
      finish();
      await b.drain();
      expect(b.pending).toBe(0);
    });
  });

  it('keeps its backoff while the sink fails, however many events queue up', async () => {
    await withFakeTimers(async () => {
      let calls = 0;
      const failing = {
        record: async (): Promise<void> => {
          calls++;
          throw new Error('down');
        },
      };
      const c = new AuditBatcher(failing, { maxDelayMs: 0, flushAt: 2, onError: () => undefined });
      c.add(ev(0));
      c.add(ev(1)); // starts a flush, which fails
      await vi.advanceTimersByTimeAsync(0);
      expect(calls).toBe(1);
      for (let i = 2; i < 50; i++) c.add(ev(i)); // far past flushAt: no retry before the backoff
      await vi.advanceTimersByTimeAsync(99);
      expect(calls).toBe(1);
      await vi.advanceTimersByTimeAsync(1); // 50 ms * 2^1
      expect(calls).toBe(2);
      expect(c.pending).toBe(50);
    });
  });

  it('refuses options that would stall it', () => {
    const sink = { record: async () => undefined };
    expect(() => new AuditBatcher(sink, { flushAt: 0 })).toThrow('flushAt');
    expect(() => new AuditBatcher(sink, { maxBatch: 0 })).toThrow('maxBatch');
    expect(() => new AuditBatcher(sink, { maxDelayMs: Number.NaN })).toThrow('maxDelayMs');
    expect(() => new AuditBatcher(sink, { highWater: 0 })).toThrow('highWater');
  });
});

describe('AuditBatcher into the store when the database fails', () => {
  let store: StoreConnection;
  beforeEach(async () => {
    store = await openStore({ url: ':memory:' });
    await sql`create trigger block before insert on audit_events begin select raise(abort, 'disk on fire'); end`.execute(store.db);
  });
  afterEach(() => store.close());

  const unblock = () => sql`drop trigger block`.execute(store.db);

  it('keeps failed batches queued, reports the error, and commits them once the database recovers', async () => {
    const errors: unknown[] = [];
    const b = new AuditBatcher(storeSink(store), { maxBatch: 3, maxDelayMs: 1, onError: (e) => errors.push(e) });
    for (let i = 1; i <= 7; i++) b.add(ev(i));
    await expect(b.drain({ timeoutMs: 100 })).rejects.toThrow('7 audit events not stored');
    expect(b.pending).toBe(7);
    expect(String(errors[0])).toContain('disk on fire');
    await unblock();
    await b.drain();
    expect(b.pending).toBe(0);
    expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 7 });
    const actors = await store.db.selectFrom('audit_events').select('actor').orderBy('seq').execute();
    expect(actors.map((a) => a.actor)).toEqual(['u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7']);
  });

  it('retries in the background with backoff: no drain needed once the database is back', async () => {
    const errors: unknown[] = [];
    const b = new AuditBatcher(storeSink(store), { maxDelayMs: 0, onError: (e) => errors.push(e) });
    b.add(ev(1));
    b.add(ev(2));
    await expect.poll(() => errors.length).toBeGreaterThanOrEqual(2);
    await unblock();
    await expect.poll(() => b.pending, { timeout: 5000 }).toBe(0);
    expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 2 });
  });

  it('signals overload while the database is down, relief once it has caught up', async () => {
    const b = new AuditBatcher(storeSink(store), { maxBatch: 2, maxDelayMs: 0, highWater: 4 });
    for (let i = 1; i <= 5; i++) b.add(ev(i));
    expect(b.overloaded).toBe(true);
    await expect(b.drain({ timeoutMs: 0 })).rejects.toThrow('not stored');
    expect(b.overloaded).toBe(true);
    const relief = b.whenRelieved();
    await unblock();
    await relief;
    await b.drain();
    expect(b.overloaded).toBe(false);
    expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 5 });
  });
});

describe('storeSink with events from the network edge', () => {
  // Regression: a gateway event with an empty (or over-long) claimed user name made the whole
  // batch fail validation, retried forever, and blocked every audit event queued after it.
  it('keeps a malformed event instead of letting it block the batch', async () => {
    const store = await openStore({ url: ':memory:' });
    try {
      const sink = storeSink(store);
      await sink.record([
        { type: 'gateway.refused', actor: '', data: { reason: 'empty user' }, at: 1 },
        { type: 'gateway.refused', actor: 'x'.repeat(500), data: {}, at: 2 },
        { type: '', actor: 'alice', data: {}, at: 3 },
        { type: 'gateway.query', actor: 'alice', data: { sql: 'select 1' }, at: 4 },
      ]);
      const events = await queryEvents(store.db, { limit: 10 });
      expect(events.map((e) => e.type)).toEqual(['gateway.refused', 'gateway.refused', 'audit.invalid_event', 'gateway.query']);
      expect(events[0]?.actor).toBe('(none)');
      expect(events[1]?.actor.length).toBe(200);
      expect(events[1]?.data.claimedActor).toBe('x'.repeat(500));
      expect((await verifyChain(store.db)).ok).toBe(true);
    } finally {
      await store.close();
    }
  });
});
