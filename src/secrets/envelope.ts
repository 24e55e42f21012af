import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { ConfigError } from '../domain/errors.js';

/** A 256-bit AES key and the id written into every envelope it seals. */
export interface SecretKey {
  readonly id: string;
  readonly key: Buffer;
}

export interface SecretBoxKeys {
  /** Seals new secrets. */
  readonly current: SecretKey;
  /** Still opens secrets sealed before a rotation. */
  readonly previous?: readonly SecretKey[];
}

/**
 * Encrypts credentials at rest. Envelope: `v1.<keyId>.<iv>.<ciphertext>.<tag>` (base64url parts),
 * AES-256-GCM with a random 96-bit IV. The associated data is `v1.<keyId>.` + the caller's
 * context (e.g. the grant id), so an envelope only opens for the row it was sealed for.
 */
export interface SecretBox {
  seal(plaintext: string, aad: string): string;
  /** Throws SecretBoxError if the envelope was altered, the context differs or the key is unknown. */
  open(envelope: string, aad: string): string;
  /** True when the envelope was sealed with a key other than the current one (re-seal it). */
  needsRotation(envelope: string): boolean;
}

/** Opening failed. The message never contains key material or plaintext. */
export class SecretBoxError extends Error {
  override name = 'SecretBoxError';
}

const VERSION = 'v1';
const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;
const B64URL = /^[A-Za-z0-9_-]*$/;

export function createSecretBox(keys: SecretBoxKeys): SecretBox {
  const byId = new Map<string, Buffer>();
  for (const k of [keys.current, ...(keys.previous ?? [])]) {
    if (!KEY_ID.test(k.id)) throw new ConfigError(`secret key id ${JSON.stringify(k.id)} must match ${KEY_ID.source}`);
    if (k.key.length !== 32) throw new ConfigError(`secret key ${k.id} must be 32 bytes, got ${k.key.length}`);
    if (!byId.has(k.id)) byId.set(k.id, Buffer.from(k.key));
  }
  const current = keys.current.id;

  return {
    seal(plaintext, aad) {
      const key = byId.get(current) as Buffer;
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(`${VERSION}.${current}.${aad}`, 'utf8'));
      const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return [VERSION, current, b64(iv), b64(ct), b64(cipher.getAuthTag())].join('.');
    },
    open(envelope, aad) {
      const parts = parse(envelope);
      const key = byId.get(parts.keyId);
      if (!key) throw new SecretBoxError(`secret was sealed with unknown key ${parts.keyId}`);
      const decipher = createDecipheriv('aes-256-gcm', key, parts.iv, { authTagLength: 16 });
      decipher.setAAD(Buffer.from(`${VERSION}.${parts.keyId}.${aad}`, 'utf8'));
      decipher.setAuthTag(parts.tag);
      try {
        return Buffer.concat([decipher.update(parts.ct), decipher.final()]).toString('utf8');
      } catch {
        throw new SecretBoxError('secret could not be decrypted: it was altered or belongs to another record');
      }
    },
    needsRotation(envelope) {
      return parse(envelope).keyId !== current;
    },
  };
}

function parse(envelope: string): { keyId: string; iv: Buffer; ct: Buffer; tag: Buffer } {
  const parts = envelope.split('.');
  const [version, keyId, iv, ct, tag] = parts;
  if (parts.length !== 5 || version !== VERSION || keyId === undefined || iv === undefined || ct === undefined || tag === undefined) {
    throw new SecretBoxError('not a v1 secret envelope');
  }
  if (!KEY_ID.test(keyId) || ![iv, ct, tag].every((p) => B64URL.test(p))) throw new SecretBoxError('malformed secret envelope');
  const out = { keyId, iv: Buffer.from(iv, 'base64url'), ct: Buffer.from(ct, 'base64url'), tag: Buffer.from(tag, 'base64url') };
  if (out.iv.length !== 12 || out.tag.length !== 16 || b64(out.iv) !== iv || b64(out.tag) !== tag || b64(out.ct) !== ct) {
    throw new SecretBoxError('malformed secret envelope');
  }
  return out;
}

function b64(b: Buffer): string {
  return b.toString('base64url');
}
