import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { noteHead, notedHead } from '../audit/head-seal.js';

/**
 * The newest audit head this server wrote, kept in its data directory, outside the database: a
 * server that restarts starts from it, so a log cut back (or wiped, the head set back to the
 * empty log) while the server was down is caught at its first append (`audit.rollback_detected`)
 * and by `audit verify` until then (second review, 2026-12-02: a wipe before a restart went
 * unnoticed). With a PostgreSQL store, whoever can write the database cannot reach this file; with
 * SQLite both live in the data directory, and the file protects only against edits of the
 * database alone. The file names its store by a hash of its URL (password removed), so a data
 * directory pointed at another store ignores it.
 */
export function startAuditAnchor(dataDir: string, storeUrl: string, everyMs = 10_000): () => void {
  const file = join(dataDir, 'audit-anchor.json');
  const store = storeId(storeUrl);
  try {
    const kept = JSON.parse(readFileSync(file, 'utf8')) as { store?: unknown; seq?: unknown; hash?: unknown };
    if (kept.store === store && Number.isSafeInteger(kept.seq) && typeof kept.hash === 'string' && /^[0-9a-f]{64}$/.test(kept.hash)) {
      noteHead(kept.seq as number, kept.hash);
    }
  } catch {
    // none yet (or unreadable: then nothing is known, as on a first start)
  }
  let last = '';
  const save = () => {
    const h = notedHead();
    if (h === undefined) return;
    const text = JSON.stringify({ store, seq: h.seq, hash: h.hash });
    if (text === last) return;
    try {
      writeFileSync(`${file}.tmp`, text, { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
      last = text;
    } catch {
      // a full or read-only disk: the in-memory head still guards this run
    }
  };
  const timer = setInterval(save, everyMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    save();
  };
}

function storeId(url: string): string {
  let id = url;
  try {
    const u = new URL(url);
    u.password = '';
    id = u.toString();
  } catch {
    // a file path
  }
  return createHash('sha256').update(id).digest('hex');
}
