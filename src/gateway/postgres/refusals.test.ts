import { describe, expect, it } from 'vitest';
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
      otherAddresses: 0, otherCount: 0,
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
    const { r, events } = audit({ perAddress: 1 });
    r.refused('2001:db8:1:2::1', refusal('bad_token'));
    r.refused('2001:db8:1:2::2', refusal('bad_token'));
    r.refused('2001:db8:1:3::1', refusal('bad_token'));
    expect(events).toHaveLength(2);
  });

  it('cuts claimed names to a bound', () => {
    expect(claimed('alice')).toBe('alice');
    const long = 'x'.repeat(9000);
    expect(claimed(long)).toHaveLength(MAX_CLAIMED);
    expect(claimed(long).endsWith('…')).toBe(true);
  });
});
