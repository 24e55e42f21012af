import { AppError, badRequest, conflict, notFound } from '../domain/errors.js';
import { newGrantId, newPrincipalName, newRequestId, newReviewId, newSecret } from '../domain/ids.js';
import { isHolder, workloadJob, type Principal } from '../domain/principal.js';
import { requestTransition, type RequestEvent } from '../domain/request.js';
import { canApprove } from '../policy/approve.js';
import { evaluate, mayStillAsk } from '../policy/evaluator.js';
import type { Decision, MfaRequirement } from '../policy/types.js';
import type { Executor, Tx } from '../store/db.js';
import { getGrant, insertGrant, listGrants, type GrantRow } from '../store/grants.js';
import { getUserById, toPrincipal } from '../store/users.js';
import {
  getRequest, insertRequest, listApprovals, listRequests, recordApprovalOnce, transitionRequest, type RequestRow,
} from '../store/requests.js';
import { inTx, type AccessDeps, type AuditEvent } from './context.js';
import { samePerson } from './person.js';
import { activateGrant } from './grant-lifecycle.js';
import { applyExtension } from './grants.js';

export interface NewRequest {
  resource: string;
  role: string;
  durationSeconds?: number | undefined;
  reason: string;
  ticket?: string | undefined;
  startAt?: Date | undefined;
  breakGlass?: boolean | undefined;
}

export interface RequestOutcome {
  request: RequestRow;
  grant?: GrantRow | undefined;
}

/** The longest a start may be scheduled ahead. */
const MAX_SCHEDULE_AHEAD_MS = 30 * 86400_000;

function requireFreshMfa(principal: Principal, mfa: MfaRequirement, action: 'request' | 'approve', nowMs: number): void {
  if (!mfa[action]) return;
  if (principal.mfaAt === undefined || nowMs - principal.mfaAt > mfa.freshnessSeconds * 1000) {
    throw new AppError('mfa_required', `policy requires a fresh MFA code (within ${mfa.freshnessSeconds}s) to ${action}`, {
      freshnessSeconds: mfa.freshnessSeconds,
    });
  }
}

/**
 * A principal asks for access. The policy decides; the request and every consequence (grant,
 * review item, alerts) are stored with their audit events in one transaction; an immediately
 * startable grant is then provisioned inline so credentials come back in the same call.
 */
