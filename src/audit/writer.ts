import type { Kysely } from 'kysely';
import type { Dialect } from '../store/db.js';
import type { DB } from '../store/schema.js';
import { appendPrepared, prepareEvent, type PreparedEvent } from './append.js';
import type { AuditEventInput } from './types.js';

export interface AuditWriterOptions {
  readonly db: Kysely<DB>;
  readonly dialect: Dialect;
  /** Flush queued events at least this often (default 50 ms). */
  readonly flushIntervalMs?: number;
  /** Flush as soon as this many events are queued; also the most per transaction (default 1000). */
  readonly maxBatch?: number;
  /** Above this many queued events, record() waits for room (back-pressure; default 50 000). */
  readonly maxQueue?: number;
  /** Told about a failed background flush; the events stay queued and are retried. */
  readonly onError?: (err: unknown) => void;
}

interface Pending {
  readonly event: PreparedEvent;
  readonly committed?: () => void;
}

/**
 * Batches high-volume audit events that are not part of a state transaction (gateway queries):
 * each flush appends up to `maxBatch` events in ONE transaction.
 * - record() resolves once the event is queued, waiting for room when the queue is full;
 *   recordDurable() resolves once the event is committed.
 * - flush() resolves when everything queued before it is committed, and rejects if a batch fails
 *   (the failed events stay queued and are retried, never dropped).
 * - close() drains everything, then refuses new events.
 */
export class AuditWriter {
  readonly #db: Kysely<DB>;
  readonly #dialect: Dialect;
  readonly #interval: number;
  readonly #maxBatch: number;
  readonly #maxQueue: number;
  readonly #onError: (err: unknown) => void;
  #queue: Pending[] = [];
  /** Events taken from the queue by the batch being committed. */
  #inFlight = 0;
  #roomWaiters: Array<() => void> = [];
  /** record() calls waiting for room in the queue. */
  #waiting = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #closed = false;

  constructor(opts: AuditWriterOptions) {
    this.#db = opts.db;
    this.#dialect = opts.dialect;
    this.#interval = opts.flushIntervalMs ?? 50;
    this.#maxBatch = opts.maxBatch ?? 1000;
    this.#maxQueue = Math.max(opts.maxQueue ?? 50_000, this.#maxBatch);
    this.#onError = opts.onError ?? (() => undefined);
    for (const [name, v] of [['flushIntervalMs', this.#interval], ['maxBatch', this.#maxBatch], ['maxQueue', this.#maxQueue]] as const) {
      if (!Number.isSafeInteger(v) || v < (name === 'flushIntervalMs' ? 0 : 1)) throw new RangeError(`AuditWriter: ${name} must be a whole number >= ${name === 'flushIntervalMs' ? 0 : 1}`);
    }
  }

  /** Events not yet committed (queued or in the batch being committed). */
  get pending(): number {
    return this.#queue.length + this.#inFlight;
  }

  /** Queues an event; resolves when it is accepted (immediately unless the queue is full). */
  async record(event: AuditEventInput): Promise<void> {
    await this.#enqueue({ event: prepareEvent(event) });
  }

  /** Queues an event; resolves when it is committed to the chain (failed flushes are retried). */
  async recordDurable(event: AuditEventInput): Promise<void> {
    const prepared = prepareEvent(event);
    let committed: (() => void) | undefined;
    const done = new Promise<void>((resolve) => (committed = resolve));
    await this.#enqueue({ event: prepared, committed });
    await done;
  }

  /** Commits everything queued so far. */
  async flush(): Promise<void> {
    while (this.#queue.length > 0 || this.#running) {
      if (this.#running) {
        await this.#running;
        continue;
      }
      await this.#runBatch();
    }
  }

  /**
   * Refuses new record() calls, then commits everything: the queue and any record() still
   * waiting for room. Rejects (events kept) if the database fails; call close() again to retry.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#clearTimer();
    while (this.pending > 0 || this.#waiting > 0) {
      await this.flush();
      // Woken waiters enqueue on their next turn; let them before checking again.
      if (this.#waiting > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  async #enqueue(p: Pending): Promise<void> {
    if (this.#closed) throw new Error('AuditWriter is closed');
    // A record() that started before close() is still accepted and committed by close().
    while (this.pending >= this.#maxQueue) {
      this.#waiting += 1;
      try {
        await new Promise<void>((resolve) => this.#roomWaiters.push(resolve));
      } finally {
        this.#waiting -= 1;
      }
    }
    this.#queue.push(p);
    if (this.#queue.length >= this.#maxBatch) this.#kick();
    else if (!this.#closed) this.#timer ??= setTimeout(() => this.#kick(), this.#interval);
  }

  /** Starts a background flush; its failure goes to onError and a retry is scheduled. */
  #kick(): void {
    this.#clearTimer();
    if (this.#running) return;
    this.flush().catch((err: unknown) => {
      this.#onError(err);
      if (this.#queue.length > 0 && !this.#closed) this.#timer ??= setTimeout(() => this.#kick(), this.#interval);
    });
  }

  async #runBatch(): Promise<void> {
    const batch = this.#queue.splice(0, this.#maxBatch);
    this.#inFlight = batch.length;
    const run = this.#db
      .transaction()
      .execute((tx) => appendPrepared(tx, this.#dialect, batch.map((p) => p.event)))
      .then(
        () => {
          this.#inFlight = 0;
          for (const p of batch) p.committed?.();
          this.#wakeRoomWaiters();
        },
        (err: unknown) => {
          // Events were validated when recorded, so this is the database: keep them, retry later.
          this.#inFlight = 0;
          this.#queue.unshift(...batch);
          throw err;
        },
      );
    this.#running = run.finally(() => (this.#running = undefined));
    await this.#running;
  }

  #wakeRoomWaiters(): void {
    const waiters = this.#roomWaiters;
    this.#roomWaiters = [];
    for (const w of waiters) w();
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
