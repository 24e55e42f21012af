import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import * as ser from '../../src/gateway/postgres/serializer.js';

/**
 * Connects over TLS like libpq and sends the startup message; resolves once the gateway asks
 * for the password (AuthenticationCleartextPassword), with nothing more sent.
 */
export async function rawStartup(port: number, opts: { user?: string; database?: string } = {}): Promise<TLSSocket> {
  const s = await rawTls(port);
  const askedPassword = new Promise((r) => s.once('data', r));
  s.write(ser.startupMessage(new Map([['user', opts.user ?? 'alice'], ['database', opts.database ?? 'app']])));
  await askedPassword;
  return s;
}

/** A TLS connection to the gateway (SSLRequest answered, handshake done), nothing else sent. */
export async function rawTls(port: number): Promise<TLSSocket> {
  const raw: Socket = netConnect({ port, host: '127.0.0.1' });
  raw.on('error', () => {});
  await new Promise((r) => raw.once('connect', r));
  raw.write(ser.sslRequest());
  await new Promise((r) => raw.once('data', r));
  const s = tlsConnect({ socket: raw, rejectUnauthorized: false });
  s.on('error', () => {});
  rawOf.set(s, raw);
  await new Promise((r) => s.once('secureConnect', r));
  return s;
}

/** The TCP connection under each TLS one of these helpers made. */
const rawOf = new WeakMap<TLSSocket, Socket>();

/** Resets the connection under `s` (TCP RST, as a killed client's kernel or a timeout does). */
export function resetConnection(s: TLSSocket): void {
  const raw = rawOf.get(s);
  if (!raw) throw new Error('not a connection of rawTls');
  raw.resetAndDestroy();
}

/** Everything `s` receives until `done(bytes so far)` or the connection closes. */
export function receiveUntil(s: Socket, done: (got: Buffer) => boolean): Promise<Buffer> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const finish = () => {
      s.off('data', onData);
      s.off('close', finish);
      resolve(got);
    };
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (done(got)) finish();
    };
    s.on('data', onData);
    s.once('close', finish);
  });
}

/**
 * A hand-driven PostgreSQL client for gateway tests that need control no driver gives:
 * arbitrary bytes after login, or not reading at all.
 */
export async function rawLogin(port: number, token: string, opts: { user?: string; database?: string } = {}): Promise<TLSSocket> {
  const s = await rawStartup(port, opts);
  s.write(ser.passwordMessage(token));
  let seen = Buffer.alloc(0);
  await new Promise<void>((resolve, reject) => {
    const onClose = () => reject(new Error(`closed during login: ${seen.toString('latin1')}`));
    const onData = (d: Buffer) => {
      seen = Buffer.concat([seen, d]);
      if (seen.includes(Buffer.from([0x5a, 0, 0, 0, 5, 0x49]))) {
        s.off('data', onData);
        s.off('close', onClose);
        resolve();
      }
    };
    s.on('data', onData);
    s.once('close', onClose);
  });
  return s;
}

/** Sends a simple query and resolves with everything received up to ReadyForQuery (latin1). */
export function rawQuery(s: Socket, sql: string): Promise<string> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.includes(0x5a)) {
        s.off('data', onData);
        resolve(got.toString('latin1'));
      }
    };
    s.on('data', onData);
    s.write(ser.query(sql));
  });
}

/** Counts the ReadyForQuery messages `s` receives from now on (whole messages, however split). */
export function countReady(s: Socket): () => number {
  let ready = 0;
  let tail = Buffer.alloc(0);
  s.on('data', (d: Buffer) => {
    tail = Buffer.concat([tail, d]);
    let i = 0;
    for (; i + 5 <= tail.length && i + 1 + tail.readInt32BE(i + 1) <= tail.length; i += 1 + tail.readInt32BE(i + 1)) if (tail[i] === 0x5a) ready++;
    tail = tail.subarray(i);
  });
  return () => ready;
}
