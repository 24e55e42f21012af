import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SecretKey } from '../secrets/envelope.js';

/**
 * The chain head's seal: an HMAC of (seq, hash) under a key derived from the master key, written
 * with the head by every appender. The chain itself stays unkeyed (anyone can check an export),
 * but whoever can only write the database cannot rewrite events and seal a new head: `audit
 * verify` on a server then fails with `head_forged` (or `head_unsealed` when the seal is gone).
 * An appender that finds the head unsealed or forged still appends (audit never stops), but first
 * records `audit.head_unsealed`, which no later append can remove without the key.
 *
 * What it cannot catch alone is a rollback: deleting the newest events and putting back an older
 * head with its genuine seal. Each process therefore notes the newest head it wrote, and its
 * `audit verify` requires the log to still hold that event unchanged (as a checkpoint).
 *
 * One key per process, like the SQL seal key (seal.ts): the server sets it at start and hands
 * it to the audit writer thread. Without a key nothing is sealed or checked (tests, tools).
 */

const DOMAIN = 'hallpass-audit-head-v1';

let current: SecretKey | undefined;
/** The head keys of earlier master keys (a rotation): a head they sealed is genuine. */
let previous: readonly SecretKey[] = [];
/** A committed head: the log must still hold event `seq` with this hash. */
export interface NotedHead {
  readonly seq: number;
  readonly hash: string;
}
/**
 * The newest committed head each writer of this process wrote: `main` (state transactions and
 * the main-thread sink) and `thread` (the audit writer thread, as its replies tell). Kept apart:
 * one writer's newer head must not replace the other's (third and fourth reviews).
 */
export type HeadSlot = 'main' | 'thread';
let noted: Partial<Record<HeadSlot, NotedHead>> = {};

export function setAuditHeadKey(key: SecretKey | undefined, previousKeys: readonly SecretKey[] = []): void {
  current = key;
  previous = key === undefined ? [] : previousKeys.filter((k) => k.id !== key.id);
  noted = {};
}

/** The key in use (the writer thread gets a copy). */
export function auditHeadKeyInUse(): SecretKey | undefined {
  return current;
}

/** The earlier master keys' head keys (the writer thread gets a copy). */
export function previousAuditHeadKeys(): readonly SecretKey[] {
  return previous;
}

function mac(key: SecretKey, seq: number, hash: string): Buffer {
  return createHmac('sha256', key.key).update(`${DOMAIN}|${seq}|${hash}`).digest();
}

/** The seal of head (seq, hash), `KEYID.MAC`; null without a key. */
export function sealHead(seq: number, hash: string): string | null {
  const k = current;
  return k === undefined ? null : `${k.id}.${mac(k, seq, hash).toString('base64url')}`;
}

/** `previous`: sealed by an earlier master key this process was given (a rotation), genuine. */
export type HeadSealCheck = 'valid' | 'previous' | 'missing' | 'invalid' | 'unkeyed';

/** Whether `seal` is this process's key's seal of head (seq, hash), or an earlier key's. */
export function checkHeadSeal(seq: number, hash: string, seal: string | null | undefined): HeadSealCheck {
  const k = current;
  if (k === undefined) return 'unkeyed';
  if (seal === null || seal === undefined || seal === '') return 'missing';
  const dot = seal.indexOf('.');
  const id = dot < 0 ? '' : seal.slice(0, dot);
  const by = id === k.id ? k : previous.find((p) => p.id === id);
  if (by === undefined) return 'invalid';
  const got = Buffer.from(seal.slice(dot + 1), 'base64url');
  const want = mac(by, seq, hash);
  if (got.length !== want.length || !timingSafeEqual(got, want)) return 'invalid';
  return by === k ? 'valid' : 'previous';
}

/** The id of the key that made `seal` (`KEYID.MAC`), as written; undefined if it has none. */
export function headSealKeyId(seal: string | null | undefined): string | undefined {
  const dot = seal?.indexOf('.') ?? -1;
  return dot > 0 ? seal?.slice(0, dot) : undefined;
}

/** Records a committed head `slot` wrote (the latest wins within a slot). */
export function noteHead(seq: number, hash: string, slot: HeadSlot = 'main'): void {
  noted = { ...noted, [slot]: { seq, hash } };
}

/**
 * After an append that recorded a rollback (audit.rollback_detected): what was lost is on the
 * record, and this head is where every writer goes on from. Reported once, not at every append.
 */
