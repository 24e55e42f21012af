import { sql } from 'kysely';
import { GRANT_STATUSES, grantTransition, revokeBackoffMs, REVOKE_ALERT_AFTER, type GrantEvent, type GrantStatus } from '../domain/grant.js';
import { ProviderError } from '../providers/provider.js';
import { getGrant, transitionGrant, type GrantRow } from '../store/grants.js';
import type { Tx } from '../store/db.js';
import { inTx, type AccessDeps, type AuditEvent } from './context.js';

const ACTIVATION_RETRY_MS = 2000;

/** The statuses from which the pure state machine allows `event`: the SQL guards use these. */
const from = (event: GrantEvent): GrantStatus[] => GRANT_STATUSES.filter((s) => grantTransition(s, event).ok);
const CAN_END = from('end');
const CAN_FINISH = from('ended');

/** Splits ids into IN-list sized chunks. */
function chunks<T>(items: readonly T[], size = 500): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Messages from targets are already secret-free (ProviderError); anything else is summarised. */
function errorText(err: unknown): string {
  if (err instanceof ProviderError) return err.message.slice(0, 500);
  return err instanceof Error ? `${err.name}: ${err.message}`.slice(0, 500) : 'unknown error';
}

/**
 * Brings a leased grant (scheduled or activating) to life on its target.
 * Order: record the window (intent) -> provision on the target -> record active.
 * A crash anywhere leaves 'activating' with an expired lease; the next attempt repeats the
 * idempotent provision. A grant whose window is already over is ended instead.
 */
export async function activateGrant(deps: AccessDeps, grantId: string): Promise<GrantRow | undefined> {
  const now = deps.clock.now().getTime();
  const owner = deps.instanceId;
  const current = await getGrant(deps.store.db, grantId);
  if (!current || current.lease_owner !== owner) return undefined;
  let prepared: GrantRow | undefined = current.status === 'activating' && current.expires_at !== null ? current : undefined;
  if (current.status === 'scheduled' || (current.status === 'activating' && current.expires_at === null)) {
    // Record the window (the intent) before the target is touched.
    // A scheduled grant's window is its requested start plus its duration: one activated late (the
    // server was down at its start) ends when that window does, not a full duration later (review
    // 2026-12-02: three hours late, it ran five minutes past the window approved).
    const requested = current.status === 'scheduled'
      ? (await deps.store.db.selectFrom('requests').select('start_at').where('id', '=', current.request_id).executeTakeFirst())?.start_at ?? null
      : null;
    prepared = await inTx(deps, async (tx, audit) => {
      const expiresAt = (requested !== null && requested < now ? requested : now) + current.duration_s * 1000;
      // A window that passed whole (ended below) never starts after its end.
      const startsAt = Math.min(now, expiresAt);
      const row = await transitionGrant(tx, current.id, ['scheduled', 'activating'], {
        status: 'activating', starts_at: startsAt, expires_at: expiresAt, updated_at: now,
      }, owner);
      if (row) audit({ type: 'grant.activating', actor: 'system', grantId: current.id, requestId: current.request_id, at: now,
        data: { resource: current.resource, role: current.role, principal: current.principal, startsAt, expiresAt } });
      return row;
    });
  }
  if (!prepared) return undefined;
  if (prepared.expires_at !== null && prepared.expires_at <= now) {
    // The whole window passed while we could not act (e.g. the server was down): end it.
    await beginEnd(deps, [prepared], 'expired', 'system');
    await revokeLeased(deps, [prepared.id]);
    return getGrant(deps.store.db, grantId);
  }
  const policy = deps.policy();
  const role = policy.resources.get(prepared.resource)?.roles.get(prepared.role);
  const provider = deps.providers.get(prepared.resource);
  try {
    if (!role || !provider) throw new ProviderError(`resource ${prepared.resource} role ${prepared.role} is no longer in the policy`, false);
    const secret = deps.sealer.open(prepared.secret_enc, prepared.id);
    await provider.provision({
      principal: prepared.principal, secret, privileges: role.privileges, readOnly: role.readOnly, validUntil: new Date(prepared.expires_at!),
    });
  } catch (err) {
    const message = errorText(err);
    const permanent = err instanceof ProviderError && !err.retryable;
    await inTx(deps, async (tx, audit) => {
      audit({ type: 'grant.activation_failed', actor: 'system', grantId, requestId: prepared.request_id, at: now,
        data: { resource: prepared.resource, error: message, willRetry: !permanent } });
      await transitionGrant(tx, grantId, ['activating'], {
        last_error: message, due_at: permanent ? now : Math.min(now + ACTIVATION_RETRY_MS, prepared.expires_at!),
        lease_owner: null, lease_until: null, updated_at: now,
      }, owner);
    });
    if (permanent) {
      await beginEnd(deps, [prepared], 'revoked', 'system', { cause: message });
    }
    deps.wake(now + ACTIVATION_RETRY_MS);
    return getGrant(deps.store.db, grantId);
  }
  const done = deps.clock.now().getTime();
  const active = await inTx(deps, async (tx, audit) => {
    const row = await transitionGrant(tx, grantId, ['activating'], {
      status: 'active', due_at: prepared.expires_at, lease_owner: null, lease_until: null, last_error: null, updated_at: done,
    }, owner);
    if (row) {
      audit({ type: 'grant.activated', actor: 'system', grantId, requestId: row.request_id, at: done,
        data: { resource: row.resource, role: row.role, principal: row.principal, startsAt: row.starts_at, expiresAt: row.expires_at } });
    } else {
      // Someone ended it while we provisioned: hand it to the scheduler to revoke what we made.
      await releaseLease(tx, grantId, owner, done);
    }
    return row;
  });
  if (active) {
    deps.metrics.grantActivated();
    deps.wake(active.expires_at!);
    return active;
  }
  // The grant moved on while we provisioned. If it is ending or ended, what we just made may have
  // landed after its revocation (this instance paused past its lease, another one activated and
  // revoked it meanwhile: review 2026-12-02 logged in with a revoked grant's credential): take it
  // away now, whoever holds the lease. Removal is idempotent; a revocation still to run repeats it.
  const now2 = await getGrant(deps.store.db, grantId);
  if (now2 && ['revoking', 'revoke_failed', 'expired', 'revoked'].includes(now2.status)) {
    await undoLateProvision(deps, now2, provider!);
  }
  deps.wake(done);
  return getGrant(deps.store.db, grantId);
}

