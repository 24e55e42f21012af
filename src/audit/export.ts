import type { Kysely } from 'kysely';
import type { DB } from '../store/schema.js';
import { canonicalJSON } from './canonical.js';
import { csvRecord } from './csv.js';
import { narrowedFilters, queryEvents, type AuditFilters } from './query.js';
import type { AuditEvent } from './types.js';

export type ExportFormat = 'jsonl' | 'csv';

export const CSV_COLUMNS = ['seq', 'at', 'type', 'actor', 'request_id', 'grant_id', 'data', 'prev_hash', 'hash'] as const;

const PAGE = 1000;

/**
 * Streams matching events to `write` in seq order, a page at a time, awaiting each write
 * (back-pressure). JSONL lines are the canonical JSON of each event with every field the hash
 * covers, so an unfiltered export can be checked offline with verifyExport. CSV (RFC 4180, with
 * a header row) is for people: `at` is ISO 8601 and formula-like cells are neutralised.
 * Returns the number of events written.
 */
export async function exportEvents(
  db: Kysely<DB>,
  format: ExportFormat,
  write: (chunk: string) => void | Promise<void>,
  filters: AuditFilters = {},
): Promise<number> {
  if (format === 'csv') await write(csvRecord([...CSV_COLUMNS]));
  // The head is read and a time window becomes its seq range once, not once a page: the export is
  // the log as it was when it started.
  const narrowed = await narrowedFilters(db, filters);
  if (narrowed === undefined) return 0;
  let afterSeq = narrowed.afterSeq ?? 0;
  let count = 0;
  for (;;) {
    const events = await queryEvents(db, { ...narrowed, afterSeq, limit: PAGE }, { narrowWindow: false });
    if (events.length === 0) return count;
    await write(events.map(format === 'jsonl' ? jsonLine : csvLine).join(''));
    count += events.length;
    afterSeq = events[events.length - 1]?.seq ?? afterSeq;
    if (events.length < PAGE) return count;
  }
}

export function jsonLine(e: AuditEvent): string {
  return `${canonicalJSON(e)}\n`;
}

function csvLine(e: AuditEvent): string {
  return csvRecord([e.seq, new Date(e.at).toISOString(), e.type, e.actor, e.requestId, e.grantId, canonicalJSON(e.data), e.prevHash, e.hash]);
}
