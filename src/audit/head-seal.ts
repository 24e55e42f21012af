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
let noted: { seq: number; hash: string } | undefined;

export function setAuditHeadKey(key: SecretKey | undefined): void {
  current = key;
  noted = undefined;
}

/** The key in use (the writer thread gets a copy). */
export function auditHeadKeyInUse(): SecretKey | undefined {
  return current;
}

function mac(key: SecretKey, seq: number, hash: string): Buffer {
  return createHmac('sha256', key.key).update(`${DOMAIN}|${seq}|${hash}`).digest();
}

/** The seal of head (seq, hash), `KEYID.MAC`; null without a key. */
export function sealHead(seq: number, hash: string): string | null {
  const k = current;
  return k === undefined ? null : `${k.id}.${mac(k, seq, hash).toString('base64url')}`;
}

export type HeadSealCheck = 'valid' | 'missing' | 'invalid' | 'unkeyed';

/** Whether `seal` is this process's key's seal of head (seq, hash). */
export function checkHeadSeal(seq: number, hash: string, seal: string | null | undefined): HeadSealCheck {
  const k = current;
  if (k === undefined) return 'unkeyed';
  if (seal === null || seal === undefined || seal === '') return 'missing';
  const dot = seal.indexOf('.');
  if (dot < 0 || seal.slice(0, dot) !== k.id) return 'invalid';
  const got = Buffer.from(seal.slice(dot + 1), 'base64url');
  const want = mac(k, seq, hash);
  return got.length === want.length && timingSafeEqual(got, want) ? 'valid' : 'invalid';
}

/**
 * Records a committed head this process wrote (or its writer thread did). The latest noted wins:
 * each is a head of the chain as it then was, and appenders check that the log still holds it
 * (lostHead) before they extend it; after a rollback they record that, and the new head is noted.
 */
export function noteHead(seq: number, hash: string): void {
  noted = { seq, hash };
}

/**
 * Whether the log lost the head this process noted (`at(seq)` reads an event's hash): deleted
 * (the head went back below it) or rewritten (another hash at its seq). Undefined when intact.
 */
export async function lostHead(
  head: { seq: number },
  at: (seq: number) => Promise<string | undefined>,
): Promise<{ seq: number; hash: string } | undefined> {
  const n = current === undefined ? undefined : noted; // a server's check (one store per process)
  if (n === undefined || Number(head.seq) < n.seq) return n;
  return (await at(n.seq)) === n.hash ? undefined : n;
}

/** lostHead for a synchronous reader (the SQLite appender, inside its transaction). */
export function lostHeadSync(head: { seq: number }, at: (seq: number) => string | undefined): { seq: number; hash: string } | undefined {
  const n = current === undefined ? undefined : noted;
  if (n === undefined || Number(head.seq) < n.seq) return n;
  return at(n.seq) === n.hash ? undefined : n;
}

/** The latest head this process noted since its key was set. */
export function notedHead(): { seq: number; hash: string } | undefined {
  return noted;
}
