import { isIPv6 } from 'node:net';
import type { Clock } from '../../domain/clock.js';
import type { GatewayAuditEvent } from '../authority.js';

export interface RefusalAuditOptions {
  /** Length of a counting window. Default 10 s. */
  readonly windowMs?: number;
  /** Refusals of one address audited one by one per window. Default 10. */
  readonly perAddress?: number;
  /** Refusals of all addresses together audited one by one per window. Default 200. */
  readonly total?: number;
  /**
   * Refusals of an authentic token (they name its grant: replayed, not its owner, wrong resource,
   * grant ended) audited one by one per grant and window, apart from the budgets above: a flood
   * without a token cannot use those up. Default 10.
   */
  readonly perGrant?: number;
}

/** Addresses a window's summary names, the most refused first; the rest are counted together. */
const SUMMARY_ADDRESSES = 50;
/** Addresses counted apart per window (memory bound); beyond, only the totals grow. */
const TRACKED_ADDRESSES = 10_000;
/** Claimed names and database names longer than this are cut in refusal records (a startup packet may carry 10 KB). */
export const MAX_CLAIMED = 256;

interface Tally {
  individual: number;
  suppressed: number;
  codes: Map<string, number>;
}

/**
 * The audit of refused connection attempts that never logged in (no TLS, a bad startup or token,
 * a malformed packet, too many logins from one address). Anyone who can reach the gateway can make
 * these without a token, so a flood of them must not flood the audit log (a review stored 6,650
 * rows a second, 1.5 GB a minute with long claimed names). Per window each address (an IPv6 /64
 * counts as one) has its first `perAddress` refusals audited one by one, and all addresses
 * together their first `total`; the others are counted, and the window ends with one
 * `gateway.refused_summary` event: how many, by code, by address. Nothing is dropped unrecorded.
 */
