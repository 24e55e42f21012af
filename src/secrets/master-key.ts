import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../domain/errors.js';

export const MASTER_KEY_ENV = 'HALLPASS_MASTER_KEY';
export const MASTER_KEY_FILE = 'master.key';
/** Master keys before a rotation, comma-separated: what they sealed still opens (docs/secrets.md). */
export const PREVIOUS_MASTER_KEYS_ENV = 'HALLPASS_PREVIOUS_MASTER_KEYS';

export interface MasterKey {
  readonly key: Buffer;
  /** Where it came from (never the key itself): the env var name or the file path. */
  readonly source: string;
  /** True when the key file was created by this call. */
  readonly created: boolean;
  /** Earlier master keys (HALLPASS_PREVIOUS_MASTER_KEYS), newest first, none equal to `key`. */
  readonly previous: readonly Buffer[];
}

export interface LoadMasterKeyOptions {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly dataDir: string;
}

/**
 * The master key, from HALLPASS_MASTER_KEY (32 bytes as 64 hex characters or base64/base64url)
 * or else from `<dataDir>/master.key`, which is generated (mode 0600) on first start. Refuses a
 * key file that group or others can read or write.
 */
export function loadMasterKey(opts: LoadMasterKeyOptions): MasterKey {
  const current = currentMasterKey(opts);
  return { ...current, previous: previousMasterKeys(opts.env, current.key) };
}

/**
 * HALLPASS_PREVIOUS_MASTER_KEYS: keys separated by commas (or whitespace), each checked as the
 * master key is; the current key and repeats are dropped. An error names the key's position,
 * never its value.
 */
function previousMasterKeys(env: LoadMasterKeyOptions['env'], current: Buffer): Buffer[] {
  const text = env[PREVIOUS_MASTER_KEYS_ENV] ?? '';
  const out: Buffer[] = [];
  text.split(/[\s,]+/).filter((t) => t !== '').forEach((t, i) => {
    const k = decodeKey(t, `${PREVIOUS_MASTER_KEYS_ENV} (key ${i + 1})`);
    if (!k.equals(current) && !out.some((o) => o.equals(k))) out.push(k);
  });
  return out;
}

function currentMasterKey(opts: LoadMasterKeyOptions): Omit<MasterKey, 'previous'> {
  const fromEnv = opts.env[MASTER_KEY_ENV];
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    return { key: decodeKey(fromEnv.trim(), MASTER_KEY_ENV), source: MASTER_KEY_ENV, created: false };
  }
  const path = join(opts.dataDir, MASTER_KEY_FILE);
  const created = createKeyFile(opts.dataDir, path);
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new ConfigError(
      `refusing to start: master key file ${path} is readable or writable by group/others (mode ${mode.toString(8).padStart(4, '0')}); ` +
        `run: chmod 600 ${path}`,
    );
  }
  return { key: decodeKey(readFileSync(path, 'utf8').trim(), path), source: path, created };
}

/** Creates the key file if it does not exist (O_EXCL, so two starting instances cannot race). */
function createKeyFile(dataDir: string, path: string): boolean {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    if ((fstatSync(fd).mode & 0o077) !== 0) throw new ConfigError(`could not create ${path} with mode 0600`);
    writeSync(fd, `${randomBytes(32).toString('base64')}\n`);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** Decodes 32 bytes from hex or base64; the error names the source, never the value. */
export function decodeKey(text: string, source: string): Buffer {
  let key: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(text)) key = Buffer.from(text, 'hex');
  else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) key = Buffer.from(text, text.includes('-') || text.includes('_') ? 'base64url' : 'base64');
  if (key?.length !== 32) {
    throw new ConfigError(
      `${source} must be a 32-byte key written as 64 hex characters or 44 base64 characters ` +
        `(got ${text.length} characters); generate one with: openssl rand -base64 32`,
    );
  }
  return key;
}
