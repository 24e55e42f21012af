import { sql, type Kysely } from 'kysely';
import type { DB } from '../store/schema.js';
import { decodeRow, type AuditEvent } from './types.js';

export interface AuditFilters {
  /** Events at or after this time. */
  readonly since?: Date | number;
  /** Events strictly before this time. */
  readonly until?: Date | number;
  readonly type?: string;
  /** Events whose type starts with this ("grant." matches "grant.activated"). */
  readonly typePrefix?: string;
  readonly grantId?: string;
  readonly requestId?: string;
  /** Keyset paging: events after this seq. */
  readonly afterSeq?: number;
}

export interface AuditQuery extends AuditFilters {
  /** At most this many events (1..MAX_QUERY_LIMIT). */
  readonly limit: number;
}

export const MAX_QUERY_LIMIT = 10_000;

/** Events matching the filters, oldest first (seq order). */
export async function queryEvents(db: Kysely<DB>, q: AuditQuery): Promise<AuditEvent[]> {
  if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > MAX_QUERY_LIMIT) {
    throw new RangeError(`limit must be an integer from 1 to ${MAX_QUERY_LIMIT}`);
  }
  let query = db.selectFrom('audit_events').selectAll().orderBy('seq').limit(q.limit);
  if (q.since !== undefined) query = query.where('at', '>=', ms(q.since));
  if (q.until !== undefined) query = query.where('at', '<', ms(q.until));
  if (q.type !== undefined) query = query.where('type', '=', q.type);
  if (q.typePrefix !== undefined) {
    const pattern = `${q.typePrefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    query = query.where(sql<boolean>`type like ${pattern} escape '\\'`);
  }
  if (q.grantId !== undefined) query = query.where('grant_id', '=', q.grantId);
  if (q.requestId !== undefined) query = query.where('request_id', '=', q.requestId);
  if (q.afterSeq !== undefined) query = query.where('seq', '>', q.afterSeq);
  const rows = await query.execute();
  return rows.map(decodeRow);
}

function ms(t: Date | number): number {
  return t instanceof Date ? t.getTime() : t;
}