async function undoLateProvision(deps: AccessDeps, g: GrantRow, provider: NonNullable<ReturnType<AccessDeps['providers']['get']>>): Promise<void> {
  let error: string | undefined;
  try {
    await provider.revoke([g.principal]);
  } catch (err) {
    error = errorText(err);
  }
  const at = deps.clock.now().getTime();
  await inTx(deps, async (_tx, audit) => {
    audit({ type: 'grant.late_provision_undone', actor: 'system', grantId: g.id, requestId: g.request_id, at,
      data: { resource: g.resource, principal: g.principal, status: g.status, ...(error === undefined ? {} : { error }) } });
    // Not removed: the grant's revocation runs again (the reconciler would also find the role).
    if (error !== undefined && (g.status === 'expired' || g.status === 'revoked')) {
      audit({ type: 'alert.orphan_principal', actor: 'system', grantId: g.id, at, data: {
        resource: g.resource, principal: g.principal, message: `principal ${g.principal} on ${g.resource} was provisioned after its grant ended and could not be removed: ${error}`,
      } });
    }
  });
}

async function releaseLease(tx: Tx, grantId: string, owner: string, now: number): Promise<void> {
  await tx.updateTable('grants').set({ lease_owner: null, lease_until: null, due_at: now })
    .where('id', '=', grantId).where('lease_owner', '=', owner).execute();
}

/**
 * Records that access is ending (intent) for each grant still live: -> revoking, due now.
 * The gateway is told at once. Returns the grants that this call moved.
 */
export async function beginEnd(
  deps: AccessDeps,
  grants: readonly GrantRow[],
  reason: 'expired' | 'revoked',
  actor: string,
  data: Record<string, unknown> = {},
): Promise<GrantRow[]> {
  if (grants.length === 0) return [];
  const now = deps.clock.now().getTime();
  const moved = await inTx(deps, async (tx, audit) => {
    const out: GrantRow[] = [];
    // One statement per chunk, not per grant: expiries cluster (1,000 ending in one second).
    for (const ids of chunks(grants.map((g) => g.id))) {
      let q = tx.updateTable('grants').set({
        status: 'revoking', end_reason: reason, due_at: now, updated_at: now,
        // A revoked grant's window closes now (the gateway's sessions never outlive it).
        expires_at: sql<number>`case when expires_at is null or expires_at > ${now} then ${now} else expires_at end`,
      }).where('id', 'in', ids).where('status', 'in', CAN_END);
      // An expiry only applies if no extension moved the end meanwhile.
      if (reason === 'expired') q = q.where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '<=', now)]));
      out.push(...(await q.returningAll().execute()));
    }
    for (const g of out) {
      audit({ type: reason === 'expired' ? 'grant.expiring' : 'grant.revoking', actor, grantId: g.id, requestId: g.request_id, at: now,
        data: { resource: g.resource, role: g.role, principal: g.principal, ...data } });
    }
    return out;
  });
  await Promise.all(moved.map((g) => deps.events.publish({ type: 'ended', grantId: g.id, resource: g.resource, reason, at: now })));
  return moved;
}

