import type { StoreConnection } from '../store/db.js';
import { noteAppended } from './head-seal.js';
import { appendPrepared, prepareEdgeEvent } from './append.js';
import { sqliteAppender } from './sqlite-append.js';
import { threadSink } from './thread-sink.js';
import type { AuditSink } from './sink.js';

/**
 * Appends each batch to the hash chain in ONE transaction: all of it commits, or none of it.
 * Events come from the network edge, so each is fitted by prepareEdgeEvent (never refused).
 */
export function storeSink(store: Pick<StoreConnection, 'db' | 'dialect' | 'sqlite'>): AuditSink {
  const { db, dialect, sqlite } = store;
  if (sqlite) {
    // SQLite: cached statements on the store's one connection, held so no transaction interleaves.
    let append: ReturnType<typeof sqliteAppender> | undefined;
    return {
      async record(events) {
        if (events.length === 0) return;
        const prepared = events.map(prepareEdgeEvent);
        await db.connection().execute(async () => {
          append ??= sqliteAppender(sqlite);
          append(prepared);
        });
      },
    };
  }
  return {
    async record(events) {
      if (events.length === 0) return;
      const prepared = events.map(prepareEdgeEvent);
      const rows = await db.transaction().execute((tx) => appendPrepared(tx, dialect, prepared));
      noteAppended(rows); // committed
    },
  };
}

/**
 * The sink for high-volume events (the gateway's statements): on a SQLite file store, a writer
 * thread with its own connection (threadSink), so redaction, hashing and inserts leave the event
 * loop that relays traffic; otherwise (PostgreSQL, in-memory SQLite) storeSink. close() after the
 * batcher feeding it is drained.
 */
export function highVolumeSink(store: Pick<StoreConnection, 'db' | 'dialect' | 'sqlite'>): AuditSink & { close(): Promise<void> } {
  const direct = storeSink(store);
  if (store.sqlite && !store.sqlite.memory) return threadSink(store.sqlite.name, direct);
  return { record: (events) => direct.record(events), close: async () => {} };
}
