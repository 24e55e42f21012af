/**
 * Policy decision latency: 100 rules, ~100k varied decisions, p50/p95/p99/max in µs.
 * Run: node --import tsx bench/policy.ts
 */
import { Type } from '@sinclair/typebox';
import type { Principal } from '../src/domain/principal.js';
import { evaluate, formatPolicyError, loadPolicy } from '../src/policy/index.js';
import type { DecisionInput, Policy } from '../src/policy/index.js';

const TARGET_P99_US = 100;
const RULES = 100;
const DECISIONS = 100_000;
const WARMUP = 20_000;

const kinds = new Map([
  ['postgres', { kind: 'postgres', connectionSchema: Type.Object({ host: Type.String() }), privilegesSchema: Type.Object({ memberOf: Type.Array(Type.String()) }) }],
]);

/** Deterministic pseudo-random numbers so every run asks the same questions. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function buildPolicyText(conditions: boolean): string {
  const out: string[] = ['groups:'];
  for (let g = 0; g < 30; g++) out.push(`  - { name: g${g} }`);
  out.push('resources:');
  for (let r = 0; r < 20; r++) {
    out.push(`  - name: res-${r}`, '    kind: postgres', `    labels: { env: ${r % 2 ? 'staging' : 'prod'}, team: t${r % 5} }`);
    out.push('    connection: { host: db }', '    roles:');
    for (const role of ['read', 'write', 'admin']) out.push(`      ${role}: { privileges: { memberOf: [pg_${role}] } }`);
  }
  out.push('rules:');
  for (let i = 0; i < RULES; i++) {
    const roles = i % 3 === 0 ? '[read]' : i % 3 === 1 ? '[read, write]' : '[admin]';
    const resources = i % 3 === 0 ? `{ names: [res-${i % 20}, res-${(i * 7) % 20}] }` : i % 3 === 1 ? `{ labels: { env: ${i % 2 ? 'staging' : 'prod'} } }` : `{ labels: { team: t${i % 5} } }`;
    out.push(`  - name: rule-${i}`, `    who: { groups: [g${i % 30}, g${(i * 7 + 3) % 30}] }`, `    resources: ${resources}`, `    roles: ${roles}`);
    out.push(`    duration: { default: 15m, max: ${1 + (i % 8)}h }`);
    out.push(i % 4 === 0 ? '    approval: auto' : `    approval: { approvals: ${1 + (i % 3)}, from: [g${(i + 1) % 30}] }`);
    if (conditions && i % 5 === 0) out.push(`    when: 'request.duration <= duration("2h") && "g${i % 30}" in requester.groups'`);
    if (conditions && i % 10 === 1) out.push(`    when: 'now.getHours("Europe/Paris") >= 6 && now.getHours("Europe/Paris") < 22 && now.getDayOfWeek("Europe/Paris") != 0'`);
    if (conditions && i % 10 === 3) out.push(`    when: 'requester.attributes.department == "payments"'`);
    if (i % 7 === 0) out.push(`    reason: { required: true, ticketPattern: '^OPS-[0-9]+$' }`);
  }
  return `${out.join('\n')}\n`;
}

function inputs(policyRng: () => number): DecisionInput[] {
  const out: DecisionInput[] = [];
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(policyRng() * xs.length)]!;
  for (let i = 0; i < 2000; i++) {
    const groups = Array.from({ length: 1 + Math.floor(policyRng() * 3) }, () => `g${Math.floor(policyRng() * 30)}`);
    const principal: Principal = {
      id: `u${i}`,
      kind: 'user',
      name: `user-${i}`,
      groups,
      isAdmin: false,
      attributes: policyRng() < 0.5 ? { department: 'payments' } : {},
    };
    out.push({
      principal,
      resource: `res-${Math.floor(policyRng() * 20)}`,
      role: pick(['read', 'write', 'admin']),
      durationSeconds: pick([undefined, 600, 3600, 4 * 3600, 10 * 3600]),
      reason: policyRng() < 0.9 ? 'investigating an incident' : undefined,
      ticket: pick([undefined, 'OPS-1234', 'JIRA-1']),
      now: new Date(Date.UTC(2026, 0, 1 + Math.floor(policyRng() * 14), Math.floor(policyRng() * 24), 17)),
    });
  }
  return out;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function run(policy: Policy, asks: readonly DecisionInput[]) {
  for (let i = 0; i < WARMUP; i++) evaluate(policy, asks[i % asks.length]!);
  const samples = new Float64Array(DECISIONS);
  const kinds = new Map<string, number>();
  for (let i = 0; i < DECISIONS; i++) {
    const ask = asks[i % asks.length]!;
    const t0 = process.hrtime.bigint();
    const d = evaluate(policy, ask);
    samples[i] = Number(process.hrtime.bigint() - t0) / 1000;
    kinds.set(d.kind, (kinds.get(d.kind) ?? 0) + 1);
  }
  samples.sort();
  return { samples, kinds };
}

function load(text: string): Policy {
  const loaded = loadPolicy(text, { file: 'bench.yaml', kinds });
  if (!loaded.ok) {
    console.error(loaded.errors.map(formatPolicyError).join('\n'));
    process.exit(1);
  }
  return loaded.policy;
}

const fmt = (n: number) => n.toFixed(1).padStart(7);
const text = buildPolicyText(true);
const t0 = performance.now();
const withCel = load(text);
const loadMs = performance.now() - t0;
const withoutCel = load(buildPolicyText(false));
const asks = inputs(rng(42));
console.log(`policy: ${RULES} rules, 20 resources x 3 roles, ${text.length} bytes, loaded in ${loadMs.toFixed(1)} ms`);
console.log(`${DECISIONS} decisions per row, ${asks.length} distinct inputs, after ${WARMUP} warm-up decisions`);
console.log('                                p50      p95      p99      max   (µs)');
let p99WithCel = 0;
for (const [label, policy] of [['100 rules, 30 with CEL', withCel], ['100 rules, no CEL', withoutCel]] as const) {
  const { samples, kinds: outcome } = run(policy, asks);
  const p99 = percentile(samples, 99);
  if (policy === withCel) p99WithCel = p99;
  console.log(`${label.padEnd(26)} ${fmt(percentile(samples, 50))}  ${fmt(percentile(samples, 95))}  ${fmt(p99)}  ${fmt(samples[samples.length - 1]!)}   ${[...outcome].map(([k, n]) => `${k} ${n}`).join(', ')}`);
}
const ratio = p99WithCel / TARGET_P99_US;
console.log(`target: p99 <= ${TARGET_P99_US} µs with CEL; ratio p99/target = ${ratio.toFixed(3)} (${ratio <= 1 ? 'met' : 'MISSED'})`);
