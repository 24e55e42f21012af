import type { Dialect, Tx } from '../store/db.js';
import { chainHash } from './chain.js';
import { auditHeadKeyInUse, checkHeadSeal, HEAD_KEY_ROTATED, headSealKeyId, lostHead, RECENT_REPORTS, RECENT_ROTATIONS, ROLLBACK_DETECTED, rotationRecorded, sealHead } from './head-seal.js';
import { maskSecrets, redactedCanonicalJSON } from './redact.js';
import type { AuditEventInput, AuditEventRow } from './types.js';

/** Rows per INSERT statement: 9 parameters each stays far below SQLite's and PostgreSQL's limits. */
const INSERT_CHUNK = 500;
const MAX_TEXT = 200;

/**
 * Appends events to the hash chain inside the caller's transaction, so a state change and its
 * audit events commit (or roll back) together.
 * Race-safe: the chain head row is locked first (PostgreSQL `SELECT ... FOR UPDATE`; on SQLite a
 * no-op UPDATE takes the database write lock), so concurrent appenders — also from other
 * hallpass instances sharing the database — serialize and never reuse a seq.
 */
export async function appendEvents(tx: Tx, dialect: Dialect, events: readonly AuditEventInput[]): Promise<AuditEventRow[]> {
  return appendPrepared(tx, dialect, events.map(prepareEvent));
}

/** appendEvents for events already checked and redacted by prepareEvent. */
export async function appendPrepared(tx: Tx, dialect: Dialect, prepared: readonly PreparedEvent[]): Promise<AuditEventRow[]> {
  if (prepared.length === 0) return [];

  if (dialect === 'sqlite') {
    await tx.updateTable('audit_head').set((eb) => ({ seq: eb.ref('seq') })).where('id', '=', 1).execute();
  }
  let q = tx.selectFrom('audit_head').select(['seq', 'hash', 'seal']).where('id', '=', 1);
  if (dialect === 'postgres') q = q.forUpdate();
  const head = await q.executeTakeFirst();
  if (!head) throw new Error('audit_head row is missing: the store was not migrated');

  const lost = await lostHead(
    head,
    async (seq) => (await tx.selectFrom('audit_events').select('hash').where('seq', '=', seq).executeTakeFirst())?.hash,
    async () => (await tx.selectFrom('audit_events').select('data').where('type', '=', ROLLBACK_DETECTED)
      .orderBy('seq', 'desc').limit(RECENT_REPORTS).execute()).map((r) => r.data),
  );
  // The rotation records are read only for a head a previous key sealed (once per rotation).
  const rotations = Number(head.seq) > 0 && checkHeadSeal(Number(head.seq), head.hash, head.seal) === 'previous'
    ? (await tx.selectFrom('audit_events').select('data').where('type', '=', HEAD_KEY_ROTATED)
      .orderBy('seq', 'desc').limit(RECENT_ROTATIONS).execute()).map((r) => r.data)
    : [];
  const rows = chainRows(head, withHeadCheck(head, prepared, lost, rotations));
  for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
    await tx.insertInto('audit_events').values(rows.slice(i, i + INSERT_CHUNK)).execute();
  }
  for (const [grantId, span] of grantSpans(rows)) {
    const prev = await tx.selectFrom('audit_grant_spans').select('last_seq').where('grant_id', '=', grantId)
      .orderBy('last_seq', 'desc').limit(1).executeTakeFirst();
    if (prev !== undefined && extendsSpan(Number(prev.last_seq), span)) {
      await tx.updateTable('audit_grant_spans').set({ last_seq: span.last }).where('grant_id', '=', grantId).where('last_seq', '=', prev.last_seq).execute();
    } else {
      await tx.insertInto('audit_grant_spans').values({ grant_id: grantId, first_seq: span.first, last_seq: span.last }).execute();
    }
  }
  const last = rows[rows.length - 1] as AuditEventRow;
  await tx.updateTable('audit_head').set({ seq: last.seq, hash: last.hash, seal: sealHead(last.seq, last.hash) }).where('id', '=', 1).execute();
  // The caller notes the head once its transaction has committed (noteHead): inTx, storeSink.
  return rows;
}

