import { AppError, conflict, notFound } from '../domain/errors.js';
import { isHolder, type Principal } from '../domain/principal.js';
import { ProviderError } from '../providers/provider.js';
import { getGrant, tryLeaseGrant, type GrantRow } from '../store/grants.js';
import type { RequestRow } from '../store/requests.js';
import { samePerson } from './person.js';
import { inTx, type AccessDeps } from './context.js';
import { beginEnd, revokeLeased } from './grant-lifecycle.js';

async function ownGrant(deps: AccessDeps, actor: Principal, id: string): Promise<GrantRow> {
  const grant = await getGrant(deps.store.db, id);
  // Someone else's grant is "not found" to a non-admin: ids are not an oracle. A workload's grant
  // is its job's alone: another job mapping to the same workload name is someone else.
  if (!grant || (!holdsGrant(actor, grant) && !actor.isAdmin)) throw notFound(`no grant ${id}`);
  return grant;
}

/** Whether `p` holds `grant` (same user and, for a workload, the same job). */
export function holdsGrant(p: Principal, grant: GrantRow): boolean {
  return isHolder(p, { userId: grant.user_id, binding: grant.holder_binding });
}

export async function readGrant(deps: AccessDeps, actor: Principal, id: string): Promise<GrantRow> {
  return ownGrant(deps, actor, id);
}

/**
 * Early revocation by the grant's holder or an admin. Recorded as intent first (revoking, the
 * gateway cuts sessions at once), then removed from the target inline when we can take the
 * lease; otherwise the lease holder / scheduler finishes within a tick.
 */
export async function revokeGrant(deps: AccessDeps, actor: Principal, id: string, reason: string | undefined): Promise<GrantRow> {
  const grant = await ownGrant(deps, actor, id);
  if (!['scheduled', 'activating', 'active'].includes(grant.status)) {
    throw conflict(`grant ${id} is ${grant.status.replace('_', ' ')}: it cannot be revoked`, { status: grant.status });
  }
  const moved = await beginEnd(deps, [grant], 'revoked', actor.name, { reason: reason ?? null, by: actor.name });
  if (moved.length === 0) {
    const now = await getGrant(deps.store.db, id);
    throw conflict(`grant ${id} is ${now?.status ?? 'gone'}: it cannot be revoked`);
  }
  const nowMs = deps.clock.now().getTime();
  const leased = await tryLeaseGrant(deps.store.db, id, { now: nowMs, owner: deps.instanceId, leaseMs: deps.leaseMs });
  if (leased) await revokeLeased(deps, [id]);
  else deps.wake(nowMs);
  return (await getGrant(deps.store.db, id))!;
}

/**
 * Applies an approved extension request to the grant it extends: the target first (so the
 * store never promises more than the target allows), then the store, then the gateway.
 * The new end is the grant's end as it is now plus the approved duration, and the grant's whole
 * window after it must still fit the max of the rule the request was decided under (checked when
 * the request was made, and again here: extensions approved side by side each fit on their own).
 * The store is moved only from the end this call read (compare-and-set), so two extensions
 * applied at once both count, one after the other, instead of the later write undoing the earlier
 * (a second review pushed a 1 h max grant to 115 min, and saw one move its end back).
 */
export async function applyExtension(deps: AccessDeps, request: RequestRow): Promise<GrantRow> {
  // One extension of a grant at a time in this process (the usual case: a single instance, or
  // the instance the requests reached); across instances the compare-and-set below decides.
  const id = request.extends_grant_id ?? '';
  const before = extending.get(id) ?? Promise.resolve();
  const mine = before.then(() => applyExtensionNow(deps, request));
  const settled = mine.then(() => undefined, () => undefined);
  extending.set(id, settled);
  void settled.then(() => {
    if (extending.get(id) === settled) extending.delete(id);
  });
  return mine;
}

const extending = new Map<string, Promise<void>>();

async function applyExtensionNow(deps: AccessDeps, request: RequestRow): Promise<GrantRow> {
  const provider = () => {
    const p = deps.providers.get(request.resource);
    if (!p) throw new AppError('target_unavailable', `resource ${request.resource} is not in the policy`);
    return p;
  };
  const onTarget = async (principal: string, at: number) => {
    try {
      await provider().extend(principal, new Date(at));
    } catch (err) {
      throw new AppError('target_unavailable', `could not extend on ${request.resource}: ${err instanceof ProviderError ? err.message : 'target error'}`);
    }
  };
  return attemptExtension(deps, request, onTarget);
}

