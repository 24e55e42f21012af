import { sql, type Selectable, type Updateable } from 'kysely';
import type { Dialect, Executor } from './db.js';
import type { GrantStatusCol, GrantsTable } from './schema.js';

export type GrantRow = Selectable<GrantsTable>;

export async function insertGrant(ex: Executor, row: GrantRow): Promise<void> {
  await ex.insertInto('grants').values(row).execute();
}

export async function getGrant(ex: Executor, id: string): Promise<GrantRow | undefined> {
  return ex.selectFrom('grants').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * Compare-and-set on a grant's status: applies `patch` only while the grant is in one of `from`
 * (and, if given, still leased by `owner`). Returns the new row, or undefined if it moved on.
 */
export async function transitionGrant(
  ex: Executor,
  id: string,
  from: readonly GrantStatusCol[],
  patch: Updateable<GrantsTable>,
  owner?: string,
): Promise<GrantRow | undefined> {
  let q = ex.updateTable('grants').set(patch).where('id', '=', id).where('status', 'in', [...from]);
  if (owner !== undefined) q = q.where('lease_owner', '=', owner);
  return q.returningAll().executeTakeFirst();
}

/**
 * The race-safe primitive for due work: leases up to `limit` grants whose `due_at` has come
 * and that nobody holds (or whose lease ran out, e.g. its holder crashed). On PostgreSQL rows
 * are locked with FOR UPDATE SKIP LOCKED, so two instances never claim the same grant;
 * SQLite serializes writers. The lease is released by the holder's next transition.
 */
export async function claimDueGrants(
  ex: Executor,
  dialect: Dialect,
  opts: { now: number; owner: string; leaseMs: number; limit: number },
): Promise<GrantRow[]> {
  const { now, owner, leaseMs, limit } = opts;
  const lock = dialect === 'postgres' ? sql`for update skip locked` : sql``;
  const r = await sql<GrantRow>`
    update grants set lease_owner = ${owner}, lease_until = ${now + leaseMs}
    where id in (
      select id from grants
      where due_at is not null and due_at <= ${now}
        and (lease_until is null or lease_until < ${now})
      order by due_at
      limit ${limit}
      ${lock}
    )
    returning *`.execute(ex);
  return r.rows;
}

/** Takes the lease on one grant if it is free (for work done inline by an API call). */
export async function tryLeaseGrant(
  ex: Executor,
  id: string,
  opts: { now: number; owner: string; leaseMs: number },
): Promise<GrantRow | undefined> {
  return ex
    .updateTable('grants')
    .set({ lease_owner: opts.owner, lease_until: opts.now + opts.leaseMs })
    .where('id', '=', id)
    .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', opts.now), eb('lease_owner', '=', opts.owner)]))
    .returningAll()
    .executeTakeFirst();
}

/** Earliest due_at among grants (for the scheduler's wake-up timer). */
export async function nextGrantDue(ex: Executor): Promise<number | undefined> {
  const r = await ex
    .selectFrom('grants')
    .select((eb) => eb.fn.min('due_at').as('at'))
    .where('due_at', 'is not', null)
    .executeTakeFirst();
  return r?.at == null ? undefined : Number(r.at);
}

export interface GrantFilter {
  userId?: string | undefined;
  /** With userId: only grants of this workload job (null: only unbound grants, a person's). Undefined: any. */
  holderBinding?: string | null | undefined;
  statuses?: readonly GrantStatusCol[] | undefined;
  resource?: string | undefined;
  role?: string | undefined;
  limit: number;
}

export async function listGrants(ex: Executor, f: GrantFilter): Promise<GrantRow[]> {
  let q = ex.selectFrom('grants').selectAll();
  if (f.userId) q = q.where('user_id', '=', f.userId);
  if (f.holderBinding !== undefined) q = f.holderBinding === null ? q.where('holder_binding', 'is', null) : q.where('holder_binding', '=', f.holderBinding);
  if (f.statuses && f.statuses.length > 0) q = q.where('status', 'in', [...f.statuses]);
  if (f.resource) q = q.where('resource', '=', f.resource);
  if (f.role) q = q.where('role', '=', f.role);
  return q.orderBy('created_at', 'desc').orderBy('id').limit(f.limit).execute();
}

/** Principals on `resource` that may legitimately exist on the target right now. */
export async function livePrincipals(ex: Executor, resource: string): Promise<Set<string>> {
  const rows = await ex
    .selectFrom('grants')
    .select('principal')
    .where('resource', '=', resource)
    .where('status', 'in', ['activating', 'active', 'revoking', 'revoke_failed'])
    .execute();
  return new Set(rows.map((r) => r.principal));
}
