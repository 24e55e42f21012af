import { formatDuration } from '../domain/duration.js';
import type { Principal } from '../domain/principal.js';
import { CelResource, celRequest, celRequester } from './cel.js';
import { celNow } from './cel-time.js';
import type { CelContext } from './cel.js';
import { compiledPolicy } from './compiled.js';
import type { CompiledRule } from './compiled.js';
import { checkName, checkReason, checkTicket, quote } from './names.js';
import type { Decision, DecisionInput, Policy } from './types.js';

/** Longest duration anyone may ask for, in seconds (rules cap it further). */
const MAX_REQUEST_SECONDS = 366 * 86400;
const NO_RULES: readonly CompiledRule[] = [];
/** SSO users can carry hundreds of groups; a denial names the first few. */
const MAX_GROUPS_SHOWN = 10;

/**
 * Decides a request under a policy. Pure (time comes from `input.now`) and total: a "no" is a
 * `denied` value with reasons a person can act on, never an exception.
 *
 * A rule applies when the principal is among its users/groups/workloads, it selects the resource
 * and the role, the requested duration is within its max (for an extension, the grant's whole
 * window after it is), its reason/ticket requirements are met
 * and its `when` condition is true. Among applicable rules the best is taken: auto first, then
 * fewest approvals, then the earliest in the file.
 */
export function evaluate(policy: Policy, input: DecisionInput): Decision {
  const bad = inputProblem(input);
  if (bad !== undefined) return deny(bad);
  const resource = policy.resources.get(input.resource);
  if (!resource) return deny(`unknown resource ${quote(input.resource)}`);
  if (!resource.roles.has(input.role)) return deny(`resource ${input.resource} has no role ${quote(input.role)}`);
  if (input.breakGlass === true) return breakGlass(policy, input);

  const compiled = compiledPolicy(policy);
  const rules = compiled.candidates.get(input.resource)?.get(input.role) ?? NO_RULES;
  const p = input.principal;
  let reasons: string[] | undefined;
  let cel: CelContext | undefined;
  for (const rule of rules) {
    if (!whoMatches(rule, p)) continue;
    const def = rule.def;
    const duration = input.durationSeconds ?? def.defaultDurationSeconds;
    let problem: string | undefined;
    if (duration > def.maxDurationSeconds) {
      problem = `${formatDuration(duration)} is longer than the ${formatDuration(def.maxDurationSeconds)} max of rule ${def.name}`;
    } else if (input.extending && input.extending.windowSeconds + duration > def.maxDurationSeconds) {
      problem = extensionTooLong(input.extending.windowSeconds, duration, def.maxDurationSeconds, def.name);
    } else if (def.reasonRequired && (input.reason === undefined || input.reason.trim() === '')) {
      problem = `reason is required by rule ${def.name}`;
    } else if (rule.ticket && input.ticket === undefined) {
      problem = `ticket matching ${def.ticketPattern ?? ''} is required by rule ${def.name}`;
    } else if (rule.ticket && input.ticket !== undefined && !rule.ticket.test(input.ticket)) {
      problem = `ticket ${quote(input.ticket)} does not match ${def.ticketPattern ?? ''} (rule ${def.name})`;
    } else if (rule.when) {
      cel ??= {
        request: celRequest(duration, input.reason, input.ticket),
        requester: celRequester(p),
        resource: compiled.celResources.get(input.resource) ?? new CelResource(resource.name, resource.kind, resource.labels),
        role: input.role,
        now: celNow(input.now),
      };
      if (cel.request.duration.seconds !== BigInt(duration)) cel.request = celRequest(duration, input.reason, input.ticket);
      const result = rule.when(cel);
      if (!result.ok) problem = `condition of rule ${def.name} could not be evaluated: ${result.error}`;
      else if (!result.value) problem = `condition of rule ${def.name} is not met: ${def.when ?? ''}`;
    }
    if (problem === undefined) return approve(rule, duration);
    (reasons ??= []).push(problem);
  }
  return deny(...(reasons ?? [`no rule lets ${describe(p)} request ${input.role} on ${input.resource}`]));
}

