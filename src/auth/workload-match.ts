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
