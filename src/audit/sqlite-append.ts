import type { SqliteHandle } from '../store/db.js';
import { chainRows, extendsSpan, grantSpans, withHeadCheck, type PreparedEvent } from './append.js';
import { checkHeadSeal, HEAD_KEY_ROTATED, lostHeadSync, noteAppended, RECENT_REPORTS, RECENT_ROTATIONS, ROLLBACK_DETECTED, sealHead } from './head-seal.js';
import type { AuditEventRow } from './types.js';

/**
 * appendPrepared for a SQLite store, as one synchronous `BEGIN IMMEDIATE … COMMIT` on cached
 * prepared statements: the gateway appends a batch per few milliseconds, and compiling and
 * preparing a fresh multi-row INSERT for each (Kysely's path) cost more than the inserts.
 * The caller must hold the store's single connection (`db.connection()`), so that no Kysely
 * transaction is open on it meanwhile. All of the batch commits, or none of it.
 */
export function sqliteAppender(sqlite: SqliteHandle): (prepared: readonly PreparedEvent[]) => AuditEventRow[] {
  const begin = sqlite.prepare('BEGIN IMMEDIATE');
  const commit = sqlite.prepare('COMMIT');
  const rollback = sqlite.prepare('ROLLBACK');
  const readHead = sqlite.prepare('SELECT seq, hash, seal FROM audit_head WHERE id = 1');
  const hashAt = sqlite.prepare('SELECT hash FROM audit_events WHERE seq = ?');
  const recentReports = sqlite.prepare('SELECT data FROM audit_events WHERE type = ? ORDER BY seq DESC LIMIT ?');
  const insert = sqlite.prepare(
    'INSERT INTO audit_events (seq, at, type, actor, request_id, grant_id, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const writeHead = sqlite.prepare('UPDATE audit_head SET seq = ?, hash = ?, seal = ? WHERE id = 1');
  const lastSpan = sqlite.prepare('SELECT last_seq FROM audit_grant_spans WHERE grant_id = ? ORDER BY last_seq DESC LIMIT 1');
  const extendSpan = sqlite.prepare('UPDATE audit_grant_spans SET last_seq = ? WHERE grant_id = ? AND last_seq = ?');
  const addSpan = sqlite.prepare('INSERT INTO audit_grant_spans (grant_id, first_seq, last_seq) VALUES (?, ?, ?)');
  return (prepared) => {
    if (prepared.length === 0) return [];
    begin.run();
    try {
      const head = readHead.get() as { seq: number; hash: string; seal: string | null } | undefined;
      if (!head) throw new Error('audit_head row is missing: the store was not migrated');
      const lost = lostHeadSync(head, (seq) => (hashAt.get(seq) as { hash: string } | undefined)?.hash,
        () => (recentReports.all(ROLLBACK_DETECTED, RECENT_REPORTS) as Array<{ data: string }>).map((r) => r.data));
      const rotations = Number(head.seq) > 0 && checkHeadSeal(Number(head.seq), head.hash, head.seal) === 'previous'
        ? (recentReports.all(HEAD_KEY_ROTATED, RECENT_ROTATIONS) as Array<{ data: string }>).map((r) => r.data)
        : [];
      const rows = chainRows(head, withHeadCheck(head, prepared, lost, rotations));
      for (const r of rows) insert.run(r.seq, r.at, r.type, r.actor, r.request_id, r.grant_id, r.data, r.prev_hash, r.hash);
      for (const [grantId, span] of grantSpans(rows)) {
        const prev = lastSpan.get(grantId) as { last_seq: number } | undefined;
        if (prev !== undefined && extendsSpan(prev.last_seq, span)) extendSpan.run(span.last, grantId, prev.last_seq);
        else addSpan.run(grantId, span.first, span.last);
      }
      const last = rows[rows.length - 1] as AuditEventRow;
      writeHead.run(last.seq, last.hash, sealHead(last.seq, last.hash));
      commit.run();
      noteAppended(rows);
      return rows;
    } catch (e) {
      if (sqlite.inTransaction) rollback.run(); // some errors end the transaction by themselves

      throw e;
    }
  };
}