export async function createRequest(deps: AccessDeps, principal: Principal, input: NewRequest): Promise<RequestOutcome> {
  const policy = deps.policy();
  const now = deps.clock.now();
  const nowMs = now.getTime();
  const resource = policy.resources.get(input.resource);
  if (!resource) throw notFound(`no resource named ${JSON.stringify(input.resource)}`);
  if (!resource.roles.has(input.role)) {
    throw badRequest(`resource ${resource.name} has no role ${JSON.stringify(input.role)} (roles: ${[...resource.roles.keys()].join(', ')})`);
  }
  if (input.startAt) {
    const at = input.startAt.getTime();
    if (at < nowMs - 60_000) throw badRequest('start time is in the past');
    if (at > nowMs + MAX_SCHEDULE_AHEAD_MS) throw badRequest('start time is more than 30 days ahead');
  }
  const outcome = await inTx(deps, async (tx, audit) => {
    const me = await lockedUser(deps, tx, principal.id, 'update');
    if (!me || me.disabled !== 0) throw new AppError('forbidden', `${principal.name} is disabled: it cannot request access`);
    // A workload's grants and requests are its job's (holderBinding): another job of the same
    // workload name neither extends nor collides with them.
    const binding = principal.holderBinding ?? null;
    const held = await listGrants(tx, {
      userId: principal.id, holderBinding: binding, resource: input.resource, role: input.role, statuses: ['scheduled', 'activating', 'active'], limit: 1,
    });
    const pendingSame = (await listRequests(tx, { requesterId: principal.id, holderBinding: binding, status: 'pending', limit: 200 }))
      .find((r) => r.resource === input.resource && r.role === input.role);
    if (pendingSame) throw conflict(`you already have a pending request ${pendingSame.id} for ${input.role} on ${input.resource}`, { requestId: pendingSame.id });
    const live = held[0];
    // Only an active grant can be extended; one still starting answers 409 rather than an
    // approved extension that could not be applied.
    if (live && live.status !== 'active') {
      throw conflict(`you already have grant ${live.id} for ${input.role} on ${input.resource} (${live.status}); extend it once it is active`, { grantId: live.id });
    }
    const extending = live;
    if (extending && input.startAt) throw badRequest('an extension of a grant you hold cannot have a start time');

    // An extension is judged on the grant's whole window after it, not on the added time alone.
    const decision = evaluate(policy, {
      principal, resource: input.resource, role: input.role, durationSeconds: input.durationSeconds,
      reason: input.reason, ticket: input.ticket, breakGlass: input.breakGlass, now,
      extending: extending ? { windowSeconds: windowSeconds(extending) } : undefined,
    });
    if (decision.kind === 'auto_approved' || decision.kind === 'needs_approval') {
      requireFreshMfa(principal, decision.mfa, 'request', nowMs);
    }

    const durationSeconds = decision.kind === 'denied' ? input.durationSeconds ?? 0 : decision.durationSeconds;
    const status = decision.kind === 'denied' ? 'denied' : decision.kind === 'needs_approval' ? 'pending' : 'approved';
    const request: RequestRow = {
      id: newRequestId(),
      requester_id: principal.id,
      resource: input.resource,
      role: input.role,
      duration_s: durationSeconds,
      reason: input.reason,
      ticket: input.ticket ?? null,
      start_at: input.startAt ? input.startAt.getTime() : null,
      status,
      kind: extending ? 'extension' : decision.kind === 'break_glass' ? 'break_glass' : 'new',
      extends_grant_id: extending?.id ?? null,
      decision: JSON.stringify(decision),
      rule: 'rule' in decision ? decision.rule : null,
      policy_version: policy.version,
      approvals_required: decision.kind === 'needs_approval' ? decision.approvals : 0,
      approver_groups: JSON.stringify(decision.kind === 'needs_approval' ? decision.approverGroups : []),
      pending_expires_at: decision.kind === 'needs_approval' ? nowMs + decision.pendingTtlSeconds * 1000 : null,
      decided_at: status === 'pending' ? null : nowMs,
      decided_by: status === 'pending' ? null : 'policy',
      decision_note: decision.kind === 'denied' ? decision.reasons.join('; ') : null,
      grant_id: null,
      created_at: nowMs,
      updated_at: nowMs,
      holder_binding: binding,
    };
    await insertRequest(tx, request);
    const base = { actor: principal.name, requestId: request.id, at: nowMs };
    audit({ ...base, type: 'request.created', data: {
      requester: principal.name, requesterKind: principal.kind, resource: request.resource, role: request.role,
      durationSeconds, reason: request.reason, ticket: request.ticket, startAt: request.start_at, kind: request.kind,
      extendsGrant: request.extends_grant_id, policyVersion: policy.version, decision: decision.kind, ...workloadJob(principal),
    } });
    switch (decision.kind) {
      case 'denied':
        audit({ ...base, actor: 'policy', type: 'request.denied', data: { reasons: decision.reasons, by: 'policy' } });
        return { request };
      case 'needs_approval':
        audit({ ...base, actor: 'policy', type: 'request.pending', data: {
          rule: decision.rule, approvals: decision.approvals, approverGroups: decision.approverGroups, pendingExpiresAt: request.pending_expires_at,
        } });
        return { request };
      case 'auto_approved':
      case 'break_glass': {
        audit({ ...base, actor: 'policy', type: 'request.approved', data: { by: 'policy', rule: 'rule' in decision ? decision.rule : null, breakGlass: decision.kind === 'break_glass' } });
        if (decision.kind === 'break_glass') {
          const reviewId = newReviewId();
          await tx.insertInto('reviews').values({
            id: reviewId, kind: 'break_glass', request_id: request.id, grant_id: null, status: 'open', opened_at: nowMs, closed_at: null, closed_by: null, note: null,
          }).execute();
          audit({ ...base, type: 'alert.break_glass', data: {
            message: `${principal.name} used break-glass access to ${request.role} on ${request.resource}`, reviewId, reason: request.reason,
          } });
        }
        return { request: await approveInto(deps, tx, request, durationSeconds, audit) };
      }
    }
    return { request };
  });
  return finishApproved(deps, outcome.request);
}

