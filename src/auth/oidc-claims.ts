import { isSafeName, UNSAFE_TEXT_CHAR } from '../policy/names.js';
import { canonicalDomain, canonicalEmail, emailDomain } from '../domain/email.js';
import type { OidcConfig } from './config.js';

export interface SsoIdentity {
  readonly name: string;
  readonly email: string | undefined;
  readonly groups: string[];
  readonly isAdmin: boolean;
  readonly attributes: Record<string, string>;
}

/** Why an ID token's claims do not let the person in (safe to show and audit). */
export class SsoRefused extends Error {
  override name = 'SsoRefused';
}

const UNSAFE_NAME = new RegExp(UNSAFE_TEXT_CHAR, 'u');

/** Turns verified ID token claims into a hallpass user, applying domain and group rules. Pure. */
export function identityFromClaims(config: OidcConfig, claims: Readonly<Record<string, unknown>>): SsoIdentity {
  const email = typeof claims.email === 'string' ? canonicalEmail(claims.email) : undefined;
  // Some providers send the claim as a string (a review signed in with "false").
  if (claims.email_verified === false || (typeof claims.email_verified === 'string' && claims.email_verified.trim().toLowerCase() === 'false')) {
    throw new SsoRefused('the identity provider says this email address is not verified');
  }
  if (config.allowedEmailDomains && config.allowedEmailDomains.length > 0) {
    // Both sides in canonical form (IDNA Unicode, lowercase): xn--… and its Unicode spelling are one domain.
    const domain = email === undefined ? undefined : emailDomain(email);
    if (!domain || !config.allowedEmailDomains.map(canonicalDomain).includes(domain)) {
      throw new SsoRefused(`email domain ${domain ?? '(none)'} is not allowed`);
    }
  }
  const rawName = claims[config.usernameClaim ?? 'email'];
  if (typeof rawName !== 'string' || rawName.length === 0 || rawName.length > 200) throw new SsoRefused(`the ID token has no usable ${config.usernameClaim ?? 'email'} claim`);
  // Invisible and control characters would make another person's name look like this one in the
  // audit and on approval screens; an email is named in canonical form (NFKC, lowercase, the
  // domain's one spelling), so `ｅrin@example.com` or `erin@example.com.` is erin@example.com,
  // whose account belongs to its subject (a review got a look-alike account of each, 2026-12-02).
  if (UNSAFE_NAME.test(rawName)) throw new SsoRefused(`the ID token's ${config.usernameClaim ?? 'email'} claim contains invisible or control characters`);
  const name = (config.usernameClaim ?? 'email') === 'email' ? canonicalEmail(rawName) : rawName;
  const raw = claims[config.groupsClaim ?? 'groups'];
  const idpGroups = Array.isArray(raw) ? raw.filter((g): g is string => typeof g === 'string') : typeof raw === 'string' ? [raw] : [];
  const groups = new Set<string>();
  for (const g of idpGroups) {
    if (config.groupMap) {
      const mapped = config.groupMap[g];
      for (const m of mapped === undefined ? [] : typeof mapped === 'string' ? [mapped] : mapped) groups.add(m);
    } else if (isSafeName(g)) {
      groups.add(g);
    }
  }
  const sorted = [...groups].sort();
  const attributes: Record<string, string> = {};
  if (typeof claims.sub === 'string') attributes.sub = claims.sub.slice(0, 256);
  if (typeof claims.iss === 'string') attributes.iss = claims.iss.slice(0, 256);
  return { name, email, groups: sorted, isAdmin: sorted.some((g) => config.adminGroups?.includes(g)), attributes };
}
