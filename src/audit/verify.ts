import { sql, type Kysely } from 'kysely';
import type { DB } from '../store/schema.js';
import { GENESIS_HASH, chainHash } from './chain.js';
import type { Checkpoint } from './checkpoint.js';
import { PREVIOUS_MASTER_KEYS_ENV } from '../secrets/master-key.js';
import { auditHeadKeyInUse, checkHeadSeal, HEAD_KEY_ROTATED, headSealKeyId, RECENT_ROTATIONS, rotationRecorded } from './head-seal.js';

export { parseCheckpoint, type Checkpoint } from './checkpoint.js';
import type { AuditEventRow } from './types.js';

export type ChainFault =
  | 'hash_mismatch' // the event's content does not match its hash: edited (or reordered)
  | 'prev_hash_mismatch' // the event does not link to the one before it: deleted or inserted
  | 'seq_gap' // a seq is missing: deleted
  | 'duplicate_seq' // a seq appears twice or goes backwards
  | 'head_mismatch' // the chain head disagrees with the last event: tail appended or head edited
  | 'truncated' // the head names events that are no longer there
  | 'malformed' // a row or line that cannot be read as an event
  | 'span_missing' // an event lies outside its grant's spans: `audit --grant` would not show it
  | 'span_invalid' // a grant's spans overlap or are malformed: `audit --grant` could skip events
  | 'seq_out_of_range' // a row with a seq below 1: outside the chain, yet queries would show it
  | 'checkpoint_mismatch' // the event at a checkpoint kept elsewhere (or last written by this server) has another hash: the log was rewritten
  | 'head_unsealed' // the head carries no seal (head-seal.ts): written without the master key
  | 'head_forged'; // the head's seal is not this master key's seal of it: the log was rewritten

export type VerifyResult =
  | { ok: true; count: number; headSeq: number; headHash: string }
  | { ok: false; count: number; firstBad: { seq: number; reason: ChainFault }; message: string };


export interface VerifyOptions {
  /** Rows read per query (default 5000). */
  readonly pageSize?: number;
  /**
   * The chain is unkeyed: whoever can write the database can rewrite every event from some point
   * on, and the head, into a chain that verifies. A checkpoint kept elsewhere catches that.
   */
  readonly checkpoint?: Checkpoint;
  /**
   * The newest head this process wrote (head-seal.ts notedHead): the log must still hold it, so
   * deleting the newest events and putting back an older, genuinely sealed head fails too.
   */
  readonly written?: Checkpoint | readonly Checkpoint[];
}

/** Walks a chain one event at a time; shared by verifyChain (database) and verifyExport (JSONL). */
export class ChainWalker {
  count = 0;
  lastSeq = 0;
  lastHash = GENESIS_HASH;

  readonly #kept: Array<{ cp: Checkpoint; what: string }> = [];

  constructor(
    start?: { seq: number; hash: string },
    checkpoint?: Checkpoint,
    written?: Checkpoint | readonly Checkpoint[],
  ) {
    if (start) {
      this.lastSeq = start.seq;
      this.lastHash = start.hash;
    }
    if (checkpoint) this.#kept.push({ cp: checkpoint, what: 'the checkpoint recorded' });
    for (const w of written === undefined ? [] : Array.isArray(written) ? written : [written as Checkpoint]) this.#kept.push({ cp: w, what: 'this server wrote' });
  }

  /** Checks the next event; returns the fault, or undefined when it is sound. */
  step(row: AuditEventRow): Extract<VerifyResult, { ok: false }> | undefined {
    const expected = this.lastSeq + 1;
    if (row.seq !== expected) {
      if (typeof row.seq === 'number' && row.seq < expected) {
        return this.fail(row.seq, 'duplicate_seq', `event ${row.seq} appears after event ${this.lastSeq}`);
      }
      return this.fail(expected, 'seq_gap', `event ${expected} is missing (the next event is ${String(row.seq)})`);
    }
    let computed: string;
    try {
      computed = chainHash(row.prev_hash, {
        seq: row.seq,
        at: row.at,
        type: row.type,
        actor: row.actor,
        requestId: row.request_id,
        grantId: row.grant_id,
        dataJson: row.data,
      });
    } catch {
      return this.fail(row.seq, 'malformed', `event ${row.seq} has fields that cannot be hashed`);
    }
    if (computed !== row.hash) {
      return this.fail(row.seq, 'hash_mismatch', `event ${row.seq} does not match its hash: it was altered`);
    }
    if (row.prev_hash !== this.lastHash) {
      return this.fail(row.seq, 'prev_hash_mismatch', `event ${row.seq} does not link to event ${this.lastSeq}`);
    }
    for (const { cp, what } of this.#kept) {
      if (row.seq === cp.seq && row.hash !== cp.hash) {
        return this.fail(row.seq, 'checkpoint_mismatch', `event ${row.seq} is not the one ${what}: the log was rewritten from there or earlier`);
      }
    }
    this.count += 1;
    this.lastSeq = row.seq;
    this.lastHash = row.hash;
    return undefined;
  }

