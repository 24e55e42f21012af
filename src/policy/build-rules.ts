import { Value } from '@sinclair/typebox/value';
import { formatDuration } from '../domain/duration.js';
import type { Path } from './errors.js';
import { fail, items } from './build-people.js';
import { checkLabels } from './build-resources.js';
import { compileCondition } from './cel.js';
import type { CompiledCondition } from './cel.js';
import { checkName, quote } from './names.js';
import type { Reporter } from './report.js';
import { RuleSchema } from './schema.js';
import type { RawRule } from './schema.js';
import type { Approval, GroupDef, ResourceDef, RuleDef, UserDef } from './types.js';

/** Longest grant a rule may allow: hallpass is for just-in-time access, not standing access. */
export const MAX_RULE_DURATION_SECONDS = 30 * 86400;
export const MAX_APPROVALS = 10;
export const DEFAULT_MFA_FRESHNESS_SECONDS = 300;
const MAX_TICKET_PATTERN_LENGTH = 200;

export interface RuleContext {
  readonly users: ReadonlyMap<string, UserDef>;
  readonly groups: ReadonlyMap<string, GroupDef>;
  readonly resources: ReadonlyMap<string, ResourceDef>;
  readonly pendingTtlSeconds: number;
}

export function buildRules(r: Reporter, raw: unknown, ctx: RuleContext) {
  const rules: RuleDef[] = [];
  const conditions = new Map<string, CompiledCondition>();
  const seen = new Map<string, Path>();
  for (const [i, rule] of items(raw)) {
    if (!Value.Check(RuleSchema, rule)) continue;
    const built = buildRule(r, i, rule, ctx);
    const named = r.check(['rules', i, 'name'], checkName(rule.name)) && r.unique(seen, rule.name, ['rules', i, 'name'], 'rule');
    if (!built || !named) continue;
    rules.push(built.def);
    if (built.when) conditions.set(rule.name, built.when);
  }
  return { rules, conditions };
}

function buildRule(r: Reporter, i: number, rule: RawRule, ctx: RuleContext) {
  const at = (...rest: (string | number)[]): Path => ['rules', i, ...rest];
  let ok = true;
  const refs = (list: readonly string[] | undefined, path: Path, known: ReadonlyMap<string, unknown> | undefined, what: string) =>
    (list ?? []).forEach((name, j) => {
      const nameError = checkName(name);
      if (nameError) ok = fail(r, [...path, j], nameError);
      else if (known && !known.has(name)) ok = fail(r, [...path, j], `unknown ${what} ${quote(name)}`);
    });

  const who = { users: rule.who.users ?? [], groups: rule.who.groups ?? [], workloads: rule.who.workloads ?? [] };
  refs(who.users, at('who', 'users'), ctx.users, 'user');
  refs(who.groups, at('who', 'groups'), ctx.groups, 'group');
  refs(who.workloads, at('who', 'workloads'), undefined, 'workload');
  if (who.users.length + who.groups.length + who.workloads.length === 0) {
    ok = fail(r, at('who'), 'names nobody: give users, groups or workloads');
  }

  const selected = selectResources(r, at('resources'), rule.resources, ctx.resources);
  if (!selected) ok = false;
  rule.roles.forEach((role, j) => {
    const nameError = checkName(role);
    if (nameError) ok = fail(r, at('roles', j), nameError);
    else if (selected && !selected.resources.some((res) => res.roles.has(role))) {
      ok = fail(r, at('roles', j), `role ${quote(role)} is not offered by any resource this rule selects`);
    }
  });

  const max = r.duration(at('duration', 'max'), rule.duration.max);
  const dflt = rule.duration.default === undefined ? max : r.duration(at('duration', 'default'), rule.duration.default);
  if (max !== undefined && max > MAX_RULE_DURATION_SECONDS) {
    ok = fail(r, at('duration', 'max'), `${quote(rule.duration.max)} is longer than ${formatDuration(MAX_RULE_DURATION_SECONDS)}`);
  }
  if (max !== undefined && dflt !== undefined && dflt > max) {
    ok = fail(r, at('duration', 'default'), `${quote(rule.duration.default)} is longer than max ${quote(rule.duration.max)}`);
  }

  const approval = buildApproval(r, at('approval'), rule.approval, ctx.groups);
  let when: CompiledCondition | undefined;
  if (rule.when !== undefined) {
    const compiled = compileCondition(rule.when);
    if (compiled.ok) when = compiled.run;
    else ok = fail(r, at('when'), compiled.error);
  }
  const ticketPattern = rule.reason?.ticketPattern;
  if (ticketPattern !== undefined) ok = checkPattern(r, at('reason', 'ticketPattern'), ticketPattern) && ok;
  const pendingTtl = rule.pendingTtl === undefined ? ctx.pendingTtlSeconds : r.duration(at('pendingTtl'), rule.pendingTtl);
  const freshness = rule.mfa?.freshness === undefined ? DEFAULT_MFA_FRESHNESS_SECONDS : r.duration(at('mfa', 'freshness'), rule.mfa.freshness);

  if (!ok || !selected || !approval || max === undefined || dflt === undefined || pendingTtl === undefined || freshness === undefined) {
    return undefined;
  }
  const def: RuleDef = {
    name: rule.name,
    line: r.lines.lineOf(['rules', i]),
    who,
    resources: { names: rule.resources.names ?? [], labels: selected.labels },
    roles: rule.roles,
    defaultDurationSeconds: dflt,
    maxDurationSeconds: max,
    approval,
    when: rule.when,
    reasonRequired: rule.reason?.required ?? true,
    ticketPattern,
    pendingTtlSeconds: pendingTtl,
    mfa: {
      request: rule.mfa?.request ?? false,
      approve: rule.mfa?.approve ?? false,
      connect: rule.mfa?.connect ?? false,
      freshnessSeconds: freshness,
    },
  };
  return { def, when };
}

