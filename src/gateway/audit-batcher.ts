import type { GatewayAuditEvent, GatewayAuditSink } from './authority.js';

export interface AuditBatcherOptions {
  /** Largest batch handed to the sink at once. */
  readonly maxBatch?: number;
  /** How long an event may wait for companions before a flush starts. */
  readonly maxDelayMs?: number;
  /** Called when the sink fails (the batch is kept and retried). */
  readonly onError?: (err: unknown) => void;
}

/**
 * Queues audit events in memory (synchronous, so the relay never waits on a write) and hands
 * them to the sink in batches, in order, one batch in flight at a time. A failed batch is
 * retried with backoff and never dropped; `drain()` resolves once everything queued is stored.
 */
export class AuditBatcher {
  #queue: GatewayAuditEvent[] = [];
  #flushing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  readonly #maxBatch: number;
  readonly #maxDelayMs: number;

  constructor(
    readonly sink: GatewayAuditSink,
    readonly options: AuditBatcherOptions = {},
  ) {
    this.#maxBatch = options.maxBatch ?? 1000;
    this.#maxDelayMs = options.maxDelayMs ?? 5;
  }

  /** Events queued and not yet stored. */
  get pending(): number {
    return this.#queue.length;
  }

  add(event: GatewayAuditEvent): void {
    this.#queue.push(event);
    if (this.#flushing || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#startFlush();
    }, this.#maxDelayMs);
  }

  /** Stores everything queued so far (retrying the sink until it succeeds or `attempts` run out). */
  async drain(attempts = 20): Promise<void> {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    for (let i = 0; i < attempts && (this.#queue.length > 0 || this.#flushing); i++) {
      if (!this.#flushing) this.#startFlush();
      await this.#flushing;
    }
    if (this.#queue.length > 0) throw new Error(`audit sink failed: ${this.#queue.length} gateway audit events not stored`);
  }

  #startFlush(): void {
    if (this.#flushing || this.#queue.length === 0) return;
    this.#flushing = this.#flush().finally(() => {
      this.#flushing = undefined;
      if (this.#queue.length > 0 && !this.#timer) {
        const delay = this.#failures === 0 ? 0 : Math.min(5000, 50 * 2 ** this.#failures);
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
    } catch (err) {
      this.#failures++;
      this.options.onError?.(err);
    }
  }
}