/**
 * `prepared`, led by an `audit.head_unsealed` event when the head it extends does not carry this
 * process's seal (head-seal.ts): the append goes on (auditing never stops), and what was found is
 * on the sealed record from then on. A fresh log (seq 0) has no seal yet.
 */
export function withHeadCheck(
  head: { seq: number; hash: string; seal?: string | null },
  prepared: readonly PreparedEvent[],
  lost?: { seq: number; hash: string },
  rotations: readonly string[] = [],
): readonly PreparedEvent[] {
  if (prepared.length === 0) return prepared;
  const seq = Number(head.seq);
  const at = (prepared[0] as PreparedEvent).at;
  const found: PreparedEvent[] = [];
  if (lost !== undefined) {
    // The head this process last wrote is gone: events were deleted (even all of them, the head
    // set back to the start) or rewritten. Second review, 2026-12-02.
    found.push(prepareEvent({ type: ROLLBACK_DETECTED, actor: 'system', at, data: {
      seq: lost.seq, hash: lost.hash, headSeq: seq,
      message: `event ${lost.seq}, which this server wrote, is ${seq < lost.seq ? 'gone: the log was cut back' : 'no longer the one it wrote: the log was rewritten'} (the head is now event ${seq})`,
    } }));
  }
  let check = seq === 0 ? 'valid' : checkHeadSeal(seq, head.hash, head.seal);
  // A previous key's seal after its rotation was recorded: written with the old key since.
  const resealedByOld = check === 'previous' && rotationRecorded(headSealKeyId(head.seal), auditHeadKeyInUse()?.id, rotations);
  if (resealedByOld) check = 'invalid';
  if (check === 'previous') {
    // Sealed by an earlier master key given to this process: a rotation, on the record once (this
    // append seals the head with the new key).
    // Named `from`/`to`: a member named like a key would be redacted (redact.ts).
    const from = headSealKeyId(head.seal) ?? null;
    const to = auditHeadKeyInUse()?.id ?? null;
    found.push(prepareEvent({ type: HEAD_KEY_ROTATED, actor: 'system', at, data: {
      seq, hash: head.hash, from, to,
      message: `the audit head (event ${seq}) was sealed by the previous master key ${from}; from here on it is sealed by ${to}`,
    } }));
  }
  if (check === 'missing' || check === 'invalid') {
    const message = check === 'missing'
      ? `the audit head (event ${seq}) carried no seal: expected once after the upgrade that added seals, otherwise someone wrote the head without the master key`
      : resealedByOld
        ? `the audit head (event ${seq}) carried a seal of the previous master key ${headSealKeyId(head.seal)} after the rotation to ${auditHeadKeyInUse()?.id} was recorded: it was written with the old key since (whoever holds it, or an instance still on it), and the log may have been rewritten up to there`
        : `the audit head (event ${seq}) carried a seal neither this master key nor a previous one made: the log may have been rewritten up to there`;
    found.push(prepareEvent({ type: 'audit.head_unsealed', actor: 'system', at, data: { seq, hash: head.hash, seal: check, message } }));
  }
  return found.length === 0 ? prepared : [...found, ...prepared];
}

/**
 * A grant's next events extend its last span when at most this many seqs lie between: a query
 * for the grant then reads at most this many other events per gap, and a grant whose sessions
 * are busy keeps one growing span instead of a row per batch.
 */
export const SPAN_MERGE_GAP = 256; // migration 0003 splits older events by the same number, written out

/** Each grant's first and last seq among `rows` (which are in seq order). */
export function grantSpans(rows: readonly AuditEventRow[]): Map<string, { first: number; last: number }> {
  const spans = new Map<string, { first: number; last: number }>();
  for (const r of rows) {
    if (r.grant_id === null) continue;
    const s = spans.get(r.grant_id);
    if (s) s.last = r.seq;
    else spans.set(r.grant_id, { first: r.seq, last: r.seq });
  }
  return spans;
}

