import type { Selectable, Updateable } from 'kysely';
import type { Executor } from './db.js';
import type { RequestsTable, RequestStatusCol } from './schema.js';

export type RequestRow = Selectable<RequestsTable>;

export async function insertRequest(ex: Executor, row: RequestRow): Promise<void> {
  await ex.insertInto('requests').values(row).execute();
}

export async function getRequest(ex: Executor, id: string): Promise<RequestRow | undefined> {
  return ex.selectFrom('requests').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * The race-safe primitive for request state: moves `id` from `from` to `to` only if it is still
 * in `from` (compare-and-set). Returns the updated row, or undefined if someone else moved it.
 */
export async function transitionRequest(
  ex: Executor,
  id: string,
  from: RequestStatusCol,
  to: RequestStatusCol,
  patch: Updateable<RequestsTable>,
): Promise<RequestRow | undefined> {
  return ex
    .updateTable('requests')
    .set({ ...patch, status: to })
    .where('id', '=', id)
    .where('status', '=', from)
    .returningAll()
    .executeTakeFirst();
}

export interface RequestFilter {
  requesterId?: string | undefined;
  /** With requesterId: only requests of this workload job (null: only unbound ones, a person's). Undefined: any. */
  holderBinding?: string | null | undefined;
  status?: RequestStatusCol | undefined;
  limit: number;
}

export async function listRequests(ex: Executor, f: RequestFilter): Promise<RequestRow[]> {
  let q = ex.selectFrom('requests').selectAll();
  if (f.requesterId) q = q.where('requester_id', '=', f.requesterId);
  if (f.holderBinding !== undefined) q = f.holderBinding === null ? q.where('holder_binding', 'is', null) : q.where('holder_binding', '=', f.holderBinding);
  if (f.status) q = q.where('status', '=', f.status);
  return q.orderBy('created_at', 'desc').orderBy('id').limit(f.limit).execute();
}

/** Pending requests whose TTL has passed. */
export async function duePendingRequests(ex: Executor, now: number, limit: number): Promise<RequestRow[]> {
  return ex
    .selectFrom('requests')
    .selectAll()
    .where('status', '=', 'pending')
    .where('pending_expires_at', '<=', now)
    .orderBy('pending_expires_at')
    .limit(limit)
    .execute();
}

/** Next time a pending request falls due (for the scheduler's wake-up timer). */
export async function nextPendingDue(ex: Executor): Promise<number | undefined> {
  const r = await ex
    .selectFrom('requests')
    .select((eb) => eb.fn.min('pending_expires_at').as('at'))
    .where('status', '=', 'pending')
    .executeTakeFirst();
  return r?.at == null ? undefined : Number(r.at);
}

/**
 * The race-safe primitive for approvals: one vote per (request, approver), however many times
 * the approver clicks, from however many instances. Returns true if this call recorded it.
 */
export async function recordApprovalOnce(
  ex: Executor,
  row: { request_id: string; approver_id: string; duration_s: number | null; comment: string | null; at: number },
): Promise<boolean> {
  const r = await ex
    .insertInto('approvals')
    .values(row)
    .onConflict((oc) => oc.columns(['request_id', 'approver_id']).doNothing())
    .executeTakeFirst();
  return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
}

export async function listApprovals(ex: Executor, requestId: string) {
  return ex.selectFrom('approvals').selectAll().where('request_id', '=', requestId).orderBy('at').execute();
}
