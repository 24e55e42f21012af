import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Principal } from '../domain/principal.js';
import { canApprove } from './approve.js';
import { formatPolicyError } from './errors.js';
import { evaluate } from './evaluator.js';
import { loadPolicy } from './loader.js';
import { testKinds } from './test-kinds.js';
import type { DecisionInput, Policy } from './types.js';

function load(text: string): Policy {
  const result = loadPolicy(text, { file: 'policy.yaml', kinds: testKinds });
  if (!result.ok) throw new Error(result.errors.map(formatPolicyError).join('\n'));
  return result.policy;
}

const policy = load(readFileSync(new URL('../../examples/policy.yaml', import.meta.url), 'utf8'));

const user = (name: string, groups: string[], extra: Partial<Principal> = {}): Principal => ({
  id: `user-${name}`,
  kind: 'user',
  name,
  groups,
  isAdmin: false,
  attributes: {},
  ...extra,
});
const alice = user('alice', ['engineers'], { attributes: { department: 'payments' } });
const bob = user('bob', ['sre', 'oncall']);
const carol = user('carol', ['sre', 'dba'], { isAdmin: true });
const exporter: Principal = { id: 'wl-1', kind: 'workload', name: 'billing-export', groups: [], isAdmin: false, attributes: {} };

// 2026-01-05 is a Monday; Paris is UTC+1 in January.
const MONDAY_10_PARIS = new Date('2026-01-05T09:00:00Z');
const MONDAY_21_PARIS = new Date('2026-01-05T20:00:00Z');
const SATURDAY_10_PARIS = new Date('2026-01-03T09:00:00Z');

const ask = (principal: Principal, resource: string, role: string, rest: Partial<DecisionInput> = {}): DecisionInput => ({
  principal,
  resource,
  role,
  reason: 'investigating INC-7',
  now: MONDAY_10_PARIS,
  ...rest,
});

