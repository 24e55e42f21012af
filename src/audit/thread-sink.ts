import type { Worker } from 'node:worker_threads';
import { newModuleWorker } from '../util/worker.js';
import type { AuditSink } from './sink.js';
import type { AuditEventInput } from './types.js';
import { auditHeadKeyInUse, noteHead, previousAuditHeadKeys, notedSlots, resetNotedHeads } from './head-seal.js';
import { auditSealKeyInUse } from './seal.js';
import type { WriterData, WriterReply, WriterRequest } from './writer-thread.js';

/** The writer thread, with this process's keys (it seals SQL secrets and the chain head as this thread does). */
function newWriterThread(file: string): Worker {
  const k = auditSealKeyInUse();
  const h = auditHeadKeyInUse();
  const workerData: WriterData = {
    file,
    ...(k ? { seal: { id: k.id, key: k.key.toString('base64') } } : {}),
    ...(h ? { head: { id: h.id, key: h.key.toString('base64'), previous: previousAuditHeadKeys().map((p) => ({ id: p.id, key: p.key.toString('base64') })) } } : {}),
  };
  return newModuleWorker(import.meta.url, 'writer-thread', workerData);
}

export interface ThreadSink extends AuditSink {
  /** Stops the writer thread (call after the batcher is drained); a later record() starts a new one. */
  close(): Promise<void>;
}

/**
 * An AuditSink that appends in a writer thread with its own connection to the SQLite store file
 * (see writer-thread.ts), so the relaying event loop only hands batches over. A batch the thread
 * cannot take (an event that cannot be cloned) goes to `fallback` on this thread instead. If the
 * thread dies, the batches in flight are rejected (the batcher retries them) and the next batch
 * starts a new thread. A thread that dies after committing but before answering makes the
 * batcher store that batch twice: events are duplicated then, never lost.
 */
export function threadSink(file: string, fallback: AuditSink): ThreadSink {
  let worker: Worker | undefined;
  let nextId = 1;
  const waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();

  const failAll = (e: Error): void => {
    for (const w of waiting.values()) w.reject(e);
    waiting.clear();
  };

  const start = (): Worker => {
    const w = newWriterThread(file);
    w.on('message', (r: WriterReply) => {
      const p = waiting.get(r.id);
      if (!p) return;
      waiting.delete(r.id);
      // The thread's head, in its own slot; a reported rollback resets both (head-seal.ts).
      if (r.head !== undefined) {
        if (r.reported) resetNotedHeads(r.head.seq, r.head.hash);
        else noteHead(r.head.seq, r.head.hash, 'thread');
      }
      if (r.error === undefined) p.resolve();
      else p.reject(new Error(`audit writer: ${r.error}`));
    });
    w.on('error', (e) => {
      if (worker === w) worker = undefined;
      failAll(e);
    });
    w.on('exit', (code) => {
      if (worker === w) worker = undefined;
      failAll(new Error(`audit writer thread exited (code ${code})`));
    });
    return w;
  };

  return {
    record(events: readonly AuditEventInput[]): Promise<void> {
      if (events.length === 0) return Promise.resolve();
      worker ??= start();
      const w = worker;
      const id = nextId++;
      // The thread checks that the log still holds every head this process wrote (lostHead): the
      // main thread's and its own, kept here apart so neither replaces the other, and so that a
      // thread started anew still knows its predecessor's (third and fourth reviews).
      const req: WriterRequest = { id, events, noted: notedSlots() };
      return new Promise<void>((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        try {
          w.postMessage(req);
        } catch {
          // Not cloneable (a function or symbol in some event's data): append on this thread.
          waiting.delete(id);
          fallback.record(events).then(resolve, reject);
        }
      });
    },
    async close() {
      const w = worker;
      worker = undefined;
      if (w) await w.terminate();
    },
  };
}