/** A live grant's current window (start to end), in whole seconds. */
function windowSeconds(grant: GrantRow): number {
  return grant.starts_at === null || grant.expires_at === null ? grant.duration_s : Math.round((grant.expires_at - grant.starts_at) / 1000);
}

/** After an approved request is committed: provision a new grant inline, or apply an extension. */
async function finishApproved(deps: AccessDeps, request: RequestRow): Promise<RequestOutcome> {
  if (request.status !== 'approved' || !request.grant_id) return { request };
  if (request.kind === 'extension') {
    try {
      return { request, grant: await applyExtension(deps, request) };
    } catch (err) {
      await inTx(deps, async (_tx, audit) => {
        audit({ type: 'grant.extension_failed', actor: 'system', requestId: request.id, grantId: request.grant_id ?? undefined, at: deps.clock.now(),
          data: { error: err instanceof Error ? err.message : String(err) } });
      });
      throw err;
    }
  }
  const recorded = await getGrant(deps.store.db, request.grant_id);
  if (recorded?.status === 'scheduled') return { request, grant: recorded };
  const grant = await activateGrant(deps, request.grant_id);
  return { request, grant: grant ?? recorded };
}

/**
 * Within the approving transaction: mark approved, create the grant (or point at the grant it
 * extends). Principal name and secret are chosen and recorded here, before any target sees them.
 */
async function approveInto(
  deps: AccessDeps,
  tx: Tx,
  request: RequestRow,
  durationSeconds: number,
  audit: (...events: AuditEvent[]) => void,
): Promise<RequestRow> {
  const nowMs = deps.clock.now().getTime();
  if (request.kind === 'extension' && request.extends_grant_id) {
    return (await tx.updateTable('requests').set({ grant_id: request.extends_grant_id, duration_s: durationSeconds, updated_at: nowMs })
      .where('id', '=', request.id).returningAll().executeTakeFirstOrThrow());
  }
  const grantId = newGrantId();
  const scheduled = request.start_at !== null && request.start_at > nowMs;
  // Approved after its requested start: the window approved was start..start + duration, and it
  // ends then (review 2026-12-02: it ran the full duration from the approval, past that window).
  const windowEnd = (request.start_at !== null && !scheduled ? request.start_at : nowMs) + durationSeconds * 1000;
  const grant: GrantRow = {
    id: grantId,
    request_id: request.id,
    user_id: request.requester_id,
    resource: request.resource,
    role: request.role,
    // An immediate grant is recorded as activating with its window in this same transaction
    // (the intent); provisioning follows right after commit.
    status: scheduled ? 'scheduled' : 'activating',
    principal: newPrincipalName(),
    secret_enc: deps.sealer.seal(newSecret(), grantId),
    duration_s: durationSeconds,
    starts_at: scheduled ? null : nowMs,
    expires_at: scheduled ? null : windowEnd,
    end_reason: null,
    ended_at: null,
    revoke_attempts: 0,
    last_error: null,
    due_at: scheduled ? request.start_at : nowMs,
    // Immediate grants are leased to this instance, which provisions them right after commit.
    lease_owner: scheduled ? null : deps.instanceId,
    lease_until: scheduled ? null : nowMs + deps.leaseMs,
    created_at: nowMs,
    updated_at: nowMs,
    holder_binding: request.holder_binding,
    target_pending_at: null,
  };
  await insertGrant(tx, grant);
  await tx.updateTable('reviews').set({ grant_id: grantId }).where('request_id', '=', request.id).execute();
  audit({ type: 'grant.created', actor: 'system', requestId: request.id, grantId, at: nowMs, data: {
    resource: grant.resource, role: grant.role, principal: grant.principal, durationSeconds, scheduledStart: scheduled ? request.start_at : null,
  } });
  if (!scheduled) {
    audit({ type: 'grant.activating', actor: 'system', requestId: request.id, grantId, at: nowMs, data: {
      resource: grant.resource, role: grant.role, principal: grant.principal, startsAt: grant.starts_at, expiresAt: grant.expires_at,
    } });
  }
  if (scheduled) deps.wake(request.start_at!);
  return (await tx.updateTable('requests').set({ grant_id: grantId, duration_s: durationSeconds, updated_at: nowMs })
    .where('id', '=', request.id).returningAll().executeTakeFirstOrThrow());
}

