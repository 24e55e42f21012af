import { describe, expect, it } from 'vitest';
import { UserAddressThrottle, type Attempt } from './throttle.js';

const admitted = (a: number | Attempt): Attempt => {
  if (typeof a === 'number') throw new Error(`refused for ${a} ms`);
  return a;
};

describe('UserAddressThrottle', () => {
  it('counts attempts in flight against the budget, so a burst gets no more than the free attempts', () => {
    const t = new UserAddressThrottle(5, 20);
    const now = 1_000_000;
    const running = Array.from({ length: 5 }, (_, i) => admitted(t.begin('ann', `10.0.0.${i}`, now)));
    expect(t.begin('ann', '10.0.0.9', now)).toBe(1000); // the budget is taken by attempts still running
    for (const a of running) a.done(false);
    expect(t.begin('ann', '10.0.0.9', now)).toBe(1000); // 5 failures: back-off 1 s
    expect(t.begin('ann', '10.0.0.9', now + 999)).toBe(1);
    // Past the back-off, one attempt at a time.
    const one = admitted(t.begin('ann', '10.0.0.9', now + 1000));
    expect(t.begin('ann', '10.0.0.8', now + 1000)).toBe(1000);
    one.done(false);
    expect(t.begin('ann', '10.0.0.8', now + 1000)).toBe(2000); // 6 failures: 2 s from the last
  });

  it('a success clears the user\'s failures, not the address\'s; an attempt that neither passed nor failed only ends', () => {
    const t = new UserAddressThrottle(2, 3);
    const now = 5_000_000;
    admitted(t.begin('ann', 'A', now)).done(false);
    admitted(t.begin('bob', 'A', now)).done(false);
    admitted(t.begin('ann', 'B', now)).done(true); // ann's record is cleared
    admitted(t.begin('ann', 'B', now)).done(false);
    admitted(t.begin('cat', 'A', now)).done(false); // A: 3 failures
    expect(t.begin('dan', 'A', now)).toBe(1000);
    const neither = admitted(t.begin('eve', 'C', now));
    neither.done(undefined);
    neither.done(false); // settled once only
    admitted(t.begin('eve', 'C', now)).done(undefined);
    expect(typeof t.begin('eve', 'C', now)).toBe('object');
  });
});

describe('addressKey', () => {
  it('counts an IPv6 client by its /64 and an IPv4-mapped address as IPv4', async () => {
    const { addressKey } = await import('./throttle.js');
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::5')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  });

  it('one IPv6 client rotating through its /64 shares one address budget', () => {
    const t = new UserAddressThrottle(100, 3);
    for (let i = 1; i <= 3; i++) admitted(t.begin(`u${i}`, `2001:db8:1:2::${i}`, 0)).done(false);
    expect(t.begin('u9', '2001:db8:1:2::99', 0)).toBe(1000);
    expect(typeof t.begin('u9', '2001:db8:1:3::1', 0)).toBe('object');
  });
});

describe('AnonymousFailures', () => {
  it('audits failures up to the budget, then refuses and counts them for the next audited one', async () => {
    const { AnonymousFailures } = await import('./throttle.js');
    const f = new AnonymousFailures(3);
    for (let i = 0; i < 3; i++) admitted(f.begin('198.51.100.1', 0)).done(false);
    for (let i = 0; i < 5; i++) expect(f.begin('198.51.100.1', 0)).toBeGreaterThan(0);
    expect(typeof f.begin('198.51.100.2', 0)).toBe('object'); // another address has its own budget
    expect(f.takeSuppressed('198.51.100.1')).toBe(5);
    expect(f.takeSuppressed('198.51.100.1')).toBe(0);
  });
});
