import { describe, expect, it } from 'vitest';
import { UserAddressThrottle, type Attempt, type Refusal } from './throttle.js';

const admitted = (a: Refusal | Attempt): Attempt => {
  if (a.refused) throw new Error(`refused for ${a.ms} ms`);
  return a;
};
/** The wait of a refused attempt (`busy` as the second element), or 'admitted'. */
const refusal = (a: Refusal | Attempt): [number, boolean] | 'admitted' => (a.refused ? [a.ms, a.busy] : 'admitted');

describe('UserAddressThrottle', () => {
  it('counts attempts in flight against the budget, so a burst gets no more than the free attempts', () => {
    const t = new UserAddressThrottle(5, 20);
    const now = 1_000_000;
    const running = Array.from({ length: 5 }, (_, i) => admitted(t.begin('ann', `10.0.0.${i}`, now)));
    expect(refusal(t.begin('ann', '10.0.0.9', now))).toEqual([1000, true]); // the budget is taken by attempts still running
    for (const a of running) a.done(false);
    expect(refusal(t.begin('ann', '10.0.0.9', now))).toEqual([1000, false]); // 5 failures: back-off 1 s
    expect(refusal(t.begin('ann', '10.0.0.9', now + 999))).toEqual([1, false]);
    // Past the back-off, one attempt at a time.
    const one = admitted(t.begin('ann', '10.0.0.9', now + 1000));
    expect(refusal(t.begin('ann', '10.0.0.8', now + 1000))).toEqual([1000, true]);
    one.done(false);
    expect(refusal(t.begin('ann', '10.0.0.8', now + 1000))).toEqual([2000, false]); // 6 failures: 2 s from the last
  });

  it('a success clears the user\'s failures, not the address\'s; an attempt that neither passed nor failed only ends', () => {
    const t = new UserAddressThrottle(2, 3);
    const now = 5_000_000;
    admitted(t.begin('ann', 'A', now)).done(false);
    admitted(t.begin('bob', 'A', now)).done(false);
    admitted(t.begin('ann', 'B', now)).done(true); // ann's record is cleared
    admitted(t.begin('ann', 'B', now)).done(false);
    admitted(t.begin('cat', 'A', now)).done(false); // A: 3 failures
    expect(refusal(t.begin('dan', 'A', now))).toEqual([1000, false]);
    const neither = admitted(t.begin('eve', 'C', now));
    neither.done(undefined);
    neither.done(false); // settled once only
    admitted(t.begin('eve', 'C', now)).done(undefined);
    expect(refusal(t.begin('eve', 'C', now))).toBe('admitted');
  });
});

describe('addressKey', () => {
  it('counts an IPv6 client by its /64, any IPv4-in-IPv6 form as the IPv4 address, and drops a port (second review)', async () => {
    const { addressKey } = await import('./throttle.js');
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('203.0.113.7:40001')).toBe('203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:cb00:7107')).toBe('203.0.113.7');
    expect(addressKey('0:0:0:0:0:ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('[2001:db8::1]:443')).toBe('2001:db8:0:0::/64');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:0DB8:0001:0002:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(addressKey('1::2:3:4:5:6.7.8.9')).toBe('1:0:2:3::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey('not an address')).toBe('not an address');
  });

  it('one IPv6 client rotating through its /64 shares one address budget', () => {
    const t = new UserAddressThrottle(100, 3);
    for (let i = 1; i <= 3; i++) admitted(t.begin(`u${i}`, `2001:db8:1:2::${i}`, 0)).done(false);
    expect(refusal(t.begin('u9', '2001:db8:1:2::99', 0))).toEqual([1000, false]);
    expect(refusal(t.begin('u9', '2001:db8:1:3::1', 0))).toBe('admitted');
  });
});

describe('AnonymousFailures', () => {
  it('audits failures up to the budget, then only counts them, the count going with the next audited one; it refuses nothing', async () => {
    const { AnonymousFailures } = await import('./throttle.js');
    const f = new AnonymousFailures(3, 1000);
    for (let i = 0; i < 3; i++) expect(f.failed('198.51.100.1', 0)).toEqual({ audit: true, suppressed: 0 });
    for (let i = 0; i < 5; i++) expect(f.failed('198.51.100.1', 10)).toEqual({ audit: false, suppressed: 0 });
    expect(f.failed('198.51.100.2', 10)).toEqual({ audit: true, suppressed: 0 }); // another address has its own budget
    expect(f.failed('198.51.100.1', 1500)).toEqual({ audit: true, suppressed: 5 }); // a new window
    expect(f.failed('198.51.100.1', 1600)).toEqual({ audit: true, suppressed: 0 });
  });
});
