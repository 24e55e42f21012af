import { ConfigError } from '../domain/errors.js';
import { compileCondition, CelResource } from './cel.js';
import type { CompiledCondition } from './cel.js';
import { labelsMatch } from './build-rules.js';
import type { Policy, RuleDef } from './types.js';

/** A rule with everything the hot path needs precomputed. */
export interface CompiledRule {
  readonly def: RuleDef;
  readonly users: ReadonlySet<string>;
  readonly groups: ReadonlySet<string>;
  readonly workloads: ReadonlySet<string>;
  readonly when: CompiledCondition | undefined;
  readonly ticket: RegExp | undefined;
}

export interface CompiledPolicy {
  /** resource -> role -> candidate rules, best first (auto, then fewest approvals, then file order). */
  readonly candidates: ReadonlyMap<string, ReadonlyMap<string, readonly CompiledRule[]>>;
  readonly celResources: ReadonlyMap<string, CelResource>;
  readonly breakGlassGroups: ReadonlySet<string>;
}

const cache = new WeakMap<Policy, CompiledPolicy>();

/**
 * The precomputed index of a policy, built once per Policy object. The loader passes the
 * conditions it already compiled; a Policy built by hand gets its conditions compiled here.
 */
export function compiledPolicy(policy: Policy, conditions?: ReadonlyMap<string, CompiledCondition>): CompiledPolicy {
  const hit = cache.get(policy);
  if (hit) return hit;
  const rules = policy.rules.map((def) => compileRule(def, conditions?.get(def.name)));
  const ordered = rules
    .map((rule, order) => ({ rule, order }))
    .sort((a, b) => rank(a.rule.def) - rank(b.rule.def) || a.order - b.order)
    .map((x) => x.rule);
  const candidates = new Map<string, Map<string, CompiledRule[]>>();
  const celResources = new Map<string, CelResource>();
  for (const res of policy.resources.values()) {
    celResources.set(res.name, new CelResource(res.name, res.kind, res.labels));
    const byRole = new Map<string, CompiledRule[]>();
    for (const role of res.roles.keys()) byRole.set(role, []);
    for (const rule of ordered) {
      if (!selects(rule.def, res.name, res.labels)) continue;
      for (const role of rule.def.roles) byRole.get(role)?.push(rule);
    }
    candidates.set(res.name, byRole);
  }
  const compiled: CompiledPolicy = {
    candidates,
    celResources,
    breakGlassGroups: new Set(policy.breakGlass?.groups ?? []),
  };
  cache.set(policy, compiled);
  return compiled;
}

function rank(def: RuleDef): number {
  return def.approval.kind === 'auto' ? 0 : def.approval.count;
}

function selects(def: RuleDef, name: string, labels: Readonly<Record<string, string>>): boolean {
  if (def.resources.names.length > 0) return def.resources.names.includes(name);
  return Object.keys(def.resources.labels).length > 0 && labelsMatch(labels, def.resources.labels);
}

function compileRule(def: RuleDef, when: CompiledCondition | undefined): CompiledRule {
  let condition = when;
  if (!condition && def.when !== undefined) {
    const compiled = compileCondition(def.when);
    if (!compiled.ok) throw new ConfigError(`rule ${def.name}: condition ${compiled.error}`);
    condition = compiled.run;
  }
  return {
    def,
    users: new Set(def.who.users),
    groups: new Set(def.who.groups),
    workloads: new Set(def.who.workloads),
    when: condition,
    // The pattern must match the whole ticket, whatever anchors the author wrote.
    ticket: def.ticketPattern === undefined ? undefined : new RegExp(`^(?:${def.ticketPattern})$`, 'u'),
  };
}
