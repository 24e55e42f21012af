import { afterEach, describe, expect, it, vi } from 'vitest';
import type { GatewayAuditEvent } from '../authority.js';
import { addressKey, claimed, MAX_CLAIMED, RefusalAudit } from './refusals.js';

const refusal = (code: string, n = 0): GatewayAuditEvent => ({ type: 'gateway.refused', actor: `u${n}`, at: new Date(0), data: { code } });

function audit(opts: { perAddress?: number; total?: number } = {}) {
  const t = { ms: 1_000_000 };
  const events: GatewayAuditEvent[] = [];
  const r = new RefusalAudit((e) => events.push(e), { now: () => new Date(t.ms) }, { windowMs: 10_000, ...opts });
  return { r, events, t, summaries: () => events.filter((e) => e.type === 'gateway.refused_summary').map((e) => e.data) };
}

describe('RefusalAudit (refused attempts audited one by one up to a budget, the rest counted)', () => {
  it('audits each address\'s first refusals of a window, counts the rest, and sums them up once the window ends', () => {
    const { r, events, t, summaries } = audit({ perAddress: 3 });
    for (let i = 0; i < 10; i++) r.refused('10.0.0.1', refusal(i % 2 === 0 ? 'tls_required' : 'bad_token', i));
    r.refused('10.0.0.2', refusal('protocol_error'));
    r.counted('10.0.0.1', 'too_many_logins');
    expect(events.map((e) => e.actor)).toEqual(['u0', 'u1', 'u2', 'u0']);
    expect(summaries()).toEqual([]);
    // The next refusal after the window starts a new one, and the last one's summary comes first.
    t.ms += 10_000;
    r.refused('10.0.0.1', refusal('bad_startup', 99));
    expect(summaries()).toEqual([{
      from: new Date(1_000_000).toISOString(), to: new Date(1_010_000).toISOString(),
      suppressed: 8, codes: { tls_required: 3, bad_token: 4, too_many_logins: 1 },
      addresses: [{ address: '10.0.0.1', count: 8, codes: { tls_required: 3, bad_token: 4, too_many_logins: 1 } }],
      otherAddresses: 0, otherCount: 0, grants: [],
    }]);
    expect(events[events.length - 1]?.actor).toBe('u99');
    // flush (the gateway stopping) writes a summary only when something was counted.
    r.flush();
    expect(summaries()).toHaveLength(1);
  });

  it('bounds the refusals audited one by one across all addresses, and names the most refused addresses', () => {
    const { r, events, summaries } = audit({ perAddress: 2, total: 5 });
    for (let a = 1; a <= 60; a++) for (let i = 0; i < a; i++) r.refused(`10.0.${a}.1`, refusal('tls_required'));
    expect(events.filter((e) => e.type === 'gateway.refused')).toHaveLength(5);
    r.flush();
    const [s] = summaries() as Array<{ suppressed: number; addresses: Array<{ address: string; count: number }>; otherAddresses: number; otherCount: number }>;
    expect(s!.suppressed).toBe(60 * 61 / 2 - 5);
    expect(s!.addresses).toHaveLength(50);
    expect(s!.addresses[0]).toMatchObject({ address: '10.0.60.1', count: 60 });
    expect(s!.otherAddresses).toBe(8); // of 58 with a refusal counted (the first two had theirs audited)
    expect(s!.addresses.reduce((n, a) => n + a.count, 0) + s!.otherCount).toBe(s!.suppressed);
  });

  it('counts an IPv6 /64 as one address, and IPv4-mapped addresses as IPv4', () => {
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2:ffff:ffff:ffff:fffe')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:DB8:0001:0002::9%eth0')).toBe('2001:db8:1:2::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('2001:db8::')).toBe('2001:db8:0:0::/64');
    // NAT64's well-known prefix carries IPv4 clients (second review: they all shared one key).
    expect(addressKey('64:ff9b::192.0.2.1')).toBe('192.0.2.1');
    expect(addressKey('64:ff9b::c000:201')).toBe('192.0.2.1');
    expect(addressKey('64:ff9b::198.51.100.2')).not.toBe(addressKey('64:ff9b::192.0.2.1'));
    const { r, events } = audit({ perAddress: 1 });
    r.refused('2001:db8:1:2::1', refusal('bad_token'));
    r.refused('2001:db8:1:2::2', refusal('bad_token'));
    r.refused('2001:db8:1:3::1', refusal('bad_token'));
    expect(events).toHaveLength(2);
  });

  it('audits an authentic token\'s refusals by their own budget per grant: tokenless floods cannot hide them (second review)', () => {
    const { r, events, summaries } = audit({ perAddress: 10, total: 200 });
    // Twenty addresses use up the overall budget, fifty more outrank everyone in the summary.
    for (let a = 0; a < 20; a++) for (let i = 0; i < 10; i++) r.refused(`2001:db8:0:${a.toString(16)}::1`, refusal('tls_required'));
    for (let a = 100; a < 150; a++) for (let i = 0; i < 2; i++) r.refused(`2001:db8:0:${a.toString(16)}::1`, refusal('tls_required'));
    // The address has used its own up too.
    for (let i = 0; i < 10; i++) r.refused('198.51.100.77', refusal('bad_token'));
    r.refused('198.51.100.77', { type: 'gateway.refused', actor: 'mallory', grantId: 'grt_stolen', at: new Date(0), data: { code: 'replayed' } });
    expect(events.filter((e) => e.grantId === 'grt_stolen').map((e) => [e.actor, e.data.code])).toEqual([['mallory', 'replayed']]);
    // Over its own budget a grant is still named in the summary.
    for (let i = 0; i < 12; i++) r.refused('198.51.100.78', { type: 'gateway.refused', actor: 'm', grantId: 'grt_busy', at: new Date(0), data: { code: 'not_owner' } });
    expect(events.filter((e) => e.grantId === 'grt_busy')).toHaveLength(10);
    r.flush();
    expect(summaries()[0]?.grants).toEqual([{ grantId: 'grt_busy', count: 2, codes: { not_owner: 2 } }]);
  });

  it('audits an untracked address\'s refusals within the overall budget (the table of addresses full)', () => {
    const { r, events } = audit({ perAddress: 10, total: 1_000_000 });
    for (let a = 0; a < 10_000; a++) r.refused(`2001:db8:1:${a.toString(16)}::1`, refusal('tls_required'));
    const before = events.length;
    r.refused('198.51.100.77', refusal('bad_token', 7));
    expect(events.length).toBe(before + 1);
  });

  describe('windows', () => {
    afterEach(() => {
      vi.useRealTimers();
    });
    it('a window started late (a busy event loop) is not ended by the last one\'s timer (second review)', () => {
      vi.useFakeTimers();
      const events: GatewayAuditEvent[] = [];
      const r = new RefusalAudit((e) => events.push(e), { now: () => new Date() }, { windowMs: 1000, perAddress: 1000, total: 5 });
      const individual = () => events.filter((e) => e.type === 'gateway.refused').length;
      const start = Date.now();
      for (let i = 0; i < 6; i++) r.refused('10.0.0.1', refusal('tls_required'));
      vi.advanceTimersByTime(500);
      // The clock passes the window's end before its timer could run (timers 500 ms behind).
      vi.setSystemTime(start + 1200);
      for (let i = 0; i < 6; i++) r.refused('10.0.0.2', refusal('tls_required'));
      expect(individual()).toBe(10);
      // The old timer comes due now, 600 ms into the new window: it must not end it (and give
      // it a fresh budget).
      vi.advanceTimersByTime(600);
      for (let i = 0; i < 6; i++) r.refused('10.0.0.3', refusal('tls_required'));
      expect(individual()).toBe(10);
      // The new window's own timer ends it, with its summary.
      vi.advanceTimersByTime(400);
      expect(events.filter((e) => e.type === 'gateway.refused_summary').map((e) => e.data.suppressed)).toEqual([1, 7]);
    });
  });

  it('cuts claimed names to a bound', () => {
    expect(claimed('alice')).toBe('alice');
    const long = 'x'.repeat(9000);
    expect(claimed(long)).toHaveLength(MAX_CLAIMED);
    expect(claimed(long).endsWith('…')).toBe(true);
  });
});
