import pg from 'pg';
import type { GrantEvent, GrantEventBus } from '../access/context.js';

/** In-process delivery: the embedded (single instance) case. */
export class LocalGrantEvents implements GrantEventBus {
  readonly #subs = new Set<(ev: GrantEvent) => void>();

  async publish(ev: GrantEvent): Promise<void> {
    this.deliver(ev);
  }

  deliver(ev: GrantEvent): void {
    for (const fn of this.#subs) {
      try {
        fn(ev);
      } catch {
        /* a listener's fault must not stop the others */
      }
    }
  }

  subscribe(fn: (ev: GrantEvent) => void): () => void {
    this.#subs.add(fn);
    return () => this.#subs.delete(fn);
  }

  /** In one process no event can be missed: nothing to catch up on. */
  onReconnect(): () => void {
    return () => undefined;
  }
}

const CHANNEL = 'hallpass_grant_events';
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5000;

/**
 * Several instances sharing a PostgreSQL store: every grant event is also sent with NOTIFY and
 * received by each instance's LISTEN connection, so a revocation on one instance cuts gateway
 * sessions on all of them at once (pushed, not polled). Local listeners are told immediately;
 * the echo of our own NOTIFY is recognised by its origin and dropped.
 *
 * If the LISTEN connection drops, it is reconnected with backoff (0.5 s doubling to 5 s) until
 * it is back; events sent meanwhile are lost to it, so every `onReconnect` callback runs after
 * each reconnect to catch up from the store (the gateway re-reads its sessions' grants). Before,
 * one failed reconnect attempt ended the retries: after a store outage of more than half a
 * second an instance never heard another revocation or extension (review).
 */
export class PgGrantEvents implements GrantEventBus {
  readonly #local = new LocalGrantEvents();
  readonly #url: string;
  readonly #origin: string;
  readonly #onReconnect = new Set<() => void>();
  #pool: pg.Pool;
  #listener: pg.Client | undefined;
  #retry: NodeJS.Timeout | undefined;
  #retryMs = RETRY_MIN_MS;
  #closed = false;

  constructor(url: string, origin: string) {
    this.#url = url;
    this.#origin = origin;
    this.#pool = new pg.Pool({ connectionString: url, max: 2 });
    this.#pool.on('error', () => {});
    this.#pool.on('connect', (c) => c.on('error', () => {}));
  }

  async start(): Promise<void> {
    await this.#connectListener();
  }

  /** Whether the LISTEN connection is up (for health checks and tests). */
  get listening(): boolean {
    return this.#listener !== undefined;
  }

  onReconnect(fn: () => void): () => void {
    this.#onReconnect.add(fn);
    return () => this.#onReconnect.delete(fn);
  }

  async #connectListener(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client({ connectionString: this.#url });
    client.on('notification', (msg) => {
      if (msg.channel !== CHANNEL || !msg.payload) return;
      try {
        const { origin, ev } = JSON.parse(msg.payload) as { origin: string; ev: GrantEvent };
        if (origin !== this.#origin) this.#local.deliver(ev);
      } catch {
        /* not ours */
      }
    });
    const lost = () => {
      if (this.#listener !== client) return;
      this.#listener = undefined;
      void client.end().catch(() => undefined);
      this.#scheduleReconnect();
    };
    client.on('error', lost);
    client.on('end', lost);
    try {
      await client.connect();
      await client.query(`listen ${CHANNEL}`);
    } catch (e) {
      void client.end().catch(() => undefined);
      throw e;
    }
    if (this.#closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#listener = client;
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retry) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#connectListener().then(() => {
        this.#retryMs = RETRY_MIN_MS;
        for (const fn of this.#onReconnect) {
          try {
            fn();
          } catch {
            /* one callback's fault must not stop the others */
          }
        }
      }, () => {
        this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
        this.#scheduleReconnect();
      });
    }, this.#retryMs);
    this.#retry.unref();
  }

  async publish(ev: GrantEvent): Promise<void> {
    this.#local.deliver(ev);
    try {
      await this.#pool.query('select pg_notify($1, $2)', [CHANNEL, JSON.stringify({ origin: this.#origin, ev })]);
    } catch {
      /* other instances still cut sessions at the grant's own end time and see the store */
    }
  }

  subscribe(fn: (ev: GrantEvent) => void): () => void {
    return this.#local.subscribe(fn);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => undefined);
    await this.#pool.end().catch(() => undefined);
  }
}