describe('evaluate', () => {
  it('auto-approves with the rule default duration', () => {
    expect(evaluate(policy, ask(alice, 'orders-db', 'read'))).toEqual({
      kind: 'auto_approved',
      rule: 'engineers-read',
      durationSeconds: 900,
      mfa: { request: false, approve: false, connect: false, freshnessSeconds: 300 },
    });
  });

  it('matches resources by labels', () => {
    expect(evaluate(policy, ask(alice, 'billing-db', 'read'))).toMatchObject({ kind: 'auto_approved', rule: 'engineers-read' });
  });

  it('grants the requested duration up to the max, and refuses beyond it naming the max', () => {
    expect(evaluate(policy, ask(alice, 'orders-db', 'read', { durationSeconds: 3600 }))).toMatchObject({ durationSeconds: 3600 });
    expect(evaluate(policy, ask(alice, 'orders-db', 'read', { durationSeconds: 7200 }))).toEqual({
      kind: 'denied',
      reasons: ['2h is longer than the 1h max of rule engineers-read'],
    });
  });

  it('judges an extension on the grant\'s whole window after it, against the rule max (regression: extensions past the max)', () => {
    expect(evaluate(policy, ask(alice, 'orders-db', 'read', { durationSeconds: 1800, extending: { windowSeconds: 1800 } })))
      .toMatchObject({ kind: 'auto_approved', durationSeconds: 1800 });
    expect(evaluate(policy, ask(alice, 'orders-db', 'read', { durationSeconds: 1800, extending: { windowSeconds: 3600 } }))).toEqual({
      kind: 'denied',
      reasons: ['extending a 1h grant by 30m would make it 1h30m long, more than the 1h max of rule engineers-read'],
    });
    // The rule default counts too.
    expect(evaluate(policy, ask(alice, 'orders-db', 'read', { extending: { windowSeconds: 3000 } }))).toMatchObject({ kind: 'denied' });
  });

  it('break-glass extensions are capped so the whole window stays within maxDuration', () => {
    const bg = (windowSeconds: number, durationSeconds?: number) =>
      evaluate(policy, ask(bob, 'orders-db', 'write', { breakGlass: true, durationSeconds, extending: { windowSeconds } }));
    expect(bg(2400, 3600)).toEqual({ kind: 'break_glass', durationSeconds: 1200 });
    expect(bg(2400)).toEqual({ kind: 'break_glass', durationSeconds: 1200 });
    expect(bg(3600, 60)).toEqual({ kind: 'denied', reasons: ['the grant is already as long as the 1h break-glass max: request new access when it ends'] });
  });

  it('needs approval with the rule threshold, approver groups, pending TTL and MFA', () => {
    expect(evaluate(policy, ask(alice, 'orders-db', 'write', { ticket: 'OPS-42' }))).toEqual({
      kind: 'needs_approval',
      rule: 'engineers-write-orders',
      durationSeconds: 1800,
      approvals: 2,
      approverGroups: ['sre'],
      pendingTtlSeconds: 1800,
      mfa: { request: false, approve: true, connect: false, freshnessSeconds: 300 },
    });
  });

  it('prefers the applicable rule with fewer approvals', () => {
    const both = user('dave', ['engineers', 'sre']);
    expect(evaluate(policy, ask(both, 'orders-db', 'write', { ticket: 'OPS-42' }))).toMatchObject({
      kind: 'needs_approval',
      rule: 'sre-write',
      approvals: 1,
      approverGroups: ['sre', 'dba'],
      pendingTtlSeconds: 3600,
    });
  });

  it('prefers auto over approval rules regardless of file order', () => {
    const both = user('erin', ['engineers', 'sre']);
    expect(evaluate(policy, ask(both, 'orders-db', 'read'))).toMatchObject({ kind: 'auto_approved', rule: 'engineers-read' });
    // Outside office hours the auto rule's condition fails and the approval rule applies.
    expect(evaluate(policy, ask(both, 'orders-db', 'read', { now: MONDAY_21_PARIS }))).toMatchObject({ kind: 'needs_approval', rule: 'sre-write' });
  });

  it('requires a reason where the rule says so', () => {
    expect(evaluate(policy, ask(alice, 'orders-db', 'read', { reason: undefined }))).toEqual({
      kind: 'denied',
      reasons: ['reason is required by rule engineers-read'],
    });
    expect(evaluate(policy, ask(exporter, 'billing-db', 'read', { reason: undefined }))).toMatchObject({
      kind: 'auto_approved',
      rule: 'ci-billing-export',
      durationSeconds: 600,
    });
  });

  it('requires a ticket matching the pattern', () => {
    expect(evaluate(policy, ask(alice, 'orders-db', 'write'))).toEqual({
      kind: 'denied',
      reasons: ['ticket matching ^OPS-[0-9]+$ is required by rule engineers-write-orders'],
    });
    expect(evaluate(policy, ask(alice, 'orders-db', 'write', { ticket: 'X' }))).toEqual({
      kind: 'denied',
      reasons: ['ticket "X" does not match ^OPS-[0-9]+$ (rule engineers-write-orders)'],
    });
  });

  it('evaluates time-of-day conditions against the injected now, in the named time zone', () => {
    expect(evaluate(policy, ask(alice, 'orders-db', 'read', { now: MONDAY_21_PARIS }))).toEqual({
      kind: 'denied',
      reasons: [`condition of rule engineers-read is not met: ${policy.rules[0]!.when}`],
    });
    expect(evaluate(policy, ask(alice, 'orders-db', 'read', { now: SATURDAY_10_PARIS })).kind).toBe('denied');
    // 06:30 UTC is 07:30 in Paris: inside office hours only because of the zone.
    expect(evaluate(policy, ask(alice, 'orders-db', 'read', { now: new Date('2026-01-05T06:30:00Z') })).kind).toBe('auto_approved');
  });

  it('a condition that fails at evaluation makes its rule not apply, and says why', () => {
    const text = readFileSync(new URL('../../examples/policy.yaml', import.meta.url), 'utf8').replace(
      "reason: { required: false }",
      "reason: { required: false }\n    when: 'requester.attributes.department == \"billing\"'",
    );
    const withAttr = load(text);
    const decision = evaluate(withAttr, ask(exporter, 'billing-db', 'read'));
    expect(decision).toEqual({
      kind: 'denied',
      reasons: ['condition of rule ci-billing-export could not be evaluated: No such key: department'],
    });
  });

  it('exposes request, requester, resource and role to conditions', () => {
    const text = readFileSync(new URL('../../examples/policy.yaml', import.meta.url), 'utf8').replace(
      "reason: { required: false }",
      `reason: { required: false }\n    when: 'request.duration <= duration("5m") && requester.kind == "workload" && resource.labels.team == "billing" && role == "read" && request.reason.contains("nightly")'`,
    );
    const p = load(text);
    const decide = (d: number, reason: string) => evaluate(p, ask(exporter, 'billing-db', 'read', { durationSeconds: d, reason })).kind;
    expect(decide(300, 'nightly export')).toBe('auto_approved');
    expect(decide(301, 'nightly export')).toBe('denied');
    expect(decide(300, 'ad hoc')).toBe('denied');
  });

  it('explains who is not covered', () => {
    const stranger = user('zed', ['marketing']);
    expect(evaluate(policy, ask(stranger, 'orders-db', 'write'))).toEqual({
      kind: 'denied',
      reasons: ['no rule lets user zed (groups marketing) request write on orders-db'],
    });
    const otherJob: Principal = { ...exporter, name: 'deploy' };
    expect(evaluate(policy, ask(otherJob, 'billing-db', 'read'))).toEqual({
      kind: 'denied',
      reasons: ['no rule lets workload deploy (no groups) request read on billing-db'],
    });
  });

  it('refuses unknown resources and roles', () => {
    expect(evaluate(policy, ask(alice, 'payroll-db', 'read'))).toEqual({ kind: 'denied', reasons: ['unknown resource "payroll-db"'] });
    expect(evaluate(policy, ask(alice, 'billing-db', 'write'))).toEqual({ kind: 'denied', reasons: ['resource billing-db has no role "write"'] });
  });

  it('break-glass: allowed for the break-glass groups, capped at maxDuration', () => {
    expect(evaluate(policy, ask(bob, 'orders-db', 'write', { breakGlass: true, durationSeconds: 7200, now: MONDAY_21_PARIS }))).toEqual({
      kind: 'break_glass',
      durationSeconds: 3600,
    });
    expect(evaluate(policy, ask(bob, 'orders-db', 'write', { breakGlass: true, durationSeconds: 600 }))).toEqual({
      kind: 'break_glass',
      durationSeconds: 600,
    });
  });

  it('break-glass: denied outside the groups and without a reason', () => {
    expect(evaluate(policy, ask(alice, 'orders-db', 'write', { breakGlass: true }))).toEqual({
      kind: 'denied',
      reasons: ['break-glass is only for members of oncall; user alice (groups engineers) is not one'],
    });
    expect(evaluate(policy, ask(bob, 'orders-db', 'write', { breakGlass: true, reason: undefined }))).toEqual({
      kind: 'denied',
      reasons: ['reason is required for break-glass'],
    });
  });

  it('refuses malformed input rather than trusting the caller', () => {
    expect(evaluate(policy, ask(alice, 'orders-db', 'read', { reason: 'ok\u001b[2Jcleared' })).kind).toBe('denied');
    expect(evaluate(policy, ask(alice, 'orders-db', 'read', { durationSeconds: -5 })).kind).toBe('denied');
    expect(evaluate(policy, ask(alice, "orders-db'; DROP TABLE x;--", 'read'))).toEqual({
      kind: 'denied',
      reasons: [`"orders-db'; DROP TABLE x;--" is not a valid name (a lowercase letter, then up to 62 of a-z 0-9 _ -)`],
    });
  });
});