function selectResources(r: Reporter, path: Path, sel: RawRule['resources'], all: ReadonlyMap<string, ResourceDef>) {
  const names = sel.names ?? [];
  const rawLabels = sel.labels ?? {};
  const hasLabels = Object.keys(rawLabels).length > 0;
  if ((names.length > 0) === hasLabels) {
    r.at(path, 'give exactly one of names: [...] or labels: {...}');
    return undefined;
  }
  if (names.length > 0) {
    let ok = true;
    const resources: ResourceDef[] = [];
    names.forEach((name, j) => {
      const res = all.get(name);
      if (res) resources.push(res);
      else ok = fail(r, [...path, 'names', j], `unknown resource ${quote(name)}`);
    });
    return ok ? { resources, labels: {} } : undefined;
  }
  const labels = checkLabels(r, [...path, 'labels'], rawLabels);
  if (!labels) return undefined;
  const resources = [...all.values()].filter((res) => labelsMatch(res.labels, labels));
  if (resources.length === 0) {
    r.at([...path, 'labels'], 'selects no resource');
    return undefined;
  }
  return { resources, labels };
}

export function labelsMatch(have: Readonly<Record<string, string>>, want: Readonly<Record<string, string>>): boolean {
  for (const k in want) if (have[k] !== want[k]) return false;
  return true;
}

function buildApproval(r: Reporter, path: Path, raw: RawRule['approval'], groups: ReadonlyMap<string, GroupDef>): Approval | undefined {
  if (raw === 'auto') return { kind: 'auto' };
  let ok = true;
  if (raw.approvals < 1 || raw.approvals > MAX_APPROVALS) {
    ok = fail(r, [...path, 'approvals'], `must be between 1 and ${MAX_APPROVALS}`);
  }
  if (raw.from.length === 0) ok = fail(r, [...path, 'from'], 'needs at least one approver group');
  raw.from.forEach((g, j) => {
    if (!groups.has(g)) ok = fail(r, [...path, 'from', j], `unknown group ${quote(g)}`);
  });
  return ok ? { kind: 'approvals', count: raw.approvals, from: raw.from } : undefined;
}

function checkPattern(r: Reporter, path: Path, pattern: string): boolean {
  if (pattern.length > MAX_TICKET_PATTERN_LENGTH) return fail(r, path, `is longer than ${MAX_TICKET_PATTERN_LENGTH} characters`);
  try {
    new RegExp(pattern, 'u');
    return true;
  } catch (err) {
    return fail(r, path, `${quote(pattern)} is not a valid regular expression: ${err instanceof Error ? err.message : String(err)}`);
  }
}
