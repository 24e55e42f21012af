import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../domain/errors.js';
import { loadMasterKey } from './master-key.js';

describe('loadMasterKey', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'hp-key-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('generates <dataDir>/master.key with mode 0600 and reuses it', () => {
    const dataDir = join(dir, 'data');
    const first = loadMasterKey({ env: {}, dataDir });
    const path = join(dataDir, 'master.key');
    expect(first).toMatchObject({ source: path, created: true });
    expect(first.key).toHaveLength(32);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(Buffer.from(readFileSync(path, 'utf8').trim(), 'base64').equals(first.key)).toBe(true);
    const again = loadMasterKey({ env: {}, dataDir });
    expect(again.created).toBe(false);
    expect(again.key.equals(first.key)).toBe(true);
  });

  it('refuses a key file that group or others can read', () => {
    loadMasterKey({ env: {}, dataDir: dir });
    const path = join(dir, 'master.key');
    chmodSync(path, 0o644);
    expect(() => loadMasterKey({ env: {}, dataDir: dir })).toThrow(
      `refusing to start: master key file ${path} is readable or writable by group/others (mode 0644); run: chmod 600 ${path}`,
    );
    chmodSync(path, 0o640);
    expect(() => loadMasterKey({ env: {}, dataDir: dir })).toThrow(ConfigError);
  });

  it('refuses a key file that does not hold 32 bytes', () => {
    writeFileSync(join(dir, 'master.key'), 'short\n', { mode: 0o600 });
    expect(() => loadMasterKey({ env: {}, dataDir: dir })).toThrow(/master\.key must be a 32-byte key/);
  });

  it('takes HALLPASS_MASTER_KEY as hex or base64 and creates no file', () => {
    const hex = 'ab'.repeat(32);
    const fromHex = loadMasterKey({ env: { HALLPASS_MASTER_KEY: hex }, dataDir: dir });
    expect(fromHex).toMatchObject({ source: 'HALLPASS_MASTER_KEY', created: false });
    expect(fromHex.key.toString('hex')).toBe(hex);
    const b64 = Buffer.alloc(32, 7).toString('base64');
    expect(loadMasterKey({ env: { HALLPASS_MASTER_KEY: b64 }, dataDir: dir }).key.equals(Buffer.alloc(32, 7))).toBe(true);
    const b64url = Buffer.alloc(32, 0xfb).toString('base64url');
    expect(loadMasterKey({ env: { HALLPASS_MASTER_KEY: b64url }, dataDir: dir }).key.equals(Buffer.alloc(32, 0xfb))).toBe(true);
    expect(() => statSync(join(dir, 'master.key'))).toThrow();
  });

  it('explains a bad HALLPASS_MASTER_KEY without echoing it', () => {
    for (const bad of ['hunter2', 'ab'.repeat(16), Buffer.alloc(16).toString('base64'), 'zz'.repeat(32)]) {
      let err: unknown;
      try {
        loadMasterKey({ env: { HALLPASS_MASTER_KEY: bad }, dataDir: dir });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/^HALLPASS_MASTER_KEY must be a 32-byte key written as 64 hex characters or 44 base64 characters/);
      expect((err as Error).message).not.toContain(bad);
    }
  });

  it('takes earlier master keys from HALLPASS_PREVIOUS_MASTER_KEYS (a rotation), dropping the current one and repeats', () => {
    const cur = 'ab'.repeat(32);
    const old1 = Buffer.alloc(32, 1);
    const old2 = Buffer.alloc(32, 2);
    expect(loadMasterKey({ env: { HALLPASS_MASTER_KEY: cur }, dataDir: dir }).previous).toEqual([]);
    const k = loadMasterKey({
      env: { HALLPASS_MASTER_KEY: cur, HALLPASS_PREVIOUS_MASTER_KEYS: ` ${old1.toString('base64')}, ${cur},${old2.toString('hex')}\n${old1.toString('hex')} ,` },
      dataDir: dir,
    });
    expect(k.previous.map((b) => b.toString('hex'))).toEqual([old1.toString('hex'), old2.toString('hex')]);
    // With the key file too: the file's key is the current one.
    const fromFile = loadMasterKey({ env: { HALLPASS_PREVIOUS_MASTER_KEYS: old2.toString('base64') }, dataDir: dir });
    expect(fromFile.source).toBe(join(dir, 'master.key'));
    expect(fromFile.previous).toEqual([old2]);
  });

  it('explains a bad key in HALLPASS_PREVIOUS_MASTER_KEYS by its position, without echoing it', () => {
    const bad = 'hunter2-hunter2';
    let err: unknown;
    try {
      loadMasterKey({ env: { HALLPASS_MASTER_KEY: 'ab'.repeat(32), HALLPASS_PREVIOUS_MASTER_KEYS: `${'cd'.repeat(32)},${bad}` }, dataDir: dir });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/^HALLPASS_PREVIOUS_MASTER_KEYS \(key 2\) must be a 32-byte key/);
    expect((err as Error).message).not.toContain(bad);
  });
});
