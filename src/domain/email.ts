import { domainToASCII, domainToUnicode } from 'node:url';

/**
 * A domain as one name: lowercase, in its Unicode form (`xn--bcher-kva.example` is
 * `bücher.example`), NFKC-normalised. A domain IDNA cannot read is kept as written (lowercased).
 */
export function canonicalDomain(domain: string): string {
  const lower = domain.normalize('NFKC').trim().toLowerCase();
  // One root dot is the same name (example.com. is example.com); taken off after IDNA mapping,
  // which turns the ideographic full stops (。 ｡) into dots too (third review).
  const ascii = domainToASCII(lower).replace(/\.+$/, '');
  const unicode = ascii === '' ? '' : domainToUnicode(ascii);
  // Only a name that converts both ways is read as IDNA: `xn--example-` decodes to plain `example`,
  // which IDNA forbids, and must stay another name than example.com (second review).
  if (unicode === '' || domainToASCII(unicode) !== ascii) return lower.replace(/[。｡．]/g, '.').replace(/\.+$/, '');
  return unicode.normalize('NFKC');
}

/** The domain of an email address: what follows its last `@`. */
export function emailDomain(email: string): string | undefined {
  const at = email.lastIndexOf('@');
  return at <= 0 || at === email.length - 1 ? undefined : canonicalDomain(email.slice(at + 1));
}

/**
 * An email address as one person: NFKC and lowercase, the domain in canonical form, so
 * `Alice@Bücher.Example` and `alice@xn--bcher-kva.example` are the same person (a review approved
 * its own request through the second spelling, 2026-12-02).
 */
export function canonicalEmail(email: string): string {
  const e = email.normalize('NFKC').trim().toLowerCase();
  const at = e.lastIndexOf('@');
  return at <= 0 ? e : `${e.slice(0, at)}@${canonicalDomain(e.slice(at + 1))}`;
}
