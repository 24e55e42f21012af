import type { AuditSink } from './sink.js';
import type { AuditEventInput } from './types.js';

export interface AuditBatcherOptions {
  /** Largest batch handed to the sink at once. Default 1000. */
  readonly maxBatch?: number;
  /** How long an event may wait for companions before a flush starts. Default 25 ms. */
  readonly maxDelayMs?: number;
  /**
   * Queued events that start a flush at once, without waiting out maxDelayMs. Default 128 (at
   * most maxBatch). Each batch costs the sink a fixed price (a transaction, its WAL pages, a
   * writer-thread round trip): on the SQLite store 25-event batches cost 1.5-2x as much CPU per
   * event as batches of 100 or more, so a busy stream waits for this many, and a quiet one for
   * maxDelayMs.
   */
  readonly flushAt?: number;
  /** Called when the sink fails (the batch is kept and retried). */
  readonly onError?: (err: unknown) => void;
  /**
   * Queue length at which the batcher reports itself overloaded: producers (gateway sessions)
   * then stop reading from their clients until it is back under half of this, so a slow audit
   * store slows clients down instead of growing memory or dropping events. Default 50 000.
   */
  readonly highWater?: number;
}

/**
 * Batches high-volume audit events that are not part of a state transaction (gateway queries).
 * Queues them in memory (synchronous, so the relay never waits on a write) and hands them to the
 * sink in batches, in order, one batch in flight at a time. A failed batch is retried with
 * backoff and never dropped; `drain()` resolves once everything queued is stored.
 * With storeSink, each batch is one transaction on the hash chain.
 */
export class AuditBatcher<E extends AuditEventInput = AuditEventInput> {
  #queue: E[] = [];
  #flushing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  readonly #maxBatch: number;
  readonly #maxDelayMs: number;
  readonly #flushAt: number;
  readonly #highWater: number;
  #relief: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(
    readonly sink: AuditSink<E>,
    readonly options: AuditBatcherOptions = {},
  ) {
    this.#maxBatch = options.maxBatch ?? 1000;
    this.#maxDelayMs = options.maxDelayMs ?? 25;
    this.#flushAt = Math.min(options.flushAt ?? 128, this.#maxBatch);
    this.#highWater = options.highWater ?? 50_000;
    for (const [name, v, min] of [['maxBatch', this.#maxBatch, 1], ['maxDelayMs', this.#maxDelayMs, 0], ['flushAt', this.#flushAt, 1], ['highWater', this.#highWater, 1]] as const) {
      if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`AuditBatcher: ${name} must be a whole number >= ${min}`);
    }
  }

  /** Too many events waiting for the sink: callers should stop producing (see whenRelieved). */
  get overloaded(): boolean {
    return this.#queue.length >= this.#highWater;
  }

  /** Resolves once the queue is back under half the high-water mark. */
  whenRelieved(): Promise<void> {
    if (this.#queue.length < this.#highWater / 2) return Promise.resolve();
    if (!this.#relief) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#relief = { promise, resolve };
    }
    return this.#relief.promise;
  }

  /** Events queued and not yet stored (including the batch in flight). */
  get pending(): number {
    return this.#queue.length;
  }

  add(event: E): void {
    this.#queue.push(event);
    if (this.#flushing) return; // what is queued meanwhile is looked at when that write ends
    if (this.#queue.length >= this.#flushAt && this.#failures === 0) {
      // Enough for a batch: no need to wait out the delay (a failing sink keeps its backoff).
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#startFlush();
      return;
    }
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#startFlush();
    }, this.#maxDelayMs);
  }

  /**
   * Stores everything queued so far, however many batches that takes. A failing sink is retried
   * with backoff (50 ms doubling, at most 2 s apart) until `timeoutMs` has passed without the
   * queue emptying; then it rejects, the events kept. (It once gave up after 20 immediate
   * retries, within milliseconds, so a store restarting during a shutdown lost the queue.)
   */
  async drain(opts: { readonly timeoutMs?: number } = {}): Promise<void> {
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    let failed = 0;
    while (this.#queue.length > 0 || this.#flushing) {
      if (!this.#flushing) this.#startFlush();
      const before = this.#failures;
      // A sink call that never returns must not hang shutdown past the deadline.
      const left = deadline - Date.now();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        (this.#flushing ?? Promise.resolve()).then(() => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(true), Math.max(0, left)))),
      ]);
      clearTimeout(timer);
      if (timedOut) break;
      // A success resets #failures to 0; only a rise means this flush failed.
      if (this.#failures <= before) {
        failed = 0;
        continue;
      }
      failed++;
      const wait = Math.min(2000, 50 * 2 ** (failed - 1), deadline - Date.now());
      if (wait <= 0) break;
      await new Promise((r) => setTimeout(r, wait));
      // A retry timer the failed flush armed would race this loop: it takes over from here.
      if (this.#timer) {
        clearTimeout(this.#timer);
        this.#timer = undefined;
      }
    }
    if (this.#queue.length > 0) throw new Error(`audit sink failed: ${this.#queue.length} audit events not stored`);
  }

  #startFlush(): void {
    if (this.#flushing || this.#queue.length === 0) return;
    this.#flushing = this.#flush().finally(() => {
      this.#flushing = undefined;
      if (this.#queue.length > 0 && !this.#timer) {
        // After a success, what arrived meanwhile waits for companions like any new event (flushAt
        // of them go at once): flushing the one or two events that came during each write would
        // make thousands of tiny transactions (or writer-thread round trips) a second.
        const delay = this.#failures > 0 ? Math.min(5000, 50 * 2 ** this.#failures) : this.#queue.length >= this.#flushAt ? 0 : this.#maxDelayMs;
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          this.#startFlush();
        }, delay);
      }
    });
  }

  async #flush(): Promise<void> {
    const batch = this.#queue.slice(0, this.#maxBatch);
    try {
      await this.sink.record(batch);
      this.#queue.splice(0, batch.length);
      this.#failures = 0;
      if (this.#relief && this.#queue.length < this.#highWater / 2) {
        this.#relief.resolve();
        this.#relief = undefined;
      }
    } catch (err) {
      this.#failures++;
      this.options.onError?.(err);
    }
  }
}
