import { createHash } from 'node:crypto';
import { canonicalJSON } from '../audit/canonical.js';
import type { WorkloadConfig } from './config.js';

/** `*` matches any run of characters (including `/`); everything else is literal. */
export function globMatch(pattern: string, value: string): boolean {
  if (!pattern.includes('*')) return pattern === value;
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');
  return re.test(value);
}

function claimMatches(want: string | readonly string[], got: unknown): boolean {
  const patterns = typeof want === 'string' ? [want] : want;
  const values = Array.isArray(got) ? got : [got];
  return values.some((v) => typeof v === 'string' && patterns.some((p) => globMatch(p, v)));
}

/** The first configured workload of this issuer whose every claim condition holds, or undefined. */
export function matchWorkload(workloads: readonly WorkloadConfig[], issuer: string, claims: Readonly<Record<string, unknown>>): WorkloadConfig | undefined {
  return workloads.find((w) => w.issuer === issuer && Object.entries(w.claims).every(([k, want]) => claimMatches(want, claims[k])));
}

/** The claims policy conditions may read (`requester.attributes.*`): short string claims only. */
export function claimAttributes(claims: Readonly<Record<string, unknown>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(claims)) {
    if (Object.keys(out).length >= 64) break;
    if (typeof v === 'string' && v.length <= 512 && /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(k)) out[k] = v;
    else if (typeof v === 'number' && Number.isFinite(v) && /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(k)) out[k] = String(v);
  }
  return out;
}

/** Claims that differ between two tokens of one job (a job may fetch a fresh token at any time). */
const PER_TOKEN_CLAIMS = new Set(['iat', 'exp', 'nbf', 'jti']);

/**
 * Which job a verified workload token speaks for: hex sha256 of the canonical JSON of its issuer,
 * subject and every claim of the verified payload (nested, namespaced, arrays and all), less the
 * per-token claims. Two jobs that map to one workload name (main and a release branch, two runs)
 * get different bindings; two tokens of one job, the same. (It once hashed only the flat claims
 * conditions can see, and CircleCI's `oidc.circleci.com/vcs-ref` was not among them: a second
 * review had a feature-branch job read the main job's credentials.)
 */
export function workloadBinding(issuer: string, subject: string | undefined, claims: Readonly<Record<string, unknown>>): string {
  const identity = Object.fromEntries(Object.entries(claims).filter(([k]) => !PER_TOKEN_CLAIMS.has(k)));
  return createHash('sha256').update(canonicalJSON({ issuer, subject: subject ?? null, attributes: identity })).digest('hex');
}
