import { inTx, type AccessDeps } from '../access/context.js';
import { reconcileTargetEnds } from '../access/grants.js';
import { ProviderError } from '../providers/provider.js';

export interface ReconcileResult {
  resource: string;
  ok: boolean;
  removed: string[];
  error?: string | undefined;
}

/**
 * Sweeps every target for principals hallpass made (hp_...) that no live grant accounts for —
 * left by a crash between creating a credential and recording it, a restored backup, or hands —
 * and removes them, with an audit event and an alert. A batch job: returns results, never throws.
 *
 * The set of accounted-for principals is global, not per resource: two resources may share one
 * PostgreSQL cluster, whose roles are cluster-wide.
 */
export async function reconcile(deps: AccessDeps): Promise<ReconcileResult[]> {
  const policy = deps.policy();
  const results: ReconcileResult[] = [];
  // Targets an extension's crash left short of the store's end get it (never the other way round).
  await reconcileTargetEnds(deps).catch(() => 0);
  for (const resource of policy.resources.values()) {
    const provider = deps.providers.get(resource.name);
    if (!provider) continue;
    try {
      await rescheduleStranded(deps, resource.name);
      const listedAt = deps.clock.now().getTime();
      const onTarget = await provider.listManagedPrincipals();
      if (onTarget.length === 0) {
        results.push({ resource: resource.name, ok: true, removed: [] });
        continue;
      }
      // Read grants after listing, so one recorded in between is seen. A grant that ended
      // after we listed was just removed by its own revocation: not an orphan.
      const known = await deps.store.db.selectFrom('grants').select(['principal', 'status', 'ended_at'])
        .where('principal', 'in', onTarget)
        .execute();
      const live = new Set(known
        .filter((r) => !['expired', 'revoked'].includes(r.status) || (r.ended_at !== null && r.ended_at >= listedAt))
        .map((r) => r.principal));
      const orphans = onTarget.filter((p) => !live.has(p));
      if (orphans.length > 0) {
        await provider.revoke(orphans);
        const at = deps.clock.now().getTime();
        await inTx(deps, async (_tx, audit) => {
          for (const principal of orphans) {
            audit(
              { type: 'reconciler.orphan_removed', actor: 'system', at, data: { resource: resource.name, principal } },
              { type: 'alert.orphan_principal', actor: 'system', at, data: {
                resource: resource.name, principal, message: `principal ${principal} on ${resource.name} had no live grant and was removed`,
              } },
            );
          }
        });
      }
      results.push({ resource: resource.name, ok: true, removed: orphans });
    } catch (err) {
      const error = err instanceof ProviderError ? err.message : err instanceof Error ? err.message : String(err);
      results.push({ resource: resource.name, ok: false, removed: [], error });
    }
  }
  return results;
}

/**
 * A grant still on its way in or out must have due work, or no scheduler ever touches it again
 * (a lost due time once left a revoked grant `revoking` for good, its role able to log in). Any
 * such grant without due work and without a live lease is made due now, with an alert.
 */
async function rescheduleStranded(deps: AccessDeps, resource: string): Promise<void> {
  const now = deps.clock.now().getTime();
  const stranded = await deps.store.db.updateTable('grants').set({ due_at: now })
    .where('resource', '=', resource)
    .where('status', 'in', ['scheduled', 'activating', 'revoking', 'revoke_failed'])
    .where('due_at', 'is', null)
    .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
    .returning(['id', 'request_id', 'status', 'principal'])
    .execute();
  if (stranded.length === 0) return;
  await inTx(deps, async (_tx, audit) => {
    for (const g of stranded) {
      audit({ type: 'alert.grant_stranded', actor: 'system', grantId: g.id, requestId: g.request_id, at: now, data: {
        resource, principal: g.principal, status: g.status, message: `grant ${g.id} was ${g.status} with no work scheduled; it is due again now`,
      } });
    }
  });
  deps.wake(now);
}

/** Runs reconcile() every `intervalMs` (and once at start). */
export function startReconciler(deps: AccessDeps, intervalMs: number, onResult: (r: ReconcileResult[]) => void): () => Promise<void> {
  let running: Promise<void> | undefined;
  const run = () => {
    if (running) return;
    running = reconcile(deps).then(onResult, () => undefined).finally(() => {
      running = undefined;
    });
  };
  run();
  const timer = setInterval(run, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
