import type { AuditEventRow } from '../store/schema.js';

export type { AuditEventRow };

/** What a caller records. `data` is redacted before it is stored or hashed. */
export interface AuditEventInput {
  type: string;
  actor: string;
  requestId?: string;
  grantId?: string;
  data?: Record<string, unknown>;
  at: Date | number;
}

/** A stored event with its data decoded, as queries and exports return it. */
export interface AuditEvent {
  seq: number;
  at: number;
  type: string;
  actor: string;
  requestId: string | null;
  grantId: string | null;
  data: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export function decodeRow(row: AuditEventRow): AuditEvent {
  return {
    seq: row.seq,
    at: row.at,
    type: row.type,
    actor: row.actor,
    requestId: row.request_id,
    grantId: row.grant_id,
    data: JSON.parse(row.data) as Record<string, unknown>,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}