/**
 * The request, locked for this transaction (PostgreSQL `FOR UPDATE`; a SQLite transaction holds
 * the write lock already), if `event` may happen to it now. Two approvers voting at once on
 * PostgreSQL each saw only their own vote and left a 2-of-2 request pending for good; now the
 * second waits for the first. A pending request whose approval window has passed is not
 * approved or denied, even if the scheduler has not yet marked it expired.
 */
async function loadPending(deps: AccessDeps, tx: Tx, id: string, event: RequestEvent): Promise<RequestRow> {
  let q = tx.selectFrom('requests').selectAll().where('id', '=', id);
  if (deps.store.dialect === 'postgres') q = q.forUpdate();
  const request = await q.executeTakeFirst();
  if (!request) throw notFound(`no request ${id}`);
  checkPendingEvent(request, event, deps.clock.now().getTime());
  return request;
}

function checkPendingEvent(request: RequestRow, event: RequestEvent, nowMs: number): void {
  const t = requestTransition(request.status, event);
  if (!t.ok) throw conflict(`request ${request.id} is ${request.status}: ${t.message}`, { status: request.status });
  if ((event === 'approve' || event === 'deny') && request.pending_expires_at !== null && request.pending_expires_at <= nowMs) {
    throw conflict(`request ${request.id} lapsed at ${new Date(request.pending_expires_at).toISOString()}: it can no longer be decided`, { status: 'expired' });
  }
}

/**
 * An approver votes. Never the requester; only members of the rule's approver groups; each
 * approver counts once (recordApprovalOnce); an approver may shorten, never lengthen.
 * The threshold-reaching vote approves the request and creates the grant in the same transaction.
 */
