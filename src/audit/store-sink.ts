import type { Kysely } from 'kysely';
import type { Dialect } from '../store/db.js';
import type { DB } from '../store/schema.js';
import { appendEvents } from './append.js';
import type { AuditSink } from './sink.js';

/** Appends each batch to the hash chain in ONE transaction: all of it commits, or none of it. */
export function storeSink(db: Kysely<DB>, dialect: Dialect): AuditSink {
  return {
    async record(events) {
      if (events.length === 0) return;
      await db.transaction().execute((tx) => appendEvents(tx, dialect, events));
    },
  };
}
