import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type StoreConnection } from '../store/db.js';
import { ev } from './audit.conformance.js';
import { verifyChain } from './verify.js';
import { AuditWriter } from './writer.js';

describe('AuditWriter when the database fails', () => {
  let store: StoreConnection;
  beforeEach(async () => {
    store = await openStore({ url: ':memory:' });
    await sql`create trigger block before insert on audit_events begin select raise(abort, 'disk on fire'); end`.execute(store.db);
  });
  afterEach(() => store.close());

  const unblock = () => sql`drop trigger block`.execute(store.db);

  it('keeps failed batches queued, reports the error, and commits them once the database recovers', async () => {
    const errors: unknown[] = [];
    const writer = new AuditWriter({ db: store.db, dialect: 'sqlite', flushIntervalMs: 1, maxBatch: 3, onError: (e) => errors.push(e) });
    for (let i = 1; i <= 7; i++) await writer.record(ev(i));
    await expect(writer.flush()).rejects.toThrow('disk on fire');
    expect(writer.pending).toBe(7);
    expect(errors.length).toBeGreaterThan(0);
    await unblock();
    await settle(writer);
    await writer.close();
    expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 7 });
    const actors = await store.db.selectFrom('audit_events').select('actor').orderBy('seq').execute();
    expect(actors.map((a) => a.actor)).toEqual(['u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7']);
  });

  it('applies back-pressure: record waits while the queue is full', async () => {
    const writer = new AuditWriter({ db: store.db, dialect: 'sqlite', flushIntervalMs: 1, maxBatch: 2, maxQueue: 4 });
    for (let i = 1; i <= 4; i++) await writer.record(ev(i));
    let accepted = false;
    const fifth = writer.record(ev(5)).then(() => {
      accepted = true;
    });
    await expect(writer.flush()).rejects.toThrow('disk on fire');
    expect(accepted).toBe(false);
    expect(writer.pending).toBe(4);
    await unblock();
    await settle(writer);
    await fifth;
    expect(accepted).toBe(true);
    await writer.close();
    expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 5 });
  });

  it('close() also commits the record() calls that were waiting for room', async () => {
    const writer = new AuditWriter({ db: store.db, dialect: 'sqlite', flushIntervalMs: 1, maxBatch: 2, maxQueue: 2 });
    for (let i = 1; i <= 2; i++) await writer.record(ev(i));
    const waiting = [3, 4, 5].map((i) => writer.record(ev(i)));
    await expect(writer.flush()).rejects.toThrow('disk on fire');
    await unblock();
    let closed = false;
    for (let attempt = 0; !closed && attempt < 20; attempt++) {
      closed = await writer.close().then(
        () => true,
        () => false,
      );
    }
    await Promise.all(waiting);
    expect(closed).toBe(true);
    expect(writer.pending).toBe(0);
    expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 5 });
    await expect(writer.record(ev(6))).rejects.toThrow('closed');
  });

  it('refuses options that would stall it', () => {
    expect(() => new AuditWriter({ db: store.db, dialect: 'sqlite', maxBatch: 0 })).toThrow('maxBatch');
    expect(() => new AuditWriter({ db: store.db, dialect: 'sqlite', flushIntervalMs: Number.NaN })).toThrow('flushIntervalMs');
  });

  it('refuses an invalid event when it is recorded, not at flush time', async () => {
    const writer = new AuditWriter({ db: store.db, dialect: 'sqlite' });
    await expect(writer.record({ type: '', actor: 'a', at: 0 })).rejects.toThrow('"type"');
    await expect(writer.record({ type: 't', actor: 'a', at: Number.NaN })).rejects.toThrow('"at"');
    expect(writer.pending).toBe(0);
    await writer.close();
  });
});

/** flush() until a flush succeeds: a background retry that began before the fix may still fail. */
async function settle(writer: AuditWriter): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await writer.flush();
      return;
    } catch (err) {
      if (attempt > 20) throw err;
    }
  }
}
