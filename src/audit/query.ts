import { sql, SqliteAdapter, type Kysely, type RawBuilder } from 'kysely';
import type { DB } from '../store/schema.js';
import { decodeRow, type AuditEvent } from './types.js';

export interface AuditFilters {
  /** Events at or after this time. */
  readonly since?: Date | number;
  /** Events strictly before this time. */
  readonly until?: Date | number;
  readonly type?: string;
  /** Events whose type starts with this ("grant." matches "grant.activated"); case-sensitive. */
  readonly typePrefix?: string;
  readonly grantId?: string;
  readonly requestId?: string;
  /** Keyset paging: events after this seq. */
  readonly afterSeq?: number;
  /** Events at or before this seq. */
  readonly atMostSeq?: number;
}

export interface AuditQuery extends AuditFilters {
  /** At most this many events (1..MAX_QUERY_LIMIT). */
  readonly limit: number;
}

export const MAX_QUERY_LIMIT = 10_000;

/**
 * Events matching the filters, oldest first (seq order).
 *
 * The log grows by one row per gateway statement, so filters are answered from indexes: a
 * request's events from their own index, a grant's from its spans (grantEvents), a type or a
 * family from the type index. A time window is first turned into the seq range its events occupy
 * (windowSeqRange), because a store asked for seq order would otherwise read the table from the
 * first event. `narrowWindow: false` skips that, for a caller that already narrowed the filters
 * (exportEvents does it once for all its pages).
 */
export async function queryEvents(db: Kysely<DB>, q: AuditQuery, opts: { narrowWindow?: boolean } = {}): Promise<AuditEvent[]> {
  if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > MAX_QUERY_LIMIT) {
    throw new RangeError(`limit must be an integer from 1 to ${MAX_QUERY_LIMIT}`);
  }
  // Grant and family queries run several statements. Each sees at least what had committed when
  // the head was read (appenders commit events and head together, in seq order), so capping them
  // all at that head keeps one from returning a later event while another missed an earlier one:
  // a reader paging on with afterSeq would never get it.
  const f = opts.narrowWindow === false ? await cappedAtHead(db, q) : await narrowedFilters(db, q);
  if (f === undefined) return [];
  if (f.grantId !== undefined) return grantEvents(db, { ...f, grantId: f.grantId }, q.limit);
  if (f.typePrefix !== undefined && f.type === undefined && f.requestId === undefined) {
    const types = await familyTypes(db, f.typePrefix);
    if (types !== undefined) {
      // The first `limit` of each type's events (on SQLite straight from the type index, in seq
      // order) hold the first `limit` of the family: read as one range or LIKE, a family as big as
      // gateway.* would be sorted or scanned whole.
      const perType: Array<Awaited<ReturnType<typeof select>>> = [];
      for (const type of types) perType.push(await select(db, { ...f, typePrefix: undefined, type }, q.limit));
      return perType.flat().sort((a, b) => Number(a.seq) - Number(b.seq)).slice(0, q.limit).map(decodeRow);
    }
  }
  return (await select(db, f, q.limit)).map(decodeRow);
}

/**
 * The filters capped at the chain head as it is now, their time window narrowed to a seq range
 * (windowSeqRange); undefined when nothing can match. exportEvents calls it once, so an export is
 * the log as it was when the export started.
 */
export async function narrowedFilters<F extends AuditFilters>(db: Kysely<DB>, f: F): Promise<F | undefined> {
  return windowSeqRange(db, await cappedAtHead(db, f));
}

/** The filters with atMostSeq no later than the chain head as it is now. */
async function cappedAtHead<F extends AuditFilters>(db: Kysely<DB>, f: F): Promise<F> {
  const head = await db.selectFrom('audit_head').select('seq').where('id', '=', 1).executeTakeFirst();
  const seq = Number(head?.seq ?? 0);
  return { ...f, atMostSeq: Math.min(f.atMostSeq ?? seq, seq) };
}

/** Families of more types than this are read with one range or LIKE instead. */
const MAX_FAMILY_TYPES = 64;
/** On PostgreSQL every distinct type is visited (its text order follows a collation, not code points). */
const MAX_TYPES_VISITED = 256;

