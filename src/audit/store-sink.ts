import type { StoreConnection } from '../store/db.js';
import { appendPrepared, prepareEvent, type PreparedEvent } from './append.js';
import { sqliteAppender } from './sqlite-append.js';
import type { AuditSink } from './sink.js';
import type { AuditEventInput } from './types.js';

const MAX_TEXT = 200;

/**
 * Appends each batch to the hash chain in ONE transaction: all of it commits, or none of it.
 * Events come from the network edge (a gateway client's claimed user name), so one that does not
 * fit the log's shape is kept, not allowed to block every batch after it: an empty or over-long
 * actor becomes a placeholder with the original in `data.claimedActor`; anything still invalid
 * is recorded as `audit.invalid_event` saying why.
 */
export function storeSink(store: Pick<StoreConnection, 'db' | 'dialect' | 'sqlite'>): AuditSink {
  const { db, dialect, sqlite } = store;
  if (sqlite) {
    // SQLite: cached statements on the store's one connection, held so no transaction interleaves.
    let append: ReturnType<typeof sqliteAppender> | undefined;
    return {
      async record(events) {
        if (events.length === 0) return;
        const prepared = events.map(prepareSafely);
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
      const prepared = events.map(prepareSafely);
      await db.transaction().execute((tx) => appendPrepared(tx, dialect, prepared));
    },
  };
}

function prepareSafely(e: AuditEventInput): PreparedEvent {
  const actorOk = typeof e.actor === 'string' && e.actor.length > 0 && e.actor.length <= MAX_TEXT;
  const fitted: AuditEventInput = actorOk ? e : {
    ...e,
    actor: typeof e.actor === 'string' && e.actor.length > 0 ? `${e.actor.slice(0, MAX_TEXT - 1)}…` : '(none)',
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