/**
 * Sets the target's end to the store's, until the store's end reads the same before and after
 * (another instance may move it meanwhile). Best effort; returns whether the target was told.
 */
export async function alignTargetEnd(deps: AccessDeps, grantId: string, onTarget: (principal: string, at: number) => Promise<void>): Promise<boolean> {
  const end = async () => {
    const g = await getGrant(deps.store.db, grantId).catch(() => undefined);
    return g?.status === 'active' && g.expires_at !== null ? { principal: g.principal, at: g.expires_at } : undefined;
  };
  let now = await end();
  for (let i = 0; i < 3 && now !== undefined; i++) {
    const told = await onTarget(now.principal, now.at).then(() => true, () => false);
    const again = await end();
    if (told && again?.at === now.at) {
      // The store's end and the target's agree: nothing is waiting for the target any more.
      await deps.store.db.updateTable('grants').set({ target_pending_at: null })
        .where('id', '=', grantId).where('expires_at', '=', now.at).execute();
      return true;
    }
    now = again;
  }
  return now === undefined;
}

/**
 * The store first, then the target: the target never allows more than the store says, even if
 * hallpass crashes in between (review 2026-12-02: with the target moved first, a crash before the
 * store's write left the role's VALID UNTIL 30 minutes past the grant's end, and the credential
 * logged in after it while hallpass was down). A crash after the store's write leaves the target
 * short of the store (`target_pending_at` says so) until the reconciler sets it
 * (reconcileTargetEnds). A failed target call puts the store back.
 */
async function attemptExtension(
  deps: AccessDeps,
  request: RequestRow,
  onTarget: (principal: string, at: number) => Promise<void>,
): Promise<GrantRow> {
  for (let attempt = 0; ; attempt++) {
    const grant = await getGrant(deps.store.db, request.extends_grant_id ?? '');
    if (!grant || grant.status !== 'active' || grant.expires_at === null || grant.starts_at === null) {
      throw conflict(`the grant this request extends is ${grant?.status ?? 'gone'}; request a new grant instead`);
    }
    if (grant.user_id !== request.requester_id || grant.holder_binding !== request.holder_binding) {
      throw conflict(`grant ${grant.id} is not held by the requester of ${request.id}`);
    }
    const oldExpires = grant.expires_at;
    const newExpires = oldExpires + request.duration_s * 1000;
    const max = maxWindowSeconds(deps, request);
    if ((newExpires - grant.starts_at) / 1000 > max) {
      throw conflict(`extending grant ${grant.id} by ${request.duration_s}s would make it longer than the ${max}s its rule allows (another extension was applied first)`);
    }
    const nowMs = deps.clock.now().getTime();
    const row = await inTx(deps, async (tx, audit) => {
      const updated = await tx.updateTable('grants')
        .set({ expires_at: newExpires, due_at: newExpires, duration_s: grant.duration_s + request.duration_s, updated_at: nowMs, target_pending_at: nowMs })
        .where('id', '=', grant.id).where('status', '=', 'active').where('expires_at', '=', oldExpires).where('expires_at', '>', nowMs)
        .returningAll().executeTakeFirst();
      if (!updated) return undefined;
      audit({ type: 'grant.extended', actor: 'system', grantId: grant.id, requestId: request.id, at: nowMs, data: {
        resource: grant.resource, role: grant.role, previousExpiresAt: oldExpires, expiresAt: newExpires, bySeconds: request.duration_s,
      } });
      return updated;
    });
    if (!row) {
      // The end moved (another instance's extension) or the grant ended meanwhile: start over from
      // the store's end.
      if (attempt >= MAX_EXTENSION_ATTEMPTS) throw conflict(`grant ${grant.id} changed too often to apply the extension`);
      // Extensions racing each other: a random pause lets one of them through at a time (with five
      // straight attempts, a third review saw 3 to 5 of 12 fitting extensions refused).
      await new Promise((r) => setTimeout(r, Math.random() * 20 * (attempt + 1)));
      continue;
    }
    try {
      await onTarget(grant.principal, newExpires);
    } catch (e) {
      // The target refused: the store goes back to the end the target still has (unless another
      // extension moved it meanwhile), and the target is set to whatever the store then says.
      const at = deps.clock.now().getTime();
      await inTx(deps, async (tx, audit) => {
        const back = await tx.updateTable('grants')
          .set({ expires_at: oldExpires, due_at: oldExpires, duration_s: grant.duration_s, updated_at: at })
          .where('id', '=', grant.id).where('status', '=', 'active').where('expires_at', '=', newExpires)
          .returningAll().executeTakeFirst();
        if (back) {
          audit({ type: 'grant.extension_reverted', actor: 'system', grantId: grant.id, requestId: request.id, at, data: {
            resource: grant.resource, expiresAt: oldExpires, notApplied: newExpires, error: e instanceof Error ? e.message : String(e),
          } });
        }
      });
      await alignTargetEnd(deps, grant.id, onTarget);
      throw e;
    }
    // Another extension may have moved the store's end since our write; the target follows the store.
    await alignTargetEnd(deps, grant.id, onTarget);
    const now = (await getGrant(deps.store.db, grant.id)) ?? row;
    if (now.status === 'active' && now.expires_at !== null) {
      await deps.events.publish({ type: 'extended', grantId: now.id, resource: now.resource, expiresAt: now.expires_at });
      deps.wake(now.expires_at);
    }
    return now;
  }
}

