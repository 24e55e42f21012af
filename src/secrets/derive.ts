import { hkdfSync } from 'node:crypto';
import { ConfigError } from '../domain/errors.js';
import { createSecretBox, type SecretBox, type SecretKey } from './envelope.js';

const SALT = 'hallpass/hkdf/v1';

/**
 * Derives an independent subkey of the master key for one purpose (HKDF-SHA256), so one key
 * never serves two uses: deriveKey(master, 'secret-envelope'), deriveKey(master, 'gateway-token-hmac').
 */
export function deriveKey(master: Buffer, purpose: string, length = 32): Buffer {
  if (master.length !== 32) throw new ConfigError(`master key must be 32 bytes, got ${master.length}`);
  if (!/^[a-z0-9][a-z0-9.:/-]{0,127}$/.test(purpose)) throw new ConfigError(`bad key purpose ${JSON.stringify(purpose)}`);
  return Buffer.from(hkdfSync('sha256', master, SALT, `hallpass:${purpose}`, length));
}

/**
 * The envelope key for a master key. Its id is a fingerprint of the master key (derived, so it
 * reveals nothing), so envelopes name which master key sealed them and rotation needs no bookkeeping.
 */
export function envelopeKey(master: Buffer): SecretKey {
  return { id: `m${deriveKey(master, 'key-id', 6).toString('hex')}`, key: deriveKey(master, 'secret-envelope') };
}

/** The SecretBox for a master key; `previous` master keys still open what they sealed (rotation). */
export function secretBoxFor(master: Buffer, previous: readonly Buffer[] = []): SecretBox {
  return createSecretBox({ current: envelopeKey(master), previous: previous.map(envelopeKey) });
}

/**
 * The key that seals secrets found in audited SQL text (src/audit/seal.ts), with the same kind of
 * fingerprint id as envelopeKey: what a statement masked can be recovered by whoever holds the
 * master key, through the audited reveal (`hallpass audit reveal`).
 */
export function auditSealKey(master: Buffer): SecretKey {
  return { id: `m${deriveKey(master, 'key-id', 6).toString('hex')}`, key: deriveKey(master, 'audit-seal') };
}

/**
 * The key that seals the audit chain's head (src/audit/head-seal.ts): only a holder of the master
 * key can write a head that `audit verify` accepts.
 */
export function auditHeadKey(master: Buffer): SecretKey {
  return { id: `m${deriveKey(master, 'key-id', 6).toString('hex')}`, key: deriveKey(master, 'audit-head-seal') };
}