/**
 * The distinct types that start with `prefix`, one index seek each: on SQLite within the
 * family's code point range; on PostgreSQL, whose index order follows the database collation,
 * among all the log's types (a few dozen), kept by an exact prefix test. undefined when there are
 * too many, or the prefix has no upper bound.
 */
async function familyTypes(db: Kysely<DB>, prefix: string): Promise<string[] | undefined> {
  const upper = prefixUpperBound(prefix);
  if (upper === null) return undefined;
  const sqlite = isSqlite(db);
  const types: string[] = [];
  let from: string | undefined;
  for (let visited = 0; visited < MAX_TYPES_VISITED; visited++) {
    let next = db.selectFrom('audit_events').select('type').orderBy('type').limit(1);
    if (sqlite) next = next.where('type', '<', upper).where('type', from === undefined ? '>=' : '>', from ?? prefix);
    else if (from !== undefined) next = next.where('type', '>', from);
    const row = await next.executeTakeFirst();
    if (row === undefined) return types;
    if (row.type.startsWith(prefix)) {
      if (types.length === MAX_FAMILY_TYPES) return undefined;
      types.push(row.type);
    }
    from = row.type;
  }
  return undefined;
}

/**
 * A grant's events: its spans in seq order (audit_grant_spans), each read as a seq range with
 * every filter applied, until `limit` are found. Besides the grant's own events a span holds at
 * most SPAN_MERGE_GAP others per gap, plus the others inside one appended batch.
 */
async function grantEvents(db: Kysely<DB>, f: AuditFilters & { grantId: string }, limit: number): Promise<AuditEvent[]> {
  const out: AuditEvent[] = [];
  let cursor = f.afterSeq ?? 0;
  for (;;) {
    let spans = db.selectFrom('audit_grant_spans').select(['first_seq', 'last_seq'])
      .where('grant_id', '=', f.grantId).where('last_seq', '>', cursor).orderBy('last_seq').limit(SPAN_PAGE);
    if (f.atMostSeq !== undefined) spans = spans.where('first_seq', '<=', f.atMostSeq);
    const page = await spans.execute();
    for (const span of page) {
      const range = {
        afterSeq: Math.max(f.afterSeq ?? 0, cursor, Number(span.first_seq) - 1),
        atMostSeq: Math.min(f.atMostSeq ?? Number.MAX_SAFE_INTEGER, Number(span.last_seq)),
      };
      for (const row of await select(db, { ...f, ...range }, limit - out.length)) out.push(decodeRow(row));
      if (out.length >= limit) return out;
      cursor = Number(span.last_seq);
    }
    if (page.length < SPAN_PAGE) return out;
  }
}

const SPAN_PAGE = 256;

