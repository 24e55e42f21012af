import { describe, expect, it } from 'vitest';
import { MAX_PASSWORD_LENGTH, dummyVerify, hashPassword, needsRehash, verifyPassword } from './password.js';

describe('password hashing (scrypt)', () => {
  it('hashes in the self-describing format with a random salt', async () => {
    const a = await hashPassword('correct horse');
    const b = await hashPassword('correct horse');
    expect(a).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/);
    expect(a).not.toBe(b);
    expect(needsRehash(a)).toBe(false);
  });

  it('verifies the right password and refuses a wrong one', async () => {
    const h = await hashPassword('correct horse');
    expect(await verifyPassword('correct horse', h)).toBe(true);
    expect(await verifyPassword('correct horsf', h)).toBe(false);
    expect(await verifyPassword('', h)).toBe(false);
  });

  it('treats Unicode-equivalent spellings as the same password (NFKC)', async () => {
    const h = await hashPassword('caf\u00e9');
    expect(await verifyPassword('cafe\u0301', h)).toBe(true);
  });

  it('honours the parameters written in the hash', async () => {
    const weak = await hashPassword('pw', { N: 1024, r: 8, p: 1 });
    expect(weak.startsWith('scrypt$1024$8$1$')).toBe(true);
    expect(await verifyPassword('pw', weak)).toBe(true);
    expect(needsRehash(weak)).toBe(true);
  });

  it('returns false, never throws, for stored values it does not understand or that would cost too much', async () => {
    const h = await hashPassword('pw');
    const [, , r, p, salt, hash] = h.split('$');
    for (const bad of ['', 'plain', 'bcrypt$2b$...', `scrypt$1000$${r}$${p}$${salt}$${hash}`, `scrypt$${2 ** 24}$8$1$${salt}$${hash}`, `scrypt$32768$8$1$${salt}`]) {
      expect(await verifyPassword('pw', bad), bad).toBe(false);
    }
  });

  it('refuses empty and over-long passwords when hashing; over-long ones never verify', async () => {
    await expect(hashPassword('')).rejects.toThrow('empty');
    await expect(hashPassword('x'.repeat(MAX_PASSWORD_LENGTH + 1))).rejects.toThrow('at most');
    const h = await hashPassword('x'.repeat(MAX_PASSWORD_LENGTH));
    expect(await verifyPassword('x'.repeat(MAX_PASSWORD_LENGTH), h)).toBe(true);
    expect(await verifyPassword('x'.repeat(MAX_PASSWORD_LENGTH + 1), h)).toBe(false);
  });

  it('dummyVerify (for unknown users) always says no', async () => {
    expect(await dummyVerify('anything')).toBe(false);
    expect(await dummyVerify('dummy')).toBe(false);
  });
});