describe('canApprove', () => {
  const request = { requesterId: alice.id, ruleName: 'engineers-write-orders', approverGroups: ['sre'] };

  it('refuses self-approval even for a member of the approver group', () => {
    const self = user('alice', ['engineers', 'sre']);
    expect(canApprove(policy, request, self)).toEqual({ ok: false, code: 'self_approval', reason: 'nobody approves their own request' });
  });

  it('refuses approvers outside the approver groups, admins included', () => {
    const admin = user('root', ['engineers'], { isAdmin: true });
    expect(canApprove(policy, request, admin)).toEqual({ ok: false, code: 'forbidden', reason: 'approvers must be in sre; root is not' });
  });

  it('accepts a member of an approver group', () => {
    expect(canApprove(policy, request, bob)).toEqual({ ok: true });
  });

  it('refuses workloads as approvers', () => {
    const wl: Principal = { ...exporter, groups: ['sre'] };
    expect(canApprove(policy, request, wl)).toMatchObject({ ok: false, code: 'forbidden' });
  });

  it('asks for a fresh MFA check when the rule requires it on approval', () => {
    const now = MONDAY_10_PARIS;
    expect(canApprove(policy, request, carol, now)).toMatchObject({ ok: false, code: 'mfa_required' });
    expect(canApprove(policy, request, { ...carol, mfaAt: now.getTime() - 600_000 }, now)).toMatchObject({ ok: false, code: 'mfa_required' });
    expect(canApprove(policy, request, { ...carol, mfaAt: now.getTime() - 60_000 }, now)).toEqual({ ok: true });
  });
});