export async function approveRequest(
  deps: AccessDeps,
  approver: Principal,
  id: string,
  opts: { durationSeconds?: number | undefined; comment?: string | undefined },
): Promise<RequestOutcome> {
  const nowMs = deps.clock.now().getTime();
  const request = await checkDecider(deps, approver, id, 'approve');
  const decision = JSON.parse(request.decision) as Decision;
  if (decision.kind === 'needs_approval') requireFreshMfa(approver, decision.mfa, 'approve', nowMs);
  if (opts.durationSeconds !== undefined && opts.durationSeconds > request.duration_s) {
    throw badRequest(`an approver may shorten the duration, not extend it (requested ${request.duration_s}s)`);
  }
  const result = await inTx(deps, async (tx, audit) => {
    const locked = await loadPending(deps, tx, id, 'approve');
    // Checked again under the lock: the requester may have been disabled since checkDecider.
    const requester = await lockedUser(deps, tx, locked.requester_id);
    if (!requester || requester.disabled !== 0) throw conflict(`the requester of ${id} is disabled: the request cannot be approved`);
    // A break-glass request has no approval; any other is approved only while its rule is still
    // there for the requester (moved out of its groups since asking, they are not granted).
    if (locked.kind !== 'break_glass' && !mayStillAsk(deps.policy(), { resource: locked.resource, role: locked.role }, toPrincipal(requester))) {
      throw conflict(`the requester of ${id} may no longer ask for ${locked.role} on ${locked.resource}: the request cannot be approved`);
    }
    // A window that has passed whole cannot be granted (fourth review: "approved" for a grant that
    // ended before it started).
    if (locked.start_at !== null && locked.start_at + locked.duration_s * 1000 <= nowMs) {
      throw conflict(`the window request ${id} asked for (from ${new Date(locked.start_at).toISOString()}, ${locked.duration_s} s) has passed: ask again`);
    }
    for (const v of await listApprovals(tx, id)) {
      if (v.approver_id !== approver.id && await samePerson(tx, v.approver_id, approver)) {
        throw conflict(`you have already approved request ${id} under another account`);
      }
    }
    const recorded = await recordApprovalOnce(tx, {
      request_id: id, approver_id: approver.id, duration_s: opts.durationSeconds ?? null, comment: opts.comment ?? null, at: nowMs,
    });
    if (!recorded) throw conflict(`you have already approved request ${id}`);
    const cast = await listApprovals(tx, id);
    // Only the votes of people who may still approve count: one removed from the approver groups
    // (or disabled) since voting no longer does (review 2026-12-02: such a vote made the second
    // of two). Each is checked against the policy in force now, as the new vote was.
    const votes: typeof cast = [];
    for (const v of cast) {
      const who = v.approver_id === approver.id ? undefined : await getUserById(tx, v.approver_id);
      const eligible = v.approver_id === approver.id || (who !== undefined && who.disabled === 0 && canApprove(deps.policy(), {
        requesterId: locked.requester_id, ruleName: locked.rule ?? '', approverGroups: JSON.parse(locked.approver_groups) as string[],
      }, toPrincipal(who)).ok);
      if (eligible) votes.push(v);
    }
    audit({ type: 'request.approval_recorded', actor: approver.name, requestId: id, at: nowMs, data: {
      approvals: votes.length, required: request.approvals_required, durationSeconds: opts.durationSeconds ?? null, comment: opts.comment ?? null,
      ...(votes.length < cast.length ? { votesNoLongerCounted: cast.filter((v) => !votes.includes(v)).map((v) => v.approver_id) } : {}),
    } });
    if (votes.length < request.approvals_required) return (await getRequest(tx, id))!;
    const duration = Math.min(request.duration_s, ...votes.map((v) => v.duration_s ?? request.duration_s));
    const approved = await transitionRequest(tx, id, 'pending', 'approved', {
      decided_at: nowMs, decided_by: votes.map((v) => v.approver_id).join(','), decision_note: opts.comment ?? null, updated_at: nowMs,
    });
    if (!approved) throw conflict(`request ${id} changed while approving`);
    audit({ type: 'request.approved', actor: approver.name, requestId: id, at: nowMs, data: {
      by: votes.map((v) => v.approver_id), durationSeconds: duration, shortened: duration < request.duration_s,
    } });
    return approveInto(deps, tx, approved, duration, audit);
  });
  return finishApproved(deps, result);
}

/**
 * A user row, read so that disabling the user waits for this transaction (PostgreSQL `FOR SHARE`;
 * a SQLite transaction holds the write lock already): an approval or auto-approved request that
 * raced the user's removal from the policy either sees them disabled, or commits its grant before
 * the removal does, so the offboarding sweep that follows it finds the grant (second review: 8 of
 * 40 such races left an active grant of a disabled user).
 */
/**
 * The user row, locked on PostgreSQL (SQLite transactions are IMMEDIATE, one writer at a time):
 * shared by votes (so disabling the user waits for them), exclusive for a new request, so two
 * requests of one user run one after the other and the second sees the first's grant (a review
 * got three live grants for one user, resource and role from four parallel requests, 2026-12-02).
 */
async function lockedUser(deps: AccessDeps, tx: Tx, id: string, mode: 'share' | 'update' = 'share') {
  let q = tx.selectFrom('users').selectAll().where('id', '=', id);
  if (deps.store.dialect === 'postgres') q = mode === 'update' ? q.forUpdate() : q.forShare();
  return q.executeTakeFirst();
}

async function requesterDisabled(ex: Executor, request: RequestRow): Promise<boolean> {
  const requester = await getUserById(ex, request.requester_id);
  return !requester || requester.disabled !== 0;
}

