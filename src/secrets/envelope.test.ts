import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { deriveKey, envelopeKey, secretBoxFor } from './derive.js';
import { SecretBoxError, createSecretBox } from './envelope.js';

const k1 = { id: 'k1', key: randomBytes(32) };
const k2 = { id: 'k2', key: randomBytes(32) };

describe('SecretBox (AES-256-GCM envelope)', () => {
  const box = createSecretBox({ current: k1 });

  it('round-trips, with a fresh IV every time', () => {
    const a = box.seal('pa55 wörd', 'grt_1');
    const b = box.seal('pa55 wörd', 'grt_1');
    expect(a).toMatch(/^v1\.k1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
    expect(a).not.toBe(b);
    expect(box.open(a, 'grt_1')).toBe('pa55 wörd');
    expect(box.open(box.seal('', 'grt_1'), 'grt_1')).toBe('');
  });

  it('refuses an envelope with any byte changed', () => {
    const env = box.seal('secret-password', 'grt_1');
    const [, , iv = '', ct = '', tag = ''] = env.split('.');
    const raw = Buffer.concat([Buffer.from(iv, 'base64url'), Buffer.from(ct, 'base64url'), Buffer.from(tag, 'base64url')]);
    for (let i = 0; i < raw.length; i++) {
      const t = Buffer.from(raw);
      t[i] = (t[i] ?? 0) ^ 0x01;
      const tampered = ['v1', 'k1', t.subarray(0, 12), t.subarray(12, 12 + Buffer.from(ct, 'base64url').length), t.subarray(raw.length - 16)]
        .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
        .join('.');
      expect(() => box.open(tampered, 'grt_1'), `byte ${i}`).toThrow(SecretBoxError);
    }
  });

  it('refuses a different context (a ciphertext swapped between rows)', () => {
    const env = box.seal('x', 'grt_1');
    expect(() => box.open(env, 'grt_2')).toThrow('altered or belongs to another record');
  });

  it('refuses the wrong key, and a key id relabelled onto another key', () => {
    const env = box.seal('x', 'grt_1');
    expect(() => createSecretBox({ current: { id: 'k1', key: randomBytes(32) } }).open(env, 'grt_1')).toThrow(SecretBoxError);
    expect(() => createSecretBox({ current: k2 }).open(env, 'grt_1')).toThrow('unknown key k1');
    const both = createSecretBox({ current: k2, previous: [k1] });
    expect(() => both.open(env.replace('v1.k1.', 'v1.k2.'), 'grt_1')).toThrow(SecretBoxError);
  });

  it('refuses malformed envelopes', () => {
    for (const bad of ['', 'v1', 'v2.k1.a.b.c', 'v1.k1.a.b', 'v1.k1.!!.b.c', 'v1.k1.AAAA.AAAA.AAAA', `${box.seal('x', 'a')}.extra`]) {
      expect(() => box.open(bad, 'a'), bad).toThrow(SecretBoxError);
    }
  });

  it('rotates: the new box opens old envelopes, seals with the new key, and says what to re-seal', () => {
    const old = box.seal('old', 'grt_1');
    const rotated = createSecretBox({ current: k2, previous: [k1] });
    expect(rotated.open(old, 'grt_1')).toBe('old');
    expect(rotated.needsRotation(old)).toBe(true);
    const fresh = rotated.seal('new', 'grt_1');
    expect(fresh.startsWith('v1.k2.')).toBe(true);
    expect(rotated.needsRotation(fresh)).toBe(false);
  });

  it('rejects bad keys at construction', () => {
    expect(() => createSecretBox({ current: { id: 'k', key: randomBytes(16) } })).toThrow('32 bytes');
    expect(() => createSecretBox({ current: { id: 'a.b', key: randomBytes(32) } })).toThrow('key id');
  });
});

describe('deriveKey (HKDF)', () => {
  const master = randomBytes(32);

  it('is deterministic per purpose and independent across purposes', () => {
    expect(deriveKey(master, 'secret-envelope').equals(deriveKey(master, 'secret-envelope'))).toBe(true);
    expect(deriveKey(master, 'secret-envelope').equals(deriveKey(master, 'gateway-token-hmac'))).toBe(false);
    expect(deriveKey(master, 'secret-envelope').equals(master)).toBe(false);
    expect(deriveKey(master, 'x', 64)).toHaveLength(64);
  });

  it('matches RFC 5869 HKDF-SHA256 with the documented salt and info', async () => {
    const { createHmac } = await import('node:crypto');
    const prk = createHmac('sha256', 'hallpass/hkdf/v1').update(master).digest();
    const okm = createHmac('sha256', prk).update(Buffer.concat([Buffer.from('hallpass:gateway-token-hmac'), Buffer.from([1])])).digest();
    expect(deriveKey(master, 'gateway-token-hmac').equals(okm)).toBe(true);
  });

  it('refuses a short master key or an empty purpose', () => {
    expect(() => deriveKey(randomBytes(16), 'x')).toThrow('32 bytes');
    expect(() => deriveKey(master, '')).toThrow('purpose');
  });

  it('secretBoxFor rotates between master keys', () => {
    const next = randomBytes(32);
    const env = secretBoxFor(master).seal('pw', 'grt_9');
    expect(env.split('.')[1]).toBe(envelopeKey(master).id);
    expect(secretBoxFor(next, [master]).open(env, 'grt_9')).toBe('pw');
    expect(() => secretBoxFor(next).open(env, 'grt_9')).toThrow('unknown key');
  });
});
