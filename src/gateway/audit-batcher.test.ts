import { describe, expect, it } from 'vitest';
import { AuditBatcher } from './audit-batcher.js';
import type { GatewayAuditEvent } from './authority.js';

const ev = (i: number): GatewayAuditEvent => ({ type: 'gateway.query', actor: 'alice', data: { i }, at: new Date(0) });

describe('AuditBatcher', () => {
  it('stores events in order, in batches no larger than maxBatch', async () => {
    const batches: number[][] = [];
    const b = new AuditBatcher({ record: async (events) => void batches.push(events.map((e) => e.data.i as number)) }, { maxBatch: 3, maxDelayMs: 1 });
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
          stored.push(...events.map((e) => e.data.i as number));
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
    await expect(b.drain(3)).rejects.toThrow(/1 gateway audit events not stored/);
    expect(b.pending).toBe(1);
  });
});
