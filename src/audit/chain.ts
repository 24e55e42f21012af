import { hash } from 'node:crypto';
import { canonicalScalar } from './canonical.js';

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
  // The fields are scalars in key order, so the canonical text is spliced directly (this runs once
  // per audited statement); one-shot hashing of the whole string.
  const text =
    `${prevHash}\n{"actor":${JSON.stringify(f.actor)},"at":${canonicalScalar(f.at)},"data":${f.dataJson},` +
    `"grantId":${canonicalScalar(f.grantId)},"requestId":${canonicalScalar(f.requestId)},` +
    `"seq":${canonicalScalar(f.seq)},"type":${JSON.stringify(f.type)}}`;
  return hash('sha256', text, 'hex');
}
