import { isIP } from 'node:net';

/**
 * Failed-attempt throttling (in memory, per instance): after `free` failures of one key within
 * `windowMs`, each further attempt waits, doubling from 1 s up to `maxDelayMs`.
 *
 * Attempts in flight count as failures until they end: a check that runs before a slow password
 * hash and a failure counted after it let 60 guesses sent at once all through (review
 * 2026-12-02). Each attempt is admitted with `begin`, which reserves it, and settled with its
 * `done(ok)`.
 */
export class Throttle {
  readonly #fails = new Map<string, { count: number; first: number; last: number }>();
  readonly #inFlight = new Map<string, number>();
  constructor(readonly free: number, readonly windowMs = 15 * 60_000, readonly maxDelayMs = 15 * 60_000) {}

  /** Milliseconds the key must still wait, or 0. */
  wait(key: string, now: number): number {
    const e = this.#fails.get(key);
    const failed = !e || now - e.first > this.windowMs ? 0 : e.count;
    const running = this.#inFlight.get(key) ?? 0;
    if (failed + running < this.free) return 0;
    // Over the budget only with attempts still running: come back once they are settled.
    if (failed < this.free || e === undefined) return 1000;
    const backoff = Math.max(0, e.last + Math.min(this.maxDelayMs, 1000 * 2 ** (failed - this.free)) - now);
    // Past a back-off, one attempt at a time: otherwise a burst at its end would all be let in.
    return backoff > 0 ? backoff : running > 0 ? 1000 : 0;
  }

  begin(key: string): void {
    this.#inFlight.set(key, (this.#inFlight.get(key) ?? 0) + 1);
  }

  end(key: string): void {
    const n = (this.#inFlight.get(key) ?? 1) - 1;
    if (n > 0) this.#inFlight.set(key, n);
    else this.#inFlight.delete(key);
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

/** An admitted attempt: settle it exactly once (true: it passed; false: it failed; undefined: neither, e.g. an internal error). */
export interface Attempt {
  done(ok: boolean | undefined): void;
}

/**
 * One budget per user name and one per client address. A success clears the user's failures
 * (not the address's: one address guessing many names stays slowed).
 */
export class UserAddressThrottle {
  readonly #user: Throttle;
  readonly #address: Throttle;
  constructor(userFree: number, addressFree: number) {
    this.#user = new Throttle(userFree);
    this.#address = new Throttle(addressFree);
  }

  /** Milliseconds to wait (the attempt is refused), or an admitted attempt. */
  begin(user: string, clientAddress: string, now: number): number | Attempt {
    const address = addressKey(clientAddress);
    const wait = Math.max(this.#user.wait(user, now), this.#address.wait(address, now));
    if (wait > 0) return wait;
    this.#user.begin(user);
    this.#address.begin(address);
    let settled = false;
    return {
      done: (ok) => {
        if (settled) return;
        settled = true;
        if (ok === false) {
          this.#user.fail(user, now);
          this.#address.fail(address, now);
        }
        if (ok === true) this.#user.clear(user);
        this.#user.end(user);
        this.#address.end(address);
      },
    };
  }
}

/**
 * The budget an address counts against: an IPv4 address (also written IPv4-mapped), or an IPv6
 * address's /64, the block one site or host is usually given (one budget per address there would
 * give a single client 2^64 of them).
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1] as string;
  if (isIP(address) !== 6) return address;
  const [head = '', tail = ''] = address.toLowerCase().split('%')[0]!.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/** MFA codes: 5 free failures per user, 20 per client address (NAT'd offices share one). */
export const mfaThrottle = (): UserAddressThrottle => new UserAddressThrottle(5, 20);
/** Password logins: 5 free failures per user name, 20 per client address (as for MFA codes). */
export const loginThrottle = (): UserAddressThrottle => new UserAddressThrottle(5, 20);

/**
 * Anonymous sign-in failures (a workload token that does not verify, an SSO callback that fails)
 * per client address: each is audited until 100 in 15 minutes, then the address is refused with
 * `rate_limited` and further attempts are only counted, the count going with the next audited
 * failure (`suppressed`). Anyone could otherwise append to the log as fast as they could send
 * junk tokens (review 2026-12-02: 500 events in 1.3 s).
 */
export class AnonymousFailures {
  readonly #throttle: UserAddressThrottle;
  constructor(perAddress = 100) {
    this.#throttle = new UserAddressThrottle(Infinity, perAddress);
  }
  readonly #suppressed = new Map<string, number>();

  /** Milliseconds to wait (the caller refuses without auditing), or the attempt to settle. */
  begin(clientAddress: string, now: number): number | Attempt {
    const a = this.#throttle.begin('', clientAddress, now);
    if (typeof a === 'number') {
      const key = addressKey(clientAddress);
      this.#suppressed.set(key, (this.#suppressed.get(key) ?? 0) + 1);
      if (this.#suppressed.size > 100_000) this.#suppressed.clear();
    }
    return a;
  }

  /** Attempts refused unaudited from this address since its last audited failure (and resets it). */
  takeSuppressed(clientAddress: string): number {
    const key = addressKey(clientAddress);
    const n = this.#suppressed.get(key) ?? 0;
    this.#suppressed.delete(key);
    return n;
  }
}
