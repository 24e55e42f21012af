/**
 * Failed-login throttling per user name and per client address (in memory, per instance).
 * After `freeAttempts` failures within `windowMs`, each further attempt must wait, doubling up
 * to `maxDelayMs`. A success clears the user's (not the address's) record.
 */
export class LoginLimiter {
  readonly #fails = new Map<string, { count: number; first: number; last: number }>();
  constructor(
    readonly freeAttempts = 5,
    readonly windowMs = 15 * 60_000,
    readonly maxDelayMs = 15 * 60_000,
  ) {}

  /** Milliseconds the caller must still wait, or 0. */
  check(user: string, address: string, now: number): number {
    return Math.max(this.#delay(`u:${user}`, now), this.#delay(`a:${address}`, now));
  }

  fail(user: string, address: string, now: number): void {
    for (const key of [`u:${user}`, `a:${address}`]) {
      const e = this.#fails.get(key);
      if (!e || now - e.first > this.windowMs) this.#fails.set(key, { count: 1, first: now, last: now });
      else this.#fails.set(key, { count: e.count + 1, first: e.first, last: now });
    }
    if (this.#fails.size > 100_000) this.#prune(now);
  }

  succeed(user: string, _address: string): void {
    this.#fails.delete(`u:${user}`);
  }

  #delay(key: string, now: number): number {
    const e = this.#fails.get(key);
    if (!e || now - e.first > this.windowMs || e.count < this.freeAttempts) return 0;
    const wait = Math.min(this.maxDelayMs, 1000 * 2 ** (e.count - this.freeAttempts));
    return Math.max(0, e.last + wait - now);
  }

  #prune(now: number): void {
    for (const [k, e] of this.#fails) if (now - e.first > this.windowMs) this.#fails.delete(k);
  }
}
