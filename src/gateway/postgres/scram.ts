import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { ProtocolError } from './messages.js';

const pbkdf2Async = promisify(pbkdf2);

/**
 * SaltedPassword by (password, salt, iterations). Deriving it costs milliseconds of CPU (4096+
 * PBKDF2 rounds) and every connection of a grant logs in as the same principal with the same
 * salt, so a reconnecting client (pgbench -C, pools) pays it once. Keyed by a hash of the
 * password; the plaintext is held by the session anyway. PgBouncer caches SCRAM keys likewise.
 */
const salted = new Map<string, Buffer>();
const SALTED_CACHE_MAX = 1024;

async function saltedPassword(password: string, salt: string, iterations: number): Promise<Buffer> {
  const key = `${createHash('sha256').update(password).digest('base64')}|${salt}|${iterations}`;
  const hit = salted.get(key);
  if (hit) return hit;
  // Off the event loop (libuv thread pool): the relay of other sessions keeps going.
  const value = await pbkdf2Async(password.normalize('NFKC'), Buffer.from(salt, 'base64'), iterations, 32, 'sha256');
  if (salted.size >= SALTED_CACHE_MAX) {
    const oldest = salted.keys().next();
    if (!oldest.done) salted.delete(oldest.value);
  }
  salted.set(key, value);
  return value;
}

/**
 * Client side of SCRAM-SHA-256 (RFC 5802/7677, no channel binding) and md5, for logging in to
 * the target with the grant's injected credential.
 */
export class ScramClient {
  readonly #password: string;
  readonly #clientNonce = randomBytes(18).toString('base64');
  #clientFirstBare = '';
  #serverSignature: Buffer | undefined;

  constructor(password: string) {
    this.#password = password;
  }

  /** client-first-message (the user name is taken from the startup message: left empty). */
  first(): Buffer {
    this.#clientFirstBare = `n=*,r=${this.#clientNonce}`;
    return Buffer.from(`n,,${this.#clientFirstBare}`, 'utf8');
  }

  /** Answers server-first-message with client-final-message. */
  async final(serverFirst: string): Promise<Buffer> {
    const attrs = parseAttrs(serverFirst);
    const nonce = attrs.get('r');
    const salt = attrs.get('s');
    const iterations = Number(attrs.get('i'));
    if (!nonce || !salt || !Number.isInteger(iterations) || iterations < 1 || iterations > 10_000_000) {
      throw new ProtocolError('malformed SCRAM server-first-message');
    }
    if (!nonce.startsWith(this.#clientNonce) || nonce.length === this.#clientNonce.length) {
      throw new ProtocolError('SCRAM server nonce does not extend the client nonce');
    }
    const salted = await saltedPassword(this.#password, salt, iterations);
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = createHash('sha256').update(clientKey).digest();
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.#clientFirstBare},${serverFirst},${withoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) proof[i] = (clientKey[i] ?? 0) ^ (clientSignature[i] ?? 0);
    this.#serverSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'utf8');
  }

  /** The target's server signature was checked (verify passed). */
  verified = false;

  /** Checks server-final-message: the target proves it knows the verifier too. */
  verify(serverFinal: string): void {
    const v = parseAttrs(serverFinal).get('v');
    const expected = this.#serverSignature;
    const given = v ? Buffer.from(v, 'base64') : Buffer.alloc(0);
    if (!expected || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new ProtocolError('SCRAM server signature mismatch');
    }
    this.verified = true;
  }
}

/** md5 password response: "md5" + md5(md5(password + user) + salt). */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password + user).digest('hex');
  return `md5${createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex')}`;
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function parseAttrs(msg: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of msg.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) out.set(part.slice(0, 1), part.slice(2));
  }
  return out;
}
