/**
 * Failed-attempt throttling (in memory, per instance): after `free` failures of one key within
 * `windowMs`, each further attempt waits, doubling from 1 s up to `maxDelayMs`.
 */
export class Throttle {
  readonly #fails = new Map<string, { count: number; first: number; last: number }>();
  constructor(readonly free: number, readonly windowMs = 15 * 60_000, readonly maxDelayMs = 15 * 60_000) {}

  /** Milliseconds the key must still wait, or 0. */
  wait(key: string, now: number): number {
    const e = this.#fails.get(key);
    if (!e || now - e.first > this.windowMs || e.count < this.free) return 0;
    return Math.max(0, e.last + Math.min(this.maxDelayMs, 1000 * 2 ** (e.count - this.free)) - now);
  }

  fail(key: string, now: number): void {
    const e = this.#fails.get(key);
    this.#fails.set(key, !e || now - e.first > this.windowMs ? { count: 1, first: now, last: now } : { count: e.count + 1, first: e.first, last: now });
    if (this.#fails.size > 100_000) for (const [k, v] of this.#fails) if (now - v.first > this.windowMs) this.#fails.delete(k);
  }

  clear(key: string): void {
    this.#fails.delete(key);
  }
}

/** MFA codes: 5 free failures per user, 20 per client address (NAT'd offices share one). */
export class MfaThrottle {
  readonly #user = new Throttle(5);
  readonly #address = new Throttle(20);

  wait(user: string, address: string, now: number): number {
    return Math.max(this.#user.wait(user, now), this.#address.wait(address, now));
  }

  fail(user: string, address: string, now: number): void {
    this.#user.fail(user, now);
    this.#address.fail(address, now);
  }

  succeed(user: string): void {
    this.#user.clear(user);
  }
}
