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

  /** Milliseconds the key must still wait (0: go on); `busy` when only attempts still running stand in the way. */
  refusal(key: string, now: number): { ms: number; busy: boolean } {
    const e = this.#fails.get(key);
    const failed = !e || now - e.first > this.windowMs ? 0 : e.count;
    const running = this.#inFlight.get(key) ?? 0;
    if (failed + running < this.free) return { ms: 0, busy: false };
    // Over the budget only with attempts still running: come back once they are settled.
    if (failed < this.free || e === undefined) return { ms: 1000, busy: true };
    const backoff = Math.max(0, e.last + Math.min(this.maxDelayMs, 1000 * 2 ** (failed - this.free)) - now);
    // Past a back-off, one attempt at a time: otherwise a burst at its end would all be let in.
    return backoff > 0 ? { ms: backoff, busy: false } : running > 0 ? { ms: 1000, busy: true } : { ms: 0, busy: false };
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

/** A refused attempt: wait `ms`; `busy` when attempts still running, not failures, are the reason. */
export interface Refusal {
  readonly refused: true;
  readonly ms: number;
  readonly busy: boolean;
}

/** Why an attempt was refused, for the caller's error message. */
export function refusalMessage(r: Refusal, what: string): string {
  const wait = Math.ceil(r.ms / 1000);
  return r.busy ? `too many ${what} attempts at once; try again in ${wait}s` : `too many failed ${what} attempts; try again in ${wait}s`;
}

/** An admitted attempt: settle it exactly once (true: it passed; false: it failed; undefined: neither, e.g. an internal error). */
export interface Attempt {
  readonly refused?: undefined;
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

  /**
   * The refusal (wait `ms`; `busy` when only attempts still running are the reason, not failures),
   * or an admitted attempt.
   */
  begin(user: string, clientAddress: string, now: number): Refusal | Attempt {
    const address = addressKey(clientAddress);
    const u = this.#user.refusal(user, now);
    const a = this.#address.refusal(address, now);
    if (u.ms > 0 || a.ms > 0) return { refused: true, ms: Math.max(u.ms, a.ms), busy: (u.ms === 0 || u.busy) && (a.ms === 0 || a.busy) };
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
 * The budget an address counts against: an IPv4 address (also when written IPv4-mapped or
 * IPv4-compatible, dotted or in hex), or an IPv6 address's /64, the block one site or host is
 * usually given (one budget per address there would give a single client 2^64 of them). A port
 * a proxy appended (`203.0.113.9:40001`, `[2001:db8::1]:443`) is dropped: otherwise each
 * connection had a budget of its own (second review). Anything else is its own key, as written.
 */
export function addressKey(address: string): string {
  let a = address.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(a);
  if (bracketed) a = bracketed[1] as string;
  else if (/^\d{1,3}(?:\.\d{1,3}){3}:\d+$/.test(a)) a = a.slice(0, a.lastIndexOf(':'));
  a = a.split('%')[0] as string; // an IPv6 zone
  if (isIP(a) === 4) return a;
  if (isIP(a) !== 6) return address;
  const groups = ipv6Groups(a);
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated) are IPv4 clients; not ::1, ::.
  if (groups.slice(0, 5).every((g) => g === 0) && (groups[5] === 0xffff || (groups[5] === 0 && (groups[6] as number) !== 0))) {
    const hi = groups[6] as number;
    const lo = groups[7] as number;
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (`isIP(a) === 6`), a trailing dotted quad included. */
function ipv6Groups(a: string): number[] {
  let text = a.toLowerCase();
  const quad = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (quad) {
    const [b0, b1, b2, b3] = quad.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, quad.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const middle = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...middle, ...right].map((g) => parseInt(g, 16));
}

/** MFA codes: 5 free failures per user, 20 per client address (NAT'd offices share one). */
export const mfaThrottle = (): UserAddressThrottle => new UserAddressThrottle(5, 20);
/** Password logins: 5 free failures per user name, 20 per client address (as for MFA codes). */
export const loginThrottle = (): UserAddressThrottle => new UserAddressThrottle(5, 20);

/**
 * Anonymous sign-in failures (a workload token that does not verify, an SSO callback that fails)
 * per client address: each is audited until 100 in 15 minutes; past that only counted, the count
 * going with the next audited failure (`suppressed`). Anyone could otherwise append to the log as
 * fast as they could send junk tokens (review 2026-12-02: 500 events in 1.3 s). Nothing is
 * refused for it: a token that verifies always works (refusing the address let junk lock out a
 * whole CI fleet behind one NAT: second review).
 */
export class AnonymousFailures {
  readonly #seen = new Map<string, { count: number; first: number; suppressed: number }>();
  constructor(readonly perAddress = 100, readonly windowMs = 15 * 60_000) {}

  /** Counts a failure: whether to audit it, and how many went unaudited before it. */
  failed(clientAddress: string, now: number): { audit: boolean; suppressed: number } {
    const key = addressKey(clientAddress);
    let e = this.#seen.get(key);
    if (!e || now - e.first > this.windowMs) {
      e = { count: 0, first: now, suppressed: e?.suppressed ?? 0 };
      this.#seen.set(key, e);
      if (this.#seen.size > 100_000) for (const [k, v] of this.#seen) if (now - v.first > this.windowMs && v.suppressed === 0) this.#seen.delete(k);
    }
    e.count++;
    if (e.count > this.perAddress) {
      e.suppressed++;
      return { audit: false, suppressed: 0 };
    }
    const suppressed = e.suppressed;
    e.suppressed = 0;
    return { audit: true, suppressed };
  }
}