export function resetNotedHeads(seq: number, hash: string): void {
  noted = { main: { seq, hash }, thread: { seq, hash } };
}

/** Notes what a committed append left: its last row, or a reset when it recorded a rollback. */
export function noteAppended(rows: ReadonlyArray<{ readonly seq: number; readonly hash: string; readonly type: string }>, slot: HeadSlot = 'main'): void {
  const last = rows[rows.length - 1];
  if (last === undefined) return;
  if (rows.some((r) => r.type === ROLLBACK_DETECTED)) resetNotedHeads(last.seq, last.hash);
  else noteHead(last.seq, last.hash, slot);
}

export const ROLLBACK_DETECTED = 'audit.rollback_detected';

/** The noted heads by slot (handed to the writer thread, kept in the anchor file). */
export function notedSlots(): Partial<Record<HeadSlot, NotedHead>> {
  return noted;
}

/** Replaces the noted heads (the writer thread, from each request; the anchor file at start). */
export function setNotedSlots(slots: Partial<Record<HeadSlot, NotedHead>>): void {
  noted = { ...slots };
}

/** The distinct noted heads: the log must hold each (verify's `written`). */
export function notedHeads(): NotedHead[] {
  const out: NotedHead[] = [];
  for (const h of [noted.main, noted.thread]) if (h !== undefined && !out.some((o) => o.seq === h.seq && o.hash === h.hash)) out.push(h);
  return out;
}

/**
 * The first noted head the log lost (`at(seq)` reads an event's hash): deleted (the head went
 * back below it) or rewritten (another hash at its seq). Undefined when all are intact, or
 * without a key (only a server checks: one store per process).
 */
export async function lostHead(
  head: { seq: number },
  at: (seq: number) => Promise<string | undefined>,
  reported: () => Promise<readonly string[]>,
): Promise<NotedHead | undefined> {
  if (current === undefined) return undefined;
  for (const n of notedHeads()) {
    if (Number(head.seq) < n.seq || (await at(n.seq)) !== n.hash) return alreadyReported(n, await reported()) ? undefined : n;
  }
  return undefined;
}

/** lostHead for a synchronous reader (the SQLite appender, inside its transaction). */
export function lostHeadSync(head: { seq: number }, at: (seq: number) => string | undefined, reported: () => readonly string[]): NotedHead | undefined {
  if (current === undefined) return undefined;
  const n = notedHeads().find((h) => Number(head.seq) < h.seq || at(h.seq) !== h.hash);
  return n === undefined || alreadyReported(n, reported()) ? undefined : n;
}

/**
 * Whether one of the latest audit.rollback_detected events (their data, as stored) already
 * reports `n`: the other writer of this process recorded the same cut-back first, and the reply
 * saying so had not arrived (fifth review: a second alarm, wrongly saying "rewritten").
 */
function alreadyReported(n: NotedHead, reports: readonly string[]): boolean {
  return someRecord(reports, (r) => r.seq === n.seq && r.hash === n.hash);
}

/** Whether one of `datas` (audit event data, as stored) parses to a record `match` accepts. */
function someRecord(datas: readonly string[], match: (r: Record<string, unknown>) => boolean): boolean {
  return datas.some((d) => {
    try {
      const r: unknown = JSON.parse(d);
      return r !== null && typeof r === 'object' && match(r as Record<string, unknown>);
    } catch {
      return false;
    }
  });
}

/** How many of the latest rollback reports an appender looks through (alreadyReported). */
export const RECENT_REPORTS = 8;

/** The event an appender writes when it finds the head sealed by a previous master key (a rotation). */
export const HEAD_KEY_ROTATED = 'audit.head_key_rotated';
/** How many of the newest rotation records are looked at (each rotation writes one). */
export const RECENT_ROTATIONS = 64;

/**
 * Whether the log already records the rotation from key `from` to `to` (`datas`: the data of its
 * newest `audit.head_key_rotated` events). Once it does, the new key has sealed the head, so a head
 * sealed by the old key again was written with the old key since: by someone holding it (a leaked
 * key kept in HALLPASS_PREVIOUS_MASTER_KEYS to open old SQL), or by an instance left on it. Either
 * way it is not the rotation's own head (review 2026-12-02: such a forgery verified and was
 * recorded as a second rotation).
 */
export function rotationRecorded(from: string | undefined, to: string | undefined, datas: readonly string[]): boolean {
  return someRecord(datas, (r) => r.from === from && r.to === to);
}
