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
}

const CHANNEL = 'hallpass_grant_events';

/**
 * Several instances sharing a PostgreSQL store: every grant event is also sent with NOTIFY and
 * received by each instance's LISTEN connection, so a revocation on one instance cuts gateway
 * sessions on all of them at once (pushed, not polled). Local listeners are told immediately;
 * the echo of our own NOTIFY is recognised by its origin and dropped. If the LISTEN connection
 * drops it reconnects; each gateway session also carries its own expiry timer as a backstop.
 */
export class PgGrantEvents implements GrantEventBus {
  readonly #local = new LocalGrantEvents();
  readonly #url: string;
  readonly #origin: string;
  #pool: pg.Pool;
  #listener: pg.Client | undefined;
  #closed = false;

  constructor(url: string, origin: string) {
    this.#url = url;
    this.#origin = origin;
    this.#pool = new pg.Pool({ connectionString: url, max: 2 });
    this.#pool.on('error', () => {});
  }

  async start(): Promise<void> {
    await this.#connectListener();
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
    client.on('error', () => {
      this.#listener = undefined;
      setTimeout(() => void this.#connectListener().catch(() => undefined), 500).unref();
    });
    await client.connect();
    await client.query(`listen ${CHANNEL}`);
    this.#listener = client;
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
    await this.#listener?.end().catch(() => undefined);
    await this.#pool.end().catch(() => undefined);
  }
}
