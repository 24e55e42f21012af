import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { notedSlots, setNotedSlots, type HeadSlot, type NotedHead } from '../audit/head-seal.js';

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
    const kept = JSON.parse(readFileSync(file, 'utf8')) as { store?: unknown; heads?: Record<string, { seq?: unknown; hash?: unknown }>; seq?: unknown; hash?: unknown };
    // The first form of this file held one head ({seq, hash}): read as the main thread's.
    const heads = kept.heads ?? (kept.seq !== undefined ? { main: { seq: kept.seq, hash: kept.hash } } : undefined);
    if (kept.store === store && heads !== undefined) {
      const slots: Partial<Record<HeadSlot, NotedHead>> = {};
      for (const slot of ['main', 'thread'] as const) {
        const h = heads[slot];
        if (h && Number.isSafeInteger(h.seq) && typeof h.hash === 'string' && /^[0-9a-f]{64}$/.test(h.hash)) slots[slot] = { seq: h.seq as number, hash: h.hash };
      }
      setNotedSlots(slots);
    }
  } catch {
    // none yet (or unreadable: then nothing is known, as on a first start)
  }
  let last = '';
  const save = () => {
    const heads = notedSlots();
    if (heads.main === undefined && heads.thread === undefined) return;
    const text = JSON.stringify({ store, heads });
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
