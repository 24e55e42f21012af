import { canonicalJSON } from './canonical.js';
import type { AuditEventRow } from './types.js';
import { ChainWalker, type Checkpoint, type VerifyResult } from './verify.js';

export interface VerifyExportOptions {
  /**
   * The export must end exactly here (the head when it was made, recorded elsewhere). Without it
   * a cut-off tail cannot be told from a complete export.
   */
  readonly expectedHead?: { seq: number; hash: string };
  /** A head recorded earlier: the export must hold this event with this hash (it may go on past it). */
  readonly checkpoint?: Checkpoint;
  /**
   * Accept an export that starts after event 1, trusting its first event's prevHash as the
   * starting point (default false: the export must start at event 1).
   */
  readonly allowPartial?: boolean;
}

/**
 * Verifies a JSONL export offline (no database): every line is one event; seq must run 1, 2, 3 ...
 * and every hash must match and link. Blank lines are ignored. Never throws for bad input.
 */
export function verifyExport(lines: Iterable<string>, opts: VerifyExportOptions = {}): VerifyResult {
  let walker: ChainWalker | undefined;
  let lineNo = 0;
  for (const line of lines) {
    lineNo += 1;
    if (line.trim() === '') continue;
    const row = parseLine(line);
    if (!walker) {
      const start = opts.allowPartial && row ? { seq: row.seq - 1, hash: row.prev_hash } : undefined;
      walker = new ChainWalker(start, opts.checkpoint);
      const cp = opts.checkpoint;
      // A partial export that starts after the checkpoint cannot show it; one starting right
      // after it names the checkpoint's hash as its first prevHash.
      if (start && cp && cp.seq < start.seq) return walker.fail(cp.seq, 'truncated', `the export starts at event ${start.seq + 1}, after the checkpoint at event ${cp.seq}`);
      if (start && cp && cp.seq === start.seq && cp.hash !== start.hash) return walker.fail(cp.seq, 'checkpoint_mismatch', `the export does not follow the checkpoint at event ${cp.seq}`);
    }
    if (!row) return walker.fail(walker.lastSeq + 1, 'malformed', `line ${lineNo} is not an audit event`);
    const fault = walker.step(row);
    if (fault) return fault;
  }
  walker ??= new ChainWalker(undefined, opts.checkpoint);
  if (opts.expectedHead) return walker.checkHead(opts.expectedHead);
  return walker.finish();
}

const EXPORT_FIELDS = ['seq', 'at', 'type', 'actor', 'requestId', 'grantId', 'data', 'prevHash', 'hash'] as const;

function parseLine(line: string): AuditEventRow | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const e = v as Record<string, unknown>;
  // Exactly the fields an export writes: a field the hash does not cover ("approvedBy": "bob")
  // would verify and mislead whoever reads the line (review 2026-12-02).
  const keys = Object.keys(e);
  if (keys.length !== EXPORT_FIELDS.length || !EXPORT_FIELDS.every((k) => Object.hasOwn(e, k))) return undefined;
  const str = (x: unknown): x is string => typeof x === 'string';
  const optStr = (x: unknown): x is string | null => x === null || typeof x === 'string';
  if (!Number.isSafeInteger(e.seq) || !Number.isSafeInteger(e.at)) return undefined;
  if (!str(e.type) || !str(e.actor) || !optStr(e.requestId) || !optStr(e.grantId)) return undefined;
  if (!str(e.prevHash) || !str(e.hash) || typeof e.data !== 'object' || e.data === null || Array.isArray(e.data)) return undefined;
  let data: string;
  try {
    data = canonicalJSON(e.data);
    // The line itself must be the event's canonical JSON, as exports write it: JSON.parse keeps
    // the last of duplicate keys, so an edited line could show a reader one actor and verify as another.
    if (line.trim() !== canonicalJSON(e)) return undefined;
  } catch {
    return undefined;
  }
  return {
    seq: e.seq as number,
    at: e.at as number,
    type: e.type,
    actor: e.actor,
    request_id: e.requestId,
    grant_id: e.grantId,
    data,
    prev_hash: e.prevHash,
    hash: e.hash,
  };
}
