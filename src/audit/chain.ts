import { createHash } from 'node:crypto';
import { canonicalJSON } from './canonical.js';

/** prev_hash of event 1, and the head's hash before any event. */
export const GENESIS_HASH = '0'.repeat(64);

/** The fields an event's hash covers, as stored. `dataJson` is the canonical JSON of `data`. */
export interface ChainFields {
  seq: number;
  at: number;
  type: string;
  actor: string;
  requestId: string | null;
  grantId: string | null;
  dataJson: string;
}

/**
 * hash = hex(sha256(prevHash + "\n" + canonicalJSON({actor, at, data, grantId, requestId, seq, type}))).
 * `data` is spliced in as its stored canonical JSON text, which is exactly canonicalJSON(data)
 * for rows written by appendEvents; an edited `data` column therefore changes the hash.
 */
export function chainHash(prevHash: string, f: ChainFields): string {
  const payload =
    `{"actor":${JSON.stringify(f.actor)},"at":${canonicalJSON(f.at)},"data":${f.dataJson},` +
    `"grantId":${canonicalJSON(f.grantId)},"requestId":${canonicalJSON(f.requestId)},` +
    `"seq":${canonicalJSON(f.seq)},"type":${JSON.stringify(f.type)}}`;
  return createHash('sha256').update(prevHash).update('\n').update(payload).digest('hex');
}
