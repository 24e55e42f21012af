import { isIP, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { AuthorizedSession } from '../authority.js';
import { Framer } from './framing.js';
import { AuthCode, BackendCode, ProtocolError, Reader, readErrorFields } from './messages.js';
import { FrameQueue } from './queue.js';
import { md5Password, ScramClient } from './scram.js';
import * as ser from './serializer.js';

export interface UpstreamConnection {
  readonly socket: Socket | TLSSocket;
  /** The TCP connection under `socket` (itself when there is no TLS), for resetUpstream. */
  readonly tcp: Socket;
  /** The target's ParameterStatus messages, raw, to replay to the client. */
  readonly parameterStatus: readonly Buffer[];
  /** The target's cancel key (never shown to the client). */
  readonly pid: number;
  readonly secret: number;
  /**
   * The target took client_connection_check_interval: PostgreSQL 14 or later itself, not a pooler
   * (PgBouncer refuses it) that finds a cancel's session by its client connection.
   */
  readonly connectionCheck?: boolean;
}

/** The target refused the login or broke protocol; `sqlstate` when it sent an ErrorResponse. */
export class UpstreamError extends Error {
  override name = 'UpstreamError';
  constructor(
    message: string,
    readonly sqlstate?: string,
  ) {
    super(message);
  }
}

const LOGIN_MAX_MESSAGE = 1 << 20;

/** Opens a connection to the target and logs in with the grant's injected credential. */
export async function connectUpstream(
  target: AuthorizedSession['upstream'],
  startupParams: ReadonlyMap<string, string>,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<UpstreamConnection> {
  return withUpstream(target, timeoutMs, signal, async (socket, tcp) => {
    const params = new Map(startupParams);
    params.set('user', target.user);
    params.set('database', target.database);
    socket.write(ser.startupMessage(params));
    return { ...(await login(socket, target)), tcp };
  });
}

/**
 * How often (ms) the target checks, while running a statement, that the gateway is still
 * connected. A cut cancels the running statement and closes the connection; a statement that
 * catches the cancel (`EXCEPTION WHEN query_canceled` in a loop) would otherwise run on after the
 * grant's end until the target next writes to the socket (a review kept one running for minutes).
 * With this setting the backend notices the closed connection and ends within a second or so,
 * even if hallpass cannot reach the target to terminate it.
 */
const CONNECTION_CHECK_INTERVAL_MS = '1000';
const CONNECTION_CHECK = 'client_connection_check_interval';
/** How PostgreSQL before 14 and PgBouncer refuse the setting at login: SQLSTATE and message. */
const REFUSALS = new Set([
  `42704 unrecognized configuration parameter "${CONNECTION_CHECK}"`,
  `08P01 unsupported startup parameter: ${CONNECTION_CHECK}`,
]);
/** Targets (host:port) that refused the setting and then let us in without it. */
const withoutConnectionCheck = new Set<string>();

/** connectUpstream with `client_connection_check_interval` set, or without it on a target that does not know it. */
export async function connectWithConnectionCheck(
  target: AuthorizedSession['upstream'],
  params: Map<string, string>,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<UpstreamConnection> {
  const key = `${target.host}:${target.port}`;
  if (withoutConnectionCheck.has(key)) return connectUpstream(target, params, timeoutMs, signal);
  try {
    return { ...(await connectUpstream(target, new Map([...params, [CONNECTION_CHECK, CONNECTION_CHECK_INTERVAL_MS]]), timeoutMs, signal)), connectionCheck: true };
  } catch (e) {
    // PostgreSQL before 14 answers 42704 (unrecognized configuration parameter), PgBouncer 08P01
    // (unsupported startup parameter), each in its exact words: a client must not be able to make
    // some other refusal that merely names the setting (TimeZone=client_connection_check_interval,
    // third review) turn the check off for everyone's sessions to this target.
    if (!(e instanceof UpstreamError && REFUSALS.has(`${e.sqlstate ?? ''} ${e.message}`))) throw e;
    const conn = await connectUpstream(target, params, timeoutMs, signal);
    if (withoutConnectionCheck.size < 10_000) withoutConnectionCheck.add(key);
    return conn;
  }
}

/**
 * Connects to the target (TCP, then TLS when the resource asks for it: SSLRequest, the handshake,
 * the certificate checked as configured) and runs `use` on the connection, all within `timeoutMs`.
 * The socket is destroyed if anything fails, or at once when `signal` aborts (the grant ended
 * during the login); on success it is the caller's.
 */
async function withUpstream<T>(
  target: AuthorizedSession['upstream'],
  timeoutMs: number,
  signal: AbortSignal | undefined,
  use: (socket: Socket | TLSSocket, tcp: Socket) => Promise<T>,
): Promise<T> {
  if (signal?.aborted) throw new UpstreamError('the login was called off');
  const tcp = netConnect({ host: target.host, port: target.port, noDelay: true });
  let socket: Socket | TLSSocket = tcp;
  const timer = setTimeout(() => socket.destroy(new UpstreamError(`timed out after ${timeoutMs} ms`)), timeoutMs);
  const abort = (): void => {
    socket.destroy(new UpstreamError('the login was called off'));
  };
  signal?.addEventListener('abort', abort, { once: true });
  try {
    await once(socket, 'connect');
    if (target.ssl) {
      socket.write(ser.sslRequest());
      const answer = await readBytes(socket, 1);
      if (answer[0] !== 0x53) throw new UpstreamError('the target does not accept TLS');
      const plain = socket;
      const name = target.ssl.servername ?? target.host;
      socket = tlsConnect({
        socket: plain,
        // The name the certificate is checked against; SNI must not carry an IP address (RFC 6066).
        host: name,
        ...(isIP(name) === 0 ? { servername: name } : {}),
        ...(target.ssl.ca !== undefined ? { ca: target.ssl.ca } : {}),
        rejectUnauthorized: target.ssl.rejectUnauthorized ?? true,
        ...(target.ssl.verifyHostname === false ? { checkServerIdentity: () => undefined } : {}),
      });
      socket.on('error', () => plain.destroy());
      await once(socket, 'secureConnect');
    }
    socket.setNoDelay(true);
    return await use(socket, tcp);
  } catch (err) {
    socket.destroy();
    throw err instanceof UpstreamError ? err : new UpstreamError(err instanceof Error ? err.message : String(err));
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', abort);
  }
}

async function login(socket: Socket | TLSSocket, target: AuthorizedSession['upstream']): Promise<Omit<UpstreamConnection, 'tcp'>> {
  const messages = new FrameQueue(socket, new Framer(LOGIN_MAX_MESSAGE), 'the target closed the connection during login');
  const parameterStatus: Buffer[] = [];
  let pid = 0;
  let secret = 0;
  let scram: ScramClient | undefined;
  for (;;) {
    const [type, frame] = await messages.next();
    switch (type) {
      case BackendCode.Authentication: {
        const r = new Reader(frame, 5);
        const code = r.int32();
        if (code === AuthCode.Ok) {
          // SCRAM is mutual: a target (or anyone in between) that skips SASLFinal has not shown it knows the verifier.
          if (scram && !scram.verified) throw new UpstreamError('the target ended SCRAM authentication without proving it knows the password');
          break;
        }
        if (code === AuthCode.CleartextPassword) {
          if (!(socket as TLSSocket).encrypted) throw new UpstreamError('the target asked for a cleartext password without TLS');
          socket.write(ser.passwordMessage(target.password));
        } else if (code === AuthCode.MD5Password) {
          socket.write(ser.passwordMessage(md5Password(target.user, target.password, r.bytes(4))));
        } else if (code === AuthCode.SASL) {
          const mechs: string[] = [];
          for (let m = r.cstring(); m !== ''; m = r.cstring()) mechs.push(m);
          if (!mechs.includes('SCRAM-SHA-256')) throw new UpstreamError(`unsupported SASL mechanisms: ${mechs.join(', ')}`);
          scram = new ScramClient(target.password);
          socket.write(ser.saslInitialResponse('SCRAM-SHA-256', scram.first()));
        } else if (code === AuthCode.SASLContinue && scram) {
          socket.write(ser.saslResponse(await scram.final(frame.toString('utf8', 9))));
        } else if (code === AuthCode.SASLFinal && scram) {
          scram.verify(frame.toString('utf8', 9));
        } else {
          throw new UpstreamError(`unsupported authentication request ${code}`);
        }
        break;
      }
      case BackendCode.ParameterStatus:
        parameterStatus.push(Buffer.from(frame));
        break;
      case BackendCode.BackendKeyData: {
        const r = new Reader(frame, 5);
        pid = r.int32();
        secret = r.int32();
        break;
      }
      case BackendCode.NoticeResponse:
        break;
      case BackendCode.ErrorResponse: {
        const f = readErrorFields(frame);
        throw new UpstreamError(f.get('M') ?? 'login failed', f.get('C'));
      }
      case BackendCode.ReadyForQuery:
        if (messages.detach().length > 0 || messages.framer.buffered > 0) throw new UpstreamError('the target sent data before the first query');
        return { socket, parameterStatus, pid, secret };
      default:
        throw new UpstreamError(`unexpected message '${String.fromCharCode(type)}' during login`);
    }
  }
}

function once(socket: Socket, event: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onErr = (e: Error) => {
      socket.off(event, onOk);
      reject(e);
    };
    const onOk = () => {
      socket.off('error', onErr);
      resolve();
    };
    socket.once(event, onOk);
    socket.once('error', onErr);
  });
}

function readBytes(socket: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      cleanup();
      if (chunk.length > n) reject(new ProtocolError('unexpected data after the TLS answer'));
      else resolve(chunk);
    };
    const onErr = (e: Error) => {
      cleanup();
      reject(e);
    };
    const onClose = () => {
      cleanup();
      reject(new UpstreamError('the target closed the connection'));
    };
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('error', onErr);
      socket.off('close', onClose);
      socket.pause();
    };
    socket.on('data', onData);
    socket.once('error', onErr);
    socket.once('close', onClose);
  });
}