/**
 * Who may decide on a pending request: never its requester; otherwise a member of the approver
 * groups recorded on it (admins may also deny). A refusal is audited, then thrown.
 */
async function checkDecider(deps: AccessDeps, actor: Principal, id: string, action: 'approve' | 'deny'): Promise<RequestRow> {
  const request = await getRequest(deps.store.db, id);
  if (!request) throw notFound(`no request ${id}`);
  checkPendingEvent(request, action, deps.clock.now().getTime());
  let refusal: AppError | undefined;
  if (action === 'approve' && await requesterDisabled(deps.store.db, request)) {
    refusal = conflict(`the requester of ${id} is disabled: the request cannot be approved`);
  } else if (await samePerson(deps.store.db, request.requester_id, actor)) {
    refusal = action === 'approve'
      ? new AppError('self_approval', 'you cannot approve your own request')
      : new AppError('forbidden', 'you cannot deny your own request: cancel it instead');
  } else if (!(action === 'deny' && actor.isAdmin)) {
    const verdict = canApprove(deps.policy(), {
      requesterId: request.requester_id, ruleName: request.rule ?? '', approverGroups: JSON.parse(request.approver_groups) as string[],
    }, actor);
    if (!verdict.ok) refusal = new AppError('forbidden', verdict.reason);
  }
  if (refusal) {
    const err = refusal;
    await inTx(deps, async (_tx, audit) => {
      audit({ type: `request.${action}_refused`, actor: actor.name, requestId: id, at: deps.clock.now(), data: { code: err.code, reason: err.message } });
    });
    throw err;
  }
  return request;
}

/** Deny: by an eligible approver or an admin; the reason is required and recorded. */
export async function denyRequest(deps: AccessDeps, actor: Principal, id: string, reason: string): Promise<RequestRow> {
  const nowMs = deps.clock.now().getTime();
  await checkDecider(deps, actor, id, 'deny');
  return inTx(deps, async (tx, audit) => {
    await loadPending(deps, tx, id, 'deny');
    const row = await transitionRequest(tx, id, 'pending', 'denied', { decided_at: nowMs, decided_by: actor.id, decision_note: reason, updated_at: nowMs });
    if (!row) throw conflict(`request ${id} changed while denying`);
    audit({ type: 'request.denied', actor: actor.name, requestId: id, at: nowMs, data: { by: actor.name, reason } });
    return row;
  });
}

/** Cancel: the requester withdraws a pending request (or an admin does). */
export async function cancelRequest(deps: AccessDeps, actor: Principal, id: string): Promise<RequestRow> {
  const nowMs = deps.clock.now().getTime();
  return inTx(deps, async (tx, audit) => {
    const request = await loadPending(deps, tx, id, 'cancel');
    if (!isHolder(actor, { userId: request.requester_id, binding: request.holder_binding }) && !actor.isAdmin) {
      throw new AppError('forbidden', 'only the requester or an admin can cancel a request');
    }
    const row = await transitionRequest(tx, id, 'pending', 'cancelled', { decided_at: nowMs, decided_by: actor.id, updated_at: nowMs });
    if (!row) throw conflict(`request ${id} changed while cancelling`);
    audit({ type: 'request.cancelled', actor: actor.name, requestId: id, at: nowMs, data: {} });
    return row;
  });
}

/** Pending requests past their TTL expire (scheduler). Returns how many did. */
export async function expirePending(deps: AccessDeps, due: readonly RequestRow[]): Promise<number> {
  if (due.length === 0) return 0;
  const nowMs = deps.clock.now().getTime();
  return inTx(deps, async (tx, audit) => {
    let n = 0;
    for (const r of due) {
      const row = await transitionRequest(tx, r.id, 'pending', 'expired', { decided_at: nowMs, decided_by: 'system', updated_at: nowMs });
      if (!row) continue;
      n++;
      audit({ type: 'request.expired', actor: 'system', requestId: r.id, at: nowMs, data: { pendingExpiresAt: r.pending_expires_at } });
    }
    return n;
  });
}