function select(db: Kysely<DB>, f: AuditFilters, limit: number) {
  const sqlite = isSqlite(db);
  let query = db.selectFrom('audit_events').selectAll().orderBy('seq').limit(limit);
  if (f.since !== undefined) query = query.where('at', '>=', ms(f.since));
  if (f.until !== undefined) query = query.where('at', '<', ms(f.until));
  // A request's few events come from its own index; SQLite would rather walk the type index.
  const type = sqlite && f.requestId !== undefined ? sql<string>`+type` : sql<string>`type`;
  if (f.type !== undefined) query = query.where(type, '=', f.type);
  if (f.typePrefix !== undefined) {
    const upper = sqlite ? prefixUpperBound(f.typePrefix) : undefined;
    if (upper !== null && upper !== undefined) {
      // SQLite compares text as UTF-8 bytes, i.e. by code point: the family is exactly this range,
      // which the type index serves (its LIKE is case-insensitive and can use no index).
      query = query.where(type, '>=', f.typePrefix).where(type, '<', upper);
    } else {
      const pattern = `${f.typePrefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      query = query.where(sql<boolean>`type like ${pattern} escape '\\'`);
    }
  }
  if (f.grantId !== undefined) query = query.where('grant_id', '=', f.grantId);
  if (f.requestId !== undefined) query = query.where('request_id', '=', f.requestId);
  // Seqs start at 1: a row planted below that is outside the chain (verify reports it), never an answer.
  query = query.where('seq', '>', Math.max(0, f.afterSeq ?? 0));
  if (f.atMostSeq !== undefined) query = query.where('seq', '<=', f.atMostSeq);
  return query.execute();
}

/** A window estimated to hold more events than this is not narrowed when another index can lead. */
const NARROW_MAX_ESTIMATE = 100_000;

/**
 * The filters with a time window narrowed to the seq range of the window's events (after
 * afterSeq, up to atMostSeq), or undefined when the window holds no event, so nothing matches.
 * The range is the window's own smallest and largest seq, read from the `at` index over the
 * window, so it is exact however `at` is ordered against seq; its cost grows with the window.
 * So when a grant, type or family could lead instead, the window is narrowed only when two seeks
 * on the `at` index estimate it at most NARROW_MAX_ESTIMATE events (on PostgreSQL a type or family
 * always leads); a request never needs it.
 */
async function windowSeqRange<F extends AuditFilters>(db: Kysely<DB>, f: F): Promise<F | undefined> {
  if ((f.since === undefined && f.until === undefined) || f.requestId !== undefined) return f;
  const sqlite = isSqlite(db);
  const byAt = sqlite ? sql`audit_events indexed by audit_at` : sql`audit_events`;
  const seek = async (term: RawBuilder<unknown>, dir: RawBuilder<unknown>): Promise<number | undefined> => {
    const { rows } = await sql<{ seq: number }>`select seq from ${byAt} where ${term} order by at ${dir} limit 1`.execute(db);
    return rows[0] === undefined ? undefined : Number(rows[0].seq);
  };
  const first = f.since !== undefined ? await seek(sql`at >= ${ms(f.since)}`, sql`asc`) : 0;
  const last = f.until !== undefined ? await seek(sql`at < ${ms(f.until)}`, sql`desc`) : (f.atMostSeq ?? Number.MAX_SAFE_INTEGER);
  if (first === undefined || last === undefined) return undefined; // no event at all on that side of the window
  // PostgreSQL's (type, at) index answers a type or family with a window by itself.
  const typed = f.type !== undefined || f.typePrefix !== undefined;
  if (typed && !sqlite) return f;
  if ((typed || f.grantId !== undefined) && Math.abs(last - first) > NARROW_MAX_ESTIMATE) return f;
  const terms = [
    ...(f.since !== undefined ? [sql`at >= ${ms(f.since)}`] : []),
    ...(f.until !== undefined ? [sql`at < ${ms(f.until)}`] : []),
    ...(f.afterSeq !== undefined ? [sql`seq > ${f.afterSeq}`] : []),
    ...(f.atMostSeq !== undefined ? [sql`seq <= ${f.atMostSeq}`] : []),
  ];
  // seq + 0: PostgreSQL would answer a bare min(seq) by walking the primary key from the log's
  // first event until one falls in the window.
  const { rows } = await sql<{ lo: number | null; hi: number | null }>`
    select min(seq + 0) as lo, max(seq + 0) as hi from ${byAt} where ${sql.join(terms, sql` and `)}`.execute(db);
  const r = rows[0];
  if (r?.lo === null || r?.lo === undefined || r.hi === null) return undefined;
  return { ...f, afterSeq: Math.max(f.afterSeq ?? 0, Number(r.lo) - 1), atMostSeq: Number(r.hi) };
}

/**
 * The least string above every string that starts with `prefix`, in code point order: the
 * prefix with its last code point incremented (a last U+10FFFF is dropped and the one before it
 * incremented; surrogates are skipped). null when there is none (empty, or only U+10FFFF).
 */
export function prefixUpperBound(prefix: string): string | null {
  const points = Array.from(prefix, (c) => c.codePointAt(0) as number);
  while (points.length > 0) {
    const last = points.pop() as number;
    if (last < 0x10ffff) {
      const next = last + 1 === 0xd800 ? 0xe000 : last + 1;
      return String.fromCodePoint(...points, next);
    }
  }
  return null;
}

function isSqlite(db: Kysely<DB>): boolean {
  return db.getExecutor().adapter instanceof SqliteAdapter;
}

function ms(t: Date | number): number {
  return t instanceof Date ? t.getTime() : t;
}