export class RefusalAudit {
  readonly #windowMs: number;
  readonly #perAddress: number;
  readonly #total: number;
  readonly #perGrant: number;
  #from = 0;
  #individual = 0;
  #suppressed = 0;
  #codes = new Map<string, number>();
  #byAddress = new Map<string, Tally>();
  #byGrant = new Map<string, Tally>();
  #untracked = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly add: (event: GatewayAuditEvent) => void,
    readonly clock: Clock,
    opts: RefusalAuditOptions = {},
  ) {
    this.#windowMs = opts.windowMs ?? 10_000;
    this.#perAddress = opts.perAddress ?? 10;
    this.#total = opts.total ?? 200;
    this.#perGrant = opts.perGrant ?? 10;
  }

  /** A refusal from `address`: audited as `event`, or counted for the window's summary. */
  refused(address: string, event: GatewayAuditEvent): void {
    const code = typeof event.data.code === 'string' ? event.data.code : 'unknown';
    const tally = this.#tally(address);
    const grant = event.grantId === undefined ? undefined : this.#grantTally(event.grantId);
    // An authentic token's refusal has its own budget, per grant: tokenless refusals from any
    // number of addresses cannot hide it (review 2026-12-02 burnt the budgets first, and a
    // replayed token's refusal was left as a count, without its grant or address).
    const individual = grant !== undefined
      ? grant.individual < this.#perGrant
      : this.#individual < this.#total && (tally === undefined || tally.individual < this.#perAddress);
    if (individual) {
      if (grant !== undefined) grant.individual++;
      else {
        this.#individual++;
        if (tally !== undefined) tally.individual++;
      }
      this.add(event);
      return;
    }
    if (grant !== undefined) countIn(grant, code);
    this.#suppress(tally, code);
  }

  /** A refusal from `address` that is only ever counted (a flood's own symptom: too many logins). */
  counted(address: string, code: string): void {
    this.#suppress(this.#tally(address), code);
  }

  /** Writes the current window's summary now (the gateway is stopping). */
  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#endWindow();
  }

  #suppress(tally: Tally | undefined, code: string): void {
    this.#suppressed++;
    this.#codes.set(code, (this.#codes.get(code) ?? 0) + 1);
    if (tally === undefined) {
      this.#untracked++;
      return;
    }
    countIn(tally, code);
  }

  /** The address's tally in the current window (a new window if the last one is over); undefined past the memory bound. */
  #tally(address: string): Tally | undefined {
    const now = this.clock.now().getTime();
    if (this.#from === 0 || now >= this.#from + this.#windowMs) {
      this.#endWindow();
      this.#from = now;
      // The last window's timer may not have fired yet (a busy event loop): it would end this one.
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#endWindow();
      }, this.#windowMs);
      this.#timer.unref();
    }
    return tallyIn(this.#byAddress, addressKey(address));
  }

  /** The grant's tally in the current window (#tally has started it); undefined past the memory bound. */
  #grantTally(grantId: string): Tally | undefined {
    return tallyIn(this.#byGrant, grantId);
  }

  #endWindow(): void {
    if (this.#from !== 0 && this.#suppressed > 0) {
      const ranked = [...this.#byAddress].filter(([, t]) => t.suppressed > 0).sort((a, b) => b[1].suppressed - a[1].suppressed);
      const named = ranked.slice(0, SUMMARY_ADDRESSES);
      const now = this.clock.now();
      this.add({
        type: 'gateway.refused_summary',
        actor: 'system',
        at: now,
        data: {
          from: new Date(this.#from).toISOString(),
          to: now.toISOString(),
          suppressed: this.#suppressed,
          codes: Object.fromEntries(this.#codes),
          addresses: named.map(([address, t]) => ({ address, count: t.suppressed, codes: Object.fromEntries(t.codes) })),
          otherAddresses: ranked.length - named.length + (this.#untracked > 0 ? 1 : 0),
          otherCount: ranked.slice(SUMMARY_ADDRESSES).reduce((n, [, t]) => n + t.suppressed, 0) + this.#untracked,
          // Grants whose authentic tokens were refused more than their own budget.
          grants: [...this.#byGrant].filter(([, t]) => t.suppressed > 0).sort((a, b) => b[1].suppressed - a[1].suppressed)
            .slice(0, SUMMARY_ADDRESSES).map(([grantId, t]) => ({ grantId, count: t.suppressed, codes: Object.fromEntries(t.codes) })),
        },
      });
    }
    this.#from = 0;
    this.#individual = 0;
    this.#suppressed = 0;
    this.#codes = new Map();
    this.#byAddress = new Map();
    this.#byGrant = new Map();
    this.#untracked = 0;
  }
}

/** One more refusal of `code` counted (not audited one by one) in `tally`. */
function countIn(tally: Tally, code: string): void {
  tally.suppressed++;
  tally.codes.set(code, (tally.codes.get(code) ?? 0) + 1);
}

/** `key`'s tally in `table`, made if need be; undefined once the table holds TRACKED_ADDRESSES. */
function tallyIn(table: Map<string, Tally>, key: string): Tally | undefined {
  let t = table.get(key);
  if (t === undefined) {
    if (table.size >= TRACKED_ADDRESSES) return undefined;
    t = { individual: 0, suppressed: 0, codes: new Map() };
    table.set(key, t);
  }
  return t;
}

/**
 * What counts as one client address for the per-address limits: an IPv4 address (also written
 * IPv4-mapped, `::ffff:a.b.c.d`, or behind NAT64, `64:ff9b::a.b.c.d`), or an IPv6 address's /64,
 * the block one host or site gets (counting each IPv6 address apart would give one host billions
 * of budgets).
 */
export function addressKey(address: string): string {
  // IPv4-mapped, and the well-known NAT64 prefix (RFC 6052: 64:ff9b::/96), whose clients are IPv4 hosts.
  const mapped = /^(?:::ffff|64:ff9b:):(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1] as string;
  const nat64 = /^64:ff9b::([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (nat64) {
    const hi = Number.parseInt(nat64[1] as string, 16);
    const lo = Number.parseInt(nat64[2] as string, 16);
    return [hi >> 8, hi & 255, lo >> 8, lo & 255].join('.');
  }
  if (!isIPv6(address)) return address;
  const [head = '', tail] = address.split('%')[0]!.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  // An embedded IPv4 tail (::1.2.3.4) is past the /64 either way.
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups.slice(0, 4).map((g) => (Number.parseInt(g, 16) || 0).toString(16)).join(':')}::/64`;
}

/** A claimed name (user, database) as a refusal records it: at most `max` characters. */
export function claimed(v: string, max = MAX_CLAIMED): string {
  return v.length <= max ? v : `${v.slice(0, max - 1)}…`;
}
