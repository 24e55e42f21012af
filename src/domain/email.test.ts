import { describe, expect, it } from 'vitest';
import { canonicalDomain, canonicalEmail, emailDomain } from './email.js';

describe('canonical emails (one person, one spelling)', () => {
  it('reads every spelling of one address as one: case, NFKC, IDNA in either form, a root dot', () => {
    const one = canonicalEmail('alice@bücher.example');
    for (const other of ['Alice@Bücher.Example', 'alice@xn--bcher-kva.example', 'ALICE@XN--BCHER-KVA.EXAMPLE.', 'alice@bu\u0308cher.example']) {
      expect(canonicalEmail(other), other).toBe(one);
    }
    expect(canonicalEmail('alice@example.com.')).toBe('alice@example.com');
    for (const dotted of ['alice@example.com。', 'alice@example.com｡', 'alice@example.com..']) expect(canonicalEmail(dotted), dotted).toBe('alice@example.com');
    expect(canonicalEmail('a@ｅxample.com')).toBe('a@example.com');
  });

  it('keeps names IDNA does not allow apart from the names they decode to (second review)', () => {
    expect(canonicalEmail('alice@xn--example-.com')).not.toBe(canonicalEmail('alice@example.com'));
    expect(canonicalDomain('example.xn--com-')).not.toBe('example.com');
    expect(emailDomain('"a@example.com"@evil.com')).toBe('evil.com');
    // A name IDNA rejects is still read one way, whatever its dots (fourth review).
    expect(canonicalDomain('exa mple。com..')).toBe(canonicalDomain('exa mple.com'));
    expect(emailDomain('nobody')).toBeUndefined();
  });
});