  /** The walk is over (the chain ended at lastSeq): did it reach the checkpoint? */
  finish(): VerifyResult {
    for (const { cp, what } of this.#kept) {
      if (this.lastSeq < cp.seq) {
        const at = what === 'this server wrote' ? `event ${cp.seq}, which this server wrote` : `the checkpoint at event ${cp.seq}`;
        return this.fail(this.lastSeq + 1, 'truncated', `the log ends at event ${this.lastSeq}, before ${at}`);
      }
    }
    return { ok: true, count: this.count, headSeq: this.lastSeq, headHash: this.lastHash };
  }

  /** Compares the walked chain's end with a recorded head. */
  checkHead(head: { seq: number; hash: string }): VerifyResult {
    if (head.seq > this.lastSeq) {
      return this.fail(this.lastSeq + 1, 'truncated', `the head is at event ${head.seq} but the log ends at event ${this.lastSeq}`);
    }
    if (head.seq < this.lastSeq) {
      return this.fail(head.seq + 1, 'head_mismatch', `event ${head.seq + 1} and later are beyond the head (${head.seq})`);
    }
    if (head.hash !== this.lastHash) {
      return this.fail(head.seq, 'head_mismatch', `the head's hash disagrees with event ${head.seq}`);
    }
    return this.finish();
  }

  fail(seq: number, reason: ChainFault, message: string): Extract<VerifyResult, { ok: false }> {
    return { ok: false, count: this.count, firstBad: { seq, reason }, message };
  }
}

/**
 * The first event of `page` (in seq order) that no span of its grant covers. Spans are how
 * queries find a grant's events (see query.ts) and are not hashed, so verifyChain checks them
 * too: an edited spans table would otherwise hide events from grant queries unnoticed.
 */
async function firstOutsideSpans(db: Kysely<DB>, page: readonly AuditEventRow[]): Promise<AuditEventRow | undefined> {
  const withGrant = page.filter((r) => r.grant_id !== null);
  const first = withGrant[0];
  const last = withGrant[withGrant.length - 1];
  if (first === undefined || last === undefined) return undefined;
  const grants = [...new Set(withGrant.map((r) => r.grant_id as string))];
  const spans = new Map<string, Array<{ first: number; last: number }>>();
  for (let i = 0; i < grants.length; i += 500) {
    const rows = await db.selectFrom('audit_grant_spans').select(['grant_id', 'first_seq', 'last_seq'])
      .where('grant_id', 'in', grants.slice(i, i + 500)).where('last_seq', '>=', first.seq).where('first_seq', '<=', last.seq)
      .execute();
    for (const r of rows) spans.set(r.grant_id, [...(spans.get(r.grant_id) ?? []), { first: Number(r.first_seq), last: Number(r.last_seq) }]);
  }
  return withGrant.find((r) => !(spans.get(r.grant_id as string) ?? []).some((sp) => sp.first <= r.seq && r.seq <= sp.last));
}

/**
 * A span that starts below 1, ends before it starts, or overlaps the grant's previous span. A
 * grant's events are read span after span, each from where the last one ended (query.ts), so a
 * stretched span would hide the events of the spans it overlaps; the appenders never write one.
 * One pass over the spans table (a batch job's price).
 */
async function firstInvalidSpan(db: Kysely<DB>): Promise<{ grantId: string; first: number; last: number } | undefined> {
  const { rows } = await sql<{ grant_id: string; first_seq: number; last_seq: number }>`
    select grant_id, first_seq, last_seq from (
      select grant_id, first_seq, last_seq,
             max(last_seq) over (partition by grant_id order by first_seq, last_seq rows between unbounded preceding and 1 preceding) as prev_last
      from audit_grant_spans) as s
    where first_seq < 1 or last_seq < first_seq or first_seq <= prev_last
    order by first_seq limit 1`.execute(db);
  const r = rows[0];
  return r === undefined ? undefined : { grantId: r.grant_id, first: Number(r.first_seq), last: Number(r.last_seq) };
}

