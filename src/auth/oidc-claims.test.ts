import { describe, expect, it } from 'vitest';
import { identityFromClaims, SsoRefused } from './oidc-claims.js';

const base = { issuer: 'https://idp', clientId: 'hallpass' };

describe('SSO claims to a hallpass user', () => {
  it('maps IdP groups through groupMap and drops the rest; adminGroups make admins', () => {
    const id = identityFromClaims({ ...base, groupMap: { 'Eng-Platform': 'engineers', SRE: ['sre', 'oncall'] }, adminGroups: ['sre'] },
      { sub: 's1', email: 'Alice@Example.com', email_verified: true, groups: ['Eng-Platform', 'SRE', 'Marketing'] });
    expect(id).toEqual({ name: 'alice@example.com', email: 'alice@example.com', groups: ['engineers', 'oncall', 'sre'], isAdmin: true, attributes: { sub: 's1' } });
  });

  it('keeps only safely named groups when there is no groupMap', () => {
    expect(identityFromClaims(base, { email: 'a@x.io', groups: ['engineers', 'Bad Group', 'x; drop'] }).groups).toEqual(['engineers']);
  });

  it('names an account by the email\'s one spelling, and refuses invisible characters (review 2026-12-02: each look-alike got an account of its own)', () => {
    for (const email of ['erin@example.com.', 'ｅrin@example.com', 'erin@ｅxample.com', 'ERIN@Example.COM', ' erin@example.com']) {
      expect(identityFromClaims(base, { email }).name, email).toBe('erin@example.com');
    }
    for (const email of ['erin@example.com\u200b', 'e\u200brin@example.com', 'erin\u202e@example.com']) {
      expect(() => identityFromClaims(base, { email }), JSON.stringify(email)).toThrow(/invisible or control characters/);
    }
    expect(() => identityFromClaims({ ...base, usernameClaim: 'preferred_username' }, { preferred_username: 'bob\u2060' })).toThrow(/invisible/);
  });

  it('refuses unverified emails and domains not allowed', () => {
    expect(() => identityFromClaims(base, { email: 'a@x.io', email_verified: false })).toThrow(SsoRefused);
    // some providers send it as a string
    expect(() => identityFromClaims(base, { email: 'a@x.io', email_verified: 'false' })).toThrow(SsoRefused);
    expect(() => identityFromClaims(base, { email: 'a@x.io', email_verified: 'False ' })).toThrow(SsoRefused);
    expect(() => identityFromClaims({ ...base, allowedEmailDomains: ['example.com'] }, { email: 'a@evil.com' })).toThrow(/domain evil.com/);
    expect(() => identityFromClaims({ ...base, allowedEmailDomains: ['example.com'] }, { email: 'a@example.com.evil.com' })).toThrow(SsoRefused);
    expect(() => identityFromClaims({ ...base, allowedEmailDomains: ['example.com'] }, { sub: 'x' })).toThrow(SsoRefused);
    // An internationalised domain in either spelling is the same domain; the last @ decides.
    expect(identityFromClaims({ ...base, allowedEmailDomains: ['Bücher.Example'] }, { email: 'a@xn--bcher-kva.example' }).email).toBe('a@bücher.example');
    expect(identityFromClaims({ ...base, allowedEmailDomains: ['xn--bcher-kva.example'] }, { email: 'a@bücher.example' }).email).toBe('a@bücher.example');
    expect(() => identityFromClaims({ ...base, allowedEmailDomains: ['example.com'] }, { email: '"a@example.com"@evil.com' })).toThrow(/domain evil.com/);
  });
});
