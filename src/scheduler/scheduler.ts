import { expirePending } from '../access/requests.js';
import { activateGrant, beginEnd, revokeLeased } from '../access/grant-lifecycle.js';
import type { AccessDeps } from '../access/context.js';
import { sql } from 'kysely';
import { claimDueGrants, nextGrantDue, type GrantRow } from '../store/grants.js';
import { duePendingRequests, nextPendingDue } from '../store/requests.js';

export interface SchedulerOptions {
  /** Longest sleep between looks at the store (other instances may add work). Default 1000 ms. */
  readonly pollMs?: number;
  /** Grants claimed per round. */
  readonly batch?: number;
  /** Activations run in parallel up to this many. */
  readonly concurrency?: number;
  readonly onError?: (err: unknown) => void;
}

export interface TickResult {
  activated: number;
  ended: number;
  retried: number;
  pendingExpired: number;
}

/**
 * Due work lives in the store (grants.due_at, requests.pending_expires_at); the timer is only a
 * wake-up. Each round claims due grants with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL), so
 * several instances sharing a store never act twice on one grant, and a crashed holder's work is
 * taken over when its lease runs out.
 */
export class Scheduler {
  readonly #deps: AccessDeps;
  readonly #pollMs: number;
  readonly #batch: number;
  readonly #concurrency: number;
  readonly #onError: (err: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  #wakeAt = Infinity;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = true;

  constructor(deps: AccessDeps, opts: SchedulerOptions = {}) {
    this.#deps = deps;
    this.#pollMs = opts.pollMs ?? 1000;
    this.#batch = opts.batch ?? 500;
    this.#concurrency = opts.concurrency ?? 8;
    this.#onError = opts.onError ?? ((err) => process.stderr.write(`hallpass scheduler: ${String(err)}\n`));
  }

  #now(): number {
    return this.#deps.clock.now().getTime();
  }

  /** Releases leases this instance held before a restart, then starts ticking. */
  async start(opts: { timers?: boolean } = {}): Promise<void> {
    await this.#deps.store.db.updateTable('grants').set({ lease_owner: null, lease_until: null })
      .where('lease_owner', '=', this.#deps.instanceId).execute();
    if (opts.timers === false) return; // driven by tick() alone (tests with a manual clock)
    this.#stopped = false;
    this.wake(0);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** Ask for a round at (or soon after) `at` epoch ms. */
  wake(at: number): void {
    if (this.#stopped) return;
    if (this.#running) {
      if (at <= this.#now() + 5) this.#again = true;
      else if (at < this.#wakeAt) this.#arm(at);
      return;
    }
    if (at < this.#wakeAt) this.#arm(at);
  }

  #arm(at: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#wakeAt = at;
    const delay = Math.max(0, Math.min(at - this.#now(), this.#pollMs));
    this.#timer = setTimeout(() => this.#fire(), delay);
    this.#timer.unref?.();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#wakeAt = Infinity;
    // One round at a time per instance: a wake-up during a round becomes another round after it.
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        try {
          const r = await this.tick();
          if (r.activated + r.ended + r.retried >= this.#batch) this.#again = true;
        } catch (err) {
          this.#onError(err);
        }
      } while (this.#again && !this.#stopped);
      await this.#armNext();
    })().finally(() => {
      this.#running = undefined;
    });
  }

  async #armNext(): Promise<void> {
    if (this.#stopped) return;
    let next = this.#now() + this.#pollMs;
    try {
      const [g, p] = await Promise.all([nextGrantDue(this.#deps.store.db), nextPendingDue(this.#deps.store.db)]);
      next = Math.min(next, g ?? Infinity, p ?? Infinity);
    } catch (err) {
      this.#onError(err);
    }
    if (!this.#stopped) this.#arm(next);
  }

  /** One round: claim what is due and do it. Public so tests can drive it with a manual clock. */
  async tick(): Promise<TickResult> {
    const deps = this.#deps;
    const now = deps.clock.now().getTime();
    const claimed = await deps.store.db.transaction().execute((tx) =>
      claimDueGrants(tx, deps.store.dialect, { now, owner: deps.instanceId, leaseMs: deps.leaseMs, limit: this.#batch }));
    const toActivate: GrantRow[] = [];
    const toExpire: GrantRow[] = [];
    const toRetry: GrantRow[] = [];
    for (const g of claimed) {
      if (g.status === 'scheduled' || g.status === 'activating') toActivate.push(g);
      else if (g.status === 'active') toExpire.push(g);
      else if (g.status === 'revoking' || g.status === 'revoke_failed') toRetry.push(g);
      else await this.#release(g); // final states carry no due work
    }
    // Expiries first: taking access away on time matters more than handing it out.
    const ending = await beginEnd(deps, toExpire, 'expired', 'system');
    const endingIds = new Set(ending.map((g) => g.id));
    for (const g of toExpire) if (!endingIds.has(g.id)) await this.#release(g); // extended meanwhile
    await revokeLeased(deps, [...ending.map((g) => g.id), ...toRetry.map((g) => g.id)]);
    await runLimited(toActivate, this.#concurrency, (g) => activateGrant(deps, g.id));
    const pending = await duePendingRequests(deps.store.db, now, this.#batch);
    const pendingExpired = await expirePending(deps, pending);
    return { activated: toActivate.length, ended: ending.length, retried: toRetry.length, pendingExpired };
  }

  /**
   * Gives back a claimed grant this round did nothing with. Its due work is what its status is
   * now, not what it was when claimed: an active grant is due at its end, a final one never, and
   * any other keeps its due time (a revocation that landed during this round moved it to revoking,
   * due now; clearing that left it revoking for good, its role able to log in: review 2026-12-02).
   */
  async #release(g: GrantRow): Promise<void> {
    const now = this.#deps.clock.now().getTime();
    await this.#deps.store.db.updateTable('grants')
      .set({
        lease_owner: null, lease_until: null,
        due_at: sql<number | null>`case when status = 'active' then expires_at when status in ('expired', 'revoked') then null else coalesce(due_at, ${now}) end`,
      })
      .where('id', '=', g.id).where('lease_owner', '=', this.#deps.instanceId).execute();
    this.wake(now);
  }
}

async function runLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  const worker = async () => {
    while (i < items.length) {
      const item = items[i++]!;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
