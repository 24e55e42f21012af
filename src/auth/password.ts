import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/** scrypt cost: N = 2^15, r = 8, p = 1 (32 MiB and tens of ms per hash; raise later, hashes describe their own cost). */
const DEFAULTS = { N: 2 ** 15, r: 8, p: 1 } as const;
const KEY_LEN = 32;
const SALT_LEN = 16;
/** Upper bounds on parameters read from a stored hash, so a planted hash cannot exhaust memory or CPU. */
const MAX = { N: 2 ** 20, r: 32, p: 16 } as const;
/** Longer input is refused: nobody types 1 KiB passwords, and it bounds the work per attempt. */
export const MAX_PASSWORD_LENGTH = 1024;

export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/** Hashes a password as `scrypt$N$r$p$saltB64$hashB64` (self-describing, so costs can be raised later). */
export async function hashPassword(password: string, params: ScryptParams = DEFAULTS): Promise<string> {
  checkPassword(password);
  const salt = randomBytes(SALT_LEN);
  const hash = await derive(password, salt, params, KEY_LEN);
  return ['scrypt', params.N, params.r, params.p, salt.toString('base64'), hash.toString('base64')].join('$');
}

/**
 * True when `password` matches `stored` (constant-time comparison). False, never a throw, for a
 * wrong password, an over-long one, or a stored value that is not a hash we understand.
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = parseHash(stored);
  if (!parsed || password.length === 0 || password.length > MAX_PASSWORD_LENGTH) {
    await dummyVerify(password);
    return false;
  }
  const actual = await derive(password, parsed.salt, parsed, parsed.hash.length);
  return timingSafeEqual(actual, parsed.hash);
}

let dummy: Promise<{ salt: Buffer; hash: Buffer }> | undefined;

/**
 * Spends the same work as verifying a real password and returns false. Call it for an unknown
 * user (or one without a password) so a login's timing does not reveal whether the user exists.
 */
export async function dummyVerify(password: string): Promise<false> {
  dummy ??= (async () => {
    const salt = randomBytes(SALT_LEN);
    return { salt, hash: await derive('dummy', salt, DEFAULTS, KEY_LEN) };
  })();
  const d = await dummy;
  const actual = await derive(password.slice(0, MAX_PASSWORD_LENGTH), d.salt, DEFAULTS, KEY_LEN);
  timingSafeEqual(actual, d.hash);
  return false;
}

/** True when a stored hash uses weaker parameters than today's defaults (re-hash on next login). */
export function needsRehash(stored: string): boolean {
  const p = parseHash(stored);
  return !p || p.N < DEFAULTS.N || p.r < DEFAULTS.r || p.p < DEFAULTS.p || p.hash.length < KEY_LEN;
}

function checkPassword(password: string): void {
  if (password.length === 0) throw new RangeError('password must not be empty');
  if (password.length > MAX_PASSWORD_LENGTH) throw new RangeError(`password must be at most ${MAX_PASSWORD_LENGTH} characters`);
}

function parseHash(stored: string): (ScryptParams & { salt: Buffer; hash: Buffer }) | undefined {
  const m = /^scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/.exec(stored);
  if (!m) return undefined;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const salt = Buffer.from(m[4] ?? '', 'base64');
  const hash = Buffer.from(m[5] ?? '', 'base64');
  const powerOfTwo = N > 1 && (N & (N - 1)) === 0;
  if (!powerOfTwo || N > MAX.N || r < 1 || r > MAX.r || p < 1 || p > MAX.p) return undefined;
  if (salt.length < 8 || hash.length < 16 || hash.length > 64) return undefined;
  return { N, r, p, salt, hash };
}

function derive(password: string, salt: Buffer, { N, r, p }: ScryptParams, keyLen: number): Promise<Buffer> {
  // scrypt needs 128 * N * r bytes (plus a little); Node's default maxmem (32 MiB) is just short at N = 2^15.
  const options: ScryptOptions = { N, r, p, maxmem: 128 * N * r * 2 };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFKC'), salt, keyLen, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}