/**
 * Takes access away on the targets for grants this instance holds leases on (status revoking or
 * revoke_failed), batched per resource. Success -> expired/revoked. Failure -> retried with
 * backoff; after REVOKE_ALERT_AFTER attempts the grant shows revoke_failed and an alert is raised.
 */
export async function revokeLeased(deps: AccessDeps, grantIds: readonly string[]): Promise<void> {
  const owner = deps.instanceId;
  const rows: GrantRow[] = [];
  for (const ids of chunks(grantIds)) {
    rows.push(...await deps.store.db.selectFrom('grants').selectAll()
      .where('id', 'in', ids).where('status', 'in', CAN_FINISH).where('lease_owner', '=', owner).execute());
  }
  const byResource = new Map<string, GrantRow[]>();
  for (const g of rows) byResource.set(g.resource, [...(byResource.get(g.resource) ?? []), g]);
  await Promise.all([...byResource].map(([resource, gs]) => revokeOnResource(deps, resource, gs)));
}

async function revokeOnResource(deps: AccessDeps, resource: string, batch: GrantRow[]): Promise<void> {
  let grants = batch;
  const owner = deps.instanceId;
  // Grants that never reached the target have nothing to remove there.
  const onTarget = grants.filter((g) => g.starts_at !== null);
  let failure: string | undefined;
  if (onTarget.length > 0) {
    const provider = deps.providers.get(resource);
    try {
      if (!provider) throw new ProviderError(`resource ${resource} is not in the policy: cannot reach its target`, true);
      await provider.revoke(onTarget.map((g) => g.principal));
    } catch (err) {
      failure = errorText(err);
      const still = err instanceof ProviderError ? err.failedPrincipals : undefined;
      if (still !== undefined) {
        // Some went: those are finished now, only the rest is retried.
        const left = new Set(still);
        const gone = grants.filter((g) => !left.has(g.principal));
        if (gone.length > 0) await revokeOnResource(deps, resource, gone.map((g) => ({ ...g, starts_at: null })));
        grants = grants.filter((g) => left.has(g.principal));
      }
    }
  }
  const now = deps.clock.now().getTime();
  if (failure === undefined) {
    const byId = new Map(grants.map((g) => [g.id, g]));
    await inTx(deps, async (tx, audit) => {
      for (const ids of chunks(grants.map((g) => g.id))) {
        const done = await tx.updateTable('grants').set({
          status: sql<GrantStatus>`case when end_reason = 'revoked' then 'revoked' else 'expired' end`,
          ended_at: now, due_at: null, lease_owner: null, lease_until: null, last_error: null, updated_at: now,
        }).where('id', 'in', ids).where('status', 'in', CAN_FINISH).where('lease_owner', '=', owner).returningAll().execute();
        for (const row of done) {
          const g = byId.get(row.id) ?? row;
          const lagMs = row.end_reason === 'expired' && g.expires_at !== null ? now - g.expires_at : undefined;
          audit({ type: row.status === 'revoked' ? 'grant.revoked' : 'grant.expired', actor: 'system', grantId: row.id, requestId: row.request_id, at: now,
            data: { resource, role: row.role, principal: row.principal, attempts: row.revoke_attempts + 1, instance: deps.instanceId, ...(lagMs === undefined ? {} : { lagMs }) } });
          if (lagMs !== undefined) deps.metrics.expiryLagSeconds(Math.max(0, lagMs) / 1000);
        }
      }
    });
    return;
  }
  let earliest = Infinity;
  await inTx(deps, async (tx, audit) => {
    for (const g of grants) {
      const attempts = g.revoke_attempts + 1;
      const failedNow = attempts >= REVOKE_ALERT_AFTER;
      const nextAt = now + revokeBackoffMs(attempts);
      earliest = Math.min(earliest, nextAt);
      const row = await transitionGrant(tx, g.id, CAN_FINISH, {
        status: failedNow ? 'revoke_failed' : g.status, revoke_attempts: attempts, last_error: failure,
        due_at: nextAt, lease_owner: null, lease_until: null, updated_at: now,
      }, owner);
      if (!row) continue;
      deps.metrics.revokeFailure(resource);
      const events: AuditEvent[] = [{ type: 'grant.revoke_attempt_failed', actor: 'system', grantId: g.id, requestId: g.request_id, at: now,
        data: { resource, principal: g.principal, attempt: attempts, error: failure, nextAttemptAt: nextAt } }];
      if (attempts === REVOKE_ALERT_AFTER) {
        events.push({ type: 'alert.revoke_failed', actor: 'system', grantId: g.id, requestId: g.request_id, at: now,
          data: { resource, principal: g.principal, attempts, error: failure, message: `access on ${resource} could not be removed after ${attempts} attempts; still retrying` } });
      }
      audit(...events);
    }
  });
  deps.wake(earliest);
}