/**
 * Verifies the whole chain in seq order, a page at a time, and its head. A batch job: it reports
 * tampering in the result and never throws for it. Events appended while it runs are verified
 * too (it reads until the table and the head agree).
 */
export async function verifyChain(db: Kysely<DB>, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const pageSize = opts.pageSize ?? 5000;
  const walker = new ChainWalker(undefined, opts.checkpoint, opts.written);
  // The walk starts after seq 0, so a row planted below it would never be looked at.
  const below = await db.selectFrom('audit_events').select('seq').where('seq', '<', 1).orderBy('seq').limit(1).executeTakeFirst();
  if (below) return walker.fail(Number(below.seq), 'seq_out_of_range', `a row with seq ${below.seq} lies outside the chain (seqs start at 1)`);
  const badSpan = await firstInvalidSpan(db);
  if (badSpan) {
    return walker.fail(badSpan.first, 'span_invalid', `a span of grant ${badSpan.grantId} (${badSpan.first}-${badSpan.last}) overlaps another or is malformed, so queries by grant could skip its events`);
  }
  for (;;) {
    const page = await db
      .selectFrom('audit_events')
      .selectAll()
      .where('seq', '>', walker.lastSeq)
      .orderBy('seq')
      .limit(pageSize)
      .execute();
    const hidden = await firstOutsideSpans(db, page);
    for (const row of page) {
      const fault = walker.step(row);
      if (fault) return fault;
      if (row.seq === hidden?.seq) {
        // Its chain fields were sound (checked first), but it does not count as verified.
        const fault = walker.fail(row.seq, 'span_missing', `event ${row.seq} of grant ${hidden.grant_id} lies outside that grant's spans, so queries by grant miss it`);
        return { ...fault, count: fault.count - 1 };
      }
    }
    if (page.length === pageSize) continue;
    const head = await db.selectFrom('audit_head').select(['seq', 'hash', 'seal']).where('id', '=', 1).executeTakeFirst();
    if (!head) return walker.fail(0, 'head_mismatch', 'the chain head row is missing');
    if (head.seq > walker.lastSeq) {
      // Either events were appended since the last page (read on) or the tail was cut.
      const more = await db.selectFrom('audit_events').select('seq').where('seq', '>', walker.lastSeq).limit(1).executeTakeFirst();
      if (more) continue;
    }
    const result = walker.checkHead(head);
    if (!result.ok) return result;
    // With the master key's head key (a server), the head must carry its seal: a chain rewritten
    // by whoever can only write the database verifies as a chain, but not as a sealed head.
    const seal = Number(head.seq) === 0 ? 'valid' : checkHeadSeal(Number(head.seq), head.hash, head.seal);
    if (seal === 'previous') {
      // A previous key's seal is the rotation's own head only until the rotation is recorded.
      const rotations = (await db.selectFrom('audit_events').select('data').where('type', '=', HEAD_KEY_ROTATED)
        .orderBy('seq', 'desc').limit(RECENT_ROTATIONS).execute()).map((r) => r.data);
      if (rotationRecorded(headSealKeyId(head.seal), auditHeadKeyInUse()?.id, rotations)) {
        return walker.fail(Number(head.seq), 'head_forged', `the head (event ${head.seq}) is sealed by the previous master key ${headSealKeyId(head.seal)} after the rotation to ${auditHeadKeyInUse()?.id} was recorded: it was written with the old key since (whoever holds it, or an instance still on it)`);
      }
    }
    if (seal === 'missing') {
      return walker.fail(Number(head.seq), 'head_unsealed', `the head (event ${head.seq}) carries no seal: it was written without the master key (expected only before the first append after the upgrade that added seals)`);
    }
    if (seal === 'invalid') {
      return walker.fail(Number(head.seq), 'head_forged', `the head (event ${head.seq}) carries a seal neither this master key nor a previous one (${PREVIOUS_MASTER_KEYS_ENV}) made: the log was rewritten`);
    }
    return result;
  }
}
