/**
 * The audit writer thread (started by threadSink): appends the batches it is sent to the hash
 * chain of the SQLite store named in workerData, on its own connection, and answers each with
 * `{ id }` or `{ id, error }`. The CPU work of an audited statement (redaction, canonical JSON,
 * SHA-256, the insert) happens here, not on the event loop that relays client traffic.
 */
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';
import { configureSqlite } from '../store/db.js';
import { prepareEdgeEvent } from './append.js';
import { ROLLBACK_DETECTED, setAuditHeadKey, setNotedSlots, type HeadSlot, type NotedHead } from './head-seal.js';
import { setAuditSealKey } from './seal.js';
import { sqliteAppender } from './sqlite-append.js';
import type { AuditEventInput } from './types.js';

export interface WriterRequest {
  readonly id: number;
  readonly events: readonly AuditEventInput[];
  /** The heads the main thread knows this process wrote (both slots), for the rollback check. */
  readonly noted?: Partial<Record<HeadSlot, NotedHead>>;
}
export interface WriterData {
  readonly file: string;
  /** The seal key for SQL secrets (seal.ts), its bytes in base64. */
  readonly seal?: { readonly id: string; readonly key: string };
  /** The chain head's seal key (head-seal.ts), its bytes in base64, and earlier master keys' (a rotation). */
  readonly head?: { readonly id: string; readonly key: string; readonly previous?: ReadonlyArray<{ readonly id: string; readonly key: string }> };
}
export interface WriterReply {
  readonly id: number;
  readonly error?: string;
  /** The head the batch left (the main thread notes it for `audit verify`). */
  readonly head?: { readonly seq: number; readonly hash: string };
  /** The batch recorded a rollback (audit.rollback_detected): the main thread resets its heads. */
  readonly reported?: true;
}

const port = parentPort;
if (port) {
  const data = workerData as WriterData;
  if (data.seal) setAuditSealKey({ id: data.seal.id, key: Buffer.from(data.seal.key, 'base64') });
  if (data.head) {
    setAuditHeadKey({ id: data.head.id, key: Buffer.from(data.head.key, 'base64') },
      (data.head.previous ?? []).map((k) => ({ id: k.id, key: Buffer.from(k.key, 'base64') })));
  }
  const db = new Database(data.file, { fileMustExist: true });
  configureSqlite(db);
  const append = sqliteAppender(db);
  port.on('message', (req: WriterRequest) => {
    let reply: WriterReply;
    try {
      // The main thread keeps what this process wrote (its own head and this thread's): checked here.
      setNotedSlots(req.noted ?? {});
      const rows = append(req.events.map(prepareEdgeEvent));
      const last = rows[rows.length - 1];
      reply = last === undefined ? { id: req.id }
        : { id: req.id, head: { seq: last.seq, hash: last.hash }, ...(rows.some((r) => r.type === ROLLBACK_DETECTED) ? { reported: true } : {}) };
    } catch (e) {
      reply = { id: req.id, error: e instanceof Error ? e.message : String(e) };
    }
    port.postMessage(reply);
  });
}
