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
import { sqliteAppender } from './sqlite-append.js';
import type { AuditEventInput } from './types.js';

export interface WriterRequest {
  readonly id: number;
  readonly events: readonly AuditEventInput[];
}
export interface WriterReply {
  readonly id: number;
  readonly error?: string;
}

const port = parentPort;
if (port) {
  const db = new Database((workerData as { file: string }).file, { fileMustExist: true });
  configureSqlite(db);
  const append = sqliteAppender(db);
  port.on('message', (req: WriterRequest) => {
    let reply: WriterReply;
    try {
      append(req.events.map(prepareEdgeEvent));
      reply = { id: req.id };
    } catch (e) {
      reply = { id: req.id, error: e instanceof Error ? e.message : String(e) };
    }
    port.postMessage(reply);
  });
}