/**
 * Drops the connection with a TCP reset. The target's next write to it then fails at once and the
 * backend ends (PostgreSQL: "connection to client lost"), so what the client pipelined behind the
 * running statement, already in the target's socket buffer, never runs: after a graceful close
 * the target would read and run it first (a review counted 1,100+ inserts in the 500 ms a cut-off
 * gave a busy target). Under TLS the reset goes on the TCP connection below it.
 */
export function resetUpstream(conn: Pick<UpstreamConnection, 'socket' | 'tcp'>): void {
  try {
    conn.tcp.resetAndDestroy();
  } catch {
    conn.tcp.destroy(); // not a TCP handle (cannot happen for a target reached by host and port)
  }
  conn.socket.destroy();
}

/**
 * Sends a CancelRequest for the target backend `pid` and resolves once the target has closed the
 * connection (or after `timeoutMs`); never rejects, a cancel is best effort. When the resource
 * uses TLS the request goes inside TLS, like PostgreSQL 17's libpq: the cancel key never crosses
 * the network in clear, and the target's certificate is checked as for a login.
 */
export async function cancelUpstream(target: AuthorizedSession['upstream'], pid: number, secret: number, timeoutMs = 2000): Promise<void> {
  await withUpstream(target, timeoutMs, undefined, (socket) =>
    new Promise<void>((resolve) => {
      socket.on('close', () => resolve());
      socket.on('error', () => resolve());
      // Not end(): PgBouncer drops a cancel whose sender half-closed at once ("client unexpected
      // eof", review), and libpq waits for the target to close as well.
      socket.write(ser.cancelRequest(pid, secret));
      socket.resume(); // the target answers nothing; read to see it close
    }),
  ).catch(() => undefined);
}