function approve(rule: CompiledRule, durationSeconds: number): Decision {
  const def = rule.def;
  if (def.approval.kind === 'auto') return { kind: 'auto_approved', rule: def.name, durationSeconds, mfa: def.mfa };
  return {
    kind: 'needs_approval',
    rule: def.name,
    durationSeconds,
    approvals: def.approval.count,
    approverGroups: def.approval.from,
    pendingTtlSeconds: def.pendingTtlSeconds,
    mfa: def.mfa,
  };
}

/** Break-glass: only for members of breakGlass.groups, with a reason, capped at maxDuration. */
function breakGlass(policy: Policy, input: DecisionInput): Decision {
  const bg = policy.breakGlass;
  if (!bg) return deny('break-glass is not enabled in this policy');
  const p = input.principal;
  const groups = compiledPolicy(policy).breakGlassGroups;
  if (p.kind !== 'user' || !p.groups.some((g) => groups.has(g))) {
    return deny(`break-glass is only for members of ${bg.groups.join(', ')}; ${describe(p)} is not one`);
  }
  if (input.reason === undefined || input.reason.trim() === '') return deny('reason is required for break-glass');
  // Capped at the max; an extension, so that the grant's whole window stays within it.
  const cap = bg.maxDurationSeconds - (input.extending?.windowSeconds ?? 0);
  if (cap <= 0) return deny(`the grant is already as long as the ${formatDuration(bg.maxDurationSeconds)} break-glass max: request new access when it ends`);
  const asked = input.durationSeconds ?? cap;
  return { kind: 'break_glass', durationSeconds: Math.min(asked, cap) };
}

function extensionTooLong(windowSeconds: number, bySeconds: number, maxSeconds: number, rule: string): string {
  return `extending a ${formatDuration(windowSeconds)} grant by ${formatDuration(bySeconds)} would make it ${formatDuration(windowSeconds + bySeconds)} long, ` +
    `more than the ${formatDuration(maxSeconds)} max of rule ${rule}`;
}

/**
 * Whether `principal` may still ask for `role` on `resource` in the policy in force: some rule for
 * them (its who) offers it. Approving a request checks it, so that a requester moved out of the
 * rule's groups since asking is not granted on an old request (review 2026-12-02). Any such rule
 * will do (a rule renamed meanwhile made the request impossible to approve); the rules' conditions
 * are not run again: they judged the request when it was made.
 */
export function mayStillAsk(policy: Policy, request: { resource: string; role: string }, principal: Principal): boolean {
  const rules = compiledPolicy(policy).candidates.get(request.resource)?.get(request.role) ?? NO_RULES;
  return rules.some((r) => whoMatches(r, principal));
}

function whoMatches(rule: CompiledRule, p: Principal): boolean {
  if (p.kind === 'workload') return rule.workloads.has(p.name);
  if (rule.users.has(p.name)) return true;
  for (const g of p.groups) if (rule.groups.has(g)) return true;
  return false;
}

function describe(p: Principal): string {
  const who = `${p.kind} ${p.name}`;
  if (p.groups.length === 0) return `${who} (no groups)`;
  const shown = p.groups.slice(0, MAX_GROUPS_SHOWN).join(', ');
  const more = p.groups.length > MAX_GROUPS_SHOWN ? ` and ${p.groups.length - MAX_GROUPS_SHOWN} more` : '';
  return `${who} (groups ${shown}${more})`;
}

/** Defends the evaluator against input the API layer should already have refused. */
function inputProblem(input: DecisionInput): string | undefined {
  const nameError = checkName(input.resource) ?? checkName(input.role);
  if (nameError) return nameError;
  if (!(input.now instanceof Date) || Number.isNaN(input.now.getTime())) return 'the decision time is not a valid date';
  const d = input.durationSeconds;
  if (d !== undefined && (!Number.isSafeInteger(d) || d <= 0 || d > MAX_REQUEST_SECONDS)) {
    return `duration must be a positive whole number of seconds up to ${formatDuration(MAX_REQUEST_SECONDS)}`;
  }
  if (input.reason !== undefined && input.reason !== '') {
    const e = checkReason(input.reason);
    if (e) return e;
  }
  if (input.ticket !== undefined) return checkTicket(input.ticket);
  return undefined;
}

function deny(...reasons: string[]): Decision {
  return { kind: 'denied', reasons };
}

// Callers that import the whole decision surface from here get the approval check too.
export { canApprove } from './approve.js';