/**
 * Grants whose store end moved and whose target was not told within a minute (a crash between the
 * two writes of an extension): the target is set to the store's end. The reconciler runs it.
 */
export async function reconcileTargetEnds(deps: AccessDeps): Promise<number> {
  const now = deps.clock.now().getTime();
  const pending = await deps.store.db.selectFrom('grants').select(['id', 'resource', 'status'])
    .where('target_pending_at', 'is not', null).where('target_pending_at', '<', now - 60_000).limit(500).execute();
  let fixed = 0;
  for (const g of pending) {
    const provider = deps.providers.get(g.resource);
    if (g.status !== 'active') {
      // Ending or ended: its revocation removes the principal; nothing to set.
      await deps.store.db.updateTable('grants').set({ target_pending_at: null }).where('id', '=', g.id).execute();
      continue;
    }
    if (!provider) continue;
    if (await alignTargetEnd(deps, g.id, (principal, at) => provider.extend(principal, new Date(at)))) fixed++;
  }
  return fixed;
}

const MAX_EXTENSION_ATTEMPTS = 30;

/** The longest window (seconds) the rule a request was decided under allows a grant, as the policy says now. */
function maxWindowSeconds(deps: AccessDeps, request: RequestRow): number {
  const policy = deps.policy();
  if (request.rule === null) {
    // Break-glass: its own max.
    const bg = policy.breakGlass;
    if (!bg) throw conflict('break-glass is no longer in the policy');
    return bg.maxDurationSeconds;
  }
  const rule = policy.rules.find((r) => r.name === request.rule);
  if (!rule) throw conflict(`rule ${String(request.rule)} is no longer in the policy`);
  return rule.maxDurationSeconds;
}

/** Admin closes a break-glass review item. */
export async function closeReview(deps: AccessDeps, admin: Principal, reviewId: string, note: string): Promise<void> {
  if (!admin.isAdmin) throw new AppError('forbidden', 'only an admin can close a review');
  const nowMs = deps.clock.now().getTime();
  // Whoever used the break-glass access does not close its review, as nobody approves their own
  // request (review 2026-12-02: an admin in the break-glass group closed their own). The refusal
  // is on the record.
  const of = await deps.store.db.selectFrom('reviews').innerJoin('requests', 'requests.id', 'reviews.request_id')
    .select(['requests.requester_id', 'reviews.request_id']).where('reviews.id', '=', reviewId).executeTakeFirst();
  if (of !== undefined && await samePerson(deps.store.db, of.requester_id, admin)) {
    await inTx(deps, async (_tx, audit) => {
      audit({ type: 'review.close_refused', actor: admin.name, requestId: of.request_id, at: nowMs, data: { reviewId, code: 'own_access' } });
    });
    throw new AppError('forbidden', 'you cannot close the review of your own break-glass access: another admin must');
  }
  await inTx(deps, async (tx, audit) => {
    const r = await tx.updateTable('reviews').set({ status: 'closed', closed_at: nowMs, closed_by: admin.id, note })
      .where('id', '=', reviewId).where('status', '=', 'open').returningAll().executeTakeFirst();
    if (!r) {
      const exists = await tx.selectFrom('reviews').select('status').where('id', '=', reviewId).executeTakeFirst();
      throw exists ? conflict(`review ${reviewId} is already closed`) : notFound(`no review ${reviewId}`);
    }
    audit({ type: 'review.closed', actor: admin.name, requestId: r.request_id, grantId: r.grant_id ?? undefined, at: nowMs, data: { reviewId, note } });
  });
}