/** Whether a grant's new span is close enough to its last one (ending at prevLast) to extend it. */
export function extendsSpan(prevLast: number, span: { first: number }): boolean {
  return span.first - prevLast - 1 <= SPAN_MERGE_GAP;
}

/** The rows that extend the chain at `head` with `prepared`, in order (pure). */
export function chainRows(head: { seq: number; hash: string }, prepared: readonly PreparedEvent[]): AuditEventRow[] {
  let prevHash = head.hash;
  let seq = Number(head.seq);
  return prepared.map((p) => {
    seq += 1;
    const hash = chainHash(prevHash, { seq, at: p.at, type: p.type, actor: p.actor, requestId: p.requestId, grantId: p.grantId, dataJson: p.data });
    const row: AuditEventRow = {
      seq,
      at: p.at,
      type: p.type,
      actor: p.actor,
      request_id: p.requestId,
      grant_id: p.grantId,
      data: p.data,
      prev_hash: prevHash,
      hash,
    };
    prevHash = hash;
    return row;
  });
}

/** An event checked, with its time in epoch ms and its data redacted and canonical. */
export interface PreparedEvent {
  at: number;
  type: string;
  actor: string;
  requestId: string | null;
  grantId: string | null;
  data: string;
}

/** Checks and redacts an event; throws a TypeError naming the bad field. */
export function prepareEvent(e: AuditEventInput): PreparedEvent {
  const at = e.at instanceof Date ? e.at.getTime() : e.at;
  if (!Number.isSafeInteger(at)) throw new TypeError(`audit event ${JSON.stringify(e.type)}: "at" must be a valid time`);
  return {
    at,
    type: text('type', e.type),
    actor: maskSecrets(text('actor', e.actor)),
    requestId: e.requestId === undefined ? null : text('requestId', e.requestId),
    grantId: e.grantId === undefined ? null : text('grantId', e.grantId),
    data: redactedCanonicalJSON(e.data ?? {}),
  };
}

/**
 * A scalar field as stored and hashed. A lone surrogate (a string cut inside a character, e.g. a
 * user name sliced to a length) becomes U+FFFD: the hash covers JSON.stringify's escape of it,
 * but the store would keep U+FFFD (as UTF-8 has no lone surrogates), and every later
 * verification would fail at that event.
 */
function text(field: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_TEXT) {
    throw new TypeError(`audit event: "${field}" must be a non-empty string of at most ${MAX_TEXT} characters`);
  }
  return LONE_SURROGATE.test(v) ? v.replace(new RegExp(LONE_SURROGATE, 'g'), '\uFFFD') : v;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * prepareEvent for events from the network edge (a gateway client's claimed user name): one that
 * does not fit the log's shape is kept, not allowed to block every batch after it. An empty or
 * over-long actor becomes a placeholder with the original in `data.claimedActor`; anything still
 * invalid is recorded as `audit.invalid_event` saying why.
 */
export function prepareEdgeEvent(e: AuditEventInput): PreparedEvent {
  const actorOk = typeof e.actor === 'string' && e.actor.length > 0 && e.actor.length <= MAX_TEXT;
  const fitted: AuditEventInput = actorOk ? e : {
    ...e,
    // Masked before it is cut: a token crossing the cut would no longer look like one (review).
    actor: typeof e.actor === 'string' && e.actor.length > 0 ? `${maskSecrets(e.actor).slice(0, MAX_TEXT - 1)}…` : '(none)',
    data: { ...(e.data ?? {}), claimedActor: typeof e.actor === 'string' ? e.actor.slice(0, 4096) : String(e.actor) },
  };
  try {
    return prepareEvent(fitted);
  } catch (err) {
    const at = e.at instanceof Date ? e.at.getTime() : Number.isSafeInteger(e.at) ? e.at : Date.now();
    return prepareEvent({
      type: 'audit.invalid_event', actor: 'system', at,
      data: { reason: err instanceof Error ? err.message : String(err), originalType: String(e.type).slice(0, MAX_TEXT) },
    });
  }
}
