import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { AuthorizedSession, GatewayAuthority, RefusalCode } from '../authority.js';
import { Framer } from './framing.js';
import { FrontendCode, ProtocolError, readStartupPacket, type StartupPacket } from './messages.js';
import { ClosedError, FrameQueue } from './queue.js';
import * as ser from './serializer.js';
import type { LoadedTls } from './tls.js';

/** PostgreSQL's own limit for a startup packet. */
const MAX_STARTUP_PACKET = 10_000;
/** A password message carrying a gateway token is small. */
const MAX_AUTH_MESSAGE = 8 * 1024;

export interface LoginOptions {
  readonly authority: GatewayAuthority;
  readonly tls: LoadedTls | undefined;
  readonly requireTls: boolean;
  readonly allowPasswordWithoutTls: boolean;
  /** The largest message a client may send once logged in (it may pipeline queries behind its password). */
  readonly maxMessageBytes: number;
}

export type LoginResult =
  | {
      readonly kind: 'ok';
      readonly client: Socket;
      readonly tls: boolean;
      readonly auth: AuthorizedSession;
      readonly startup: ReadonlyMap<string, string>;
      /** The client's framer (carries any partial message already received). */
      readonly framer: Framer;
      /** Whole messages the client sent before we answered (pipelined after the password). */
      readonly early: Array<[number, Buffer]>;
      /** What followed `early` did not frame: the session ends with a protocol error after them. */
      readonly failure?: Error;
    }
  | { readonly kind: 'cancel'; readonly pid: number; readonly secret: number }
  | {
      readonly kind: 'refused';
      readonly code: RefusalCode | 'tls_required' | 'bad_startup' | 'internal';
      readonly message: string;
      readonly user: string;
      readonly resource: string;
      readonly tls: boolean;
      /** The grant an authentic token named, when the authority said. */
      readonly grantId?: string;
    };

/**
 * The client-facing half of a connection's start: SSLRequest/TLS, the startup message, and
 * authentication with a gateway token as the password (cleartext, only inside TLS unless
 * explicitly allowed). Refusals are answered here with a FATAL ErrorResponse; the caller audits.
 */
export async function acceptClient(raw: Socket, clientAddress: string, opts: LoginOptions, onSecure?: (secure: Socket) => void): Promise<LoginResult> {
  let socket: Socket = raw;
  let tls = false;
  let queue = new FrameQueue(socket, new Framer(MAX_STARTUP_PACKET, true));
  let packet: StartupPacket = readStartupPacket((await queue.next())[1]);
  for (let negotiations = 0; packet.kind === 'ssl' || packet.kind === 'gssenc'; negotiations++) {
    if (negotiations >= 2) throw new ProtocolError('too many encryption requests');
    if (packet.kind === 'ssl' && opts.tls && !tls) {
      // Bytes after SSLRequest but before the handshake would be unencrypted injected data, whether
      // they frame (a queued packet, a partial one) or not (the framer already refused them).
      const injected = queue.detach().length > 0 || queue.framer.buffered > 0 || (queue.failure !== undefined && !(queue.failure instanceof ClosedError));
      if (injected) throw new ProtocolError('data received before the TLS handshake');
      socket.write(ser.sslAccepted());
      const secure = new TLSSocket(socket, { isServer: true, secureContext: opts.tls.context });
      secure.on('error', noop); // errors surface as 'close' from here on; never as an uncaught event
      await new Promise<void>((resolve, reject) => {
        const onClose = () => {
          socket.destroy(); // half-open, it would take an answer in clear (review)
          reject(new ProtocolError('closed during the TLS handshake'));
        };
        secure.once('error', reject);
        secure.once('close', onClose);
        secure.once('end', onClose);
        secure.once('secure', () => {
          secure.off('error', reject);
          secure.off('close', onClose);
          secure.off('end', onClose);
          resolve();
        });
      });
      socket = secure;
      tls = true;
      // From here a refusal or protocol error must be answered inside TLS.
      onSecure?.(secure);
      queue = new FrameQueue(socket, new Framer(MAX_STARTUP_PACKET, true));
    } else {
      socket.write(ser.sslRefused());
    }
    packet = readStartupPacket((await queue.next())[1]);
  }
  if (packet.kind === 'cancel') {
    queue.detach();
    return packet;
  }
  const startup = packet.params;
  // A newer 3.x client (PostgreSQL 18's libpq with max_protocol_version=3.2 or latest) or one
  // asking for protocol options is told what the gateway speaks, before anything else, as
  // PostgreSQL does; the client then carries on in 3.0 (or gives up if that is below its minimum).
  if (packet.minor > 0 || packet.protocolOptions.length > 0) socket.write(ser.negotiateProtocolVersion(packet.protocolOptions));
  const user = startup.get('user') ?? '';
  const resource = startup.get('database') ?? user;
  const refuse = (code: Extract<LoginResult, { kind: 'refused' }>['code'], sqlstate: string, message: string, grantId?: string): LoginResult => {
    queue.detach();
    socket.end(ser.errorResponse({ severity: 'FATAL', code: sqlstate, message }));
    return { kind: 'refused', code, message, user, resource, tls, ...(grantId === undefined ? {} : { grantId }) };
  };
  if (user === '') return refuse('bad_startup', '28000', 'hallpass: no user name given (use your hallpass user name)');
  if (startup.has('replication')) return refuse('bad_startup', '28000', 'hallpass: replication connections are not supported');
  if (!tls && (opts.requireTls || !opts.allowPasswordWithoutTls)) {
    return refuse('tls_required', '28000', 'hallpass: the gateway requires TLS (connect with sslmode=require or verify-full)');
  }
  socket.write(ser.authenticationCleartext());
  queue.framer.startup = false;
  queue.framer.maxLength = MAX_AUTH_MESSAGE;
  // What follows the password is the session's first queries, framed as in the session.
  queue.limitAfterNext(opts.maxMessageBytes);
  const [type, frame] = await queue.next();
  if (type !== FrontendCode.Password) throw new ProtocolError('expected a password message');
  const end = frame.indexOf(0, 5);
  if (end < 0) throw new ProtocolError('malformed password message');
  const token = frame.toString('utf8', 5, end);
  let result;
  try {
    result = await opts.authority.authorize({ token, user, resource, clientAddress, tls });
  } catch {
    return refuse('internal', 'XX000', 'hallpass: the gateway could not check your access; try again');
  }
  if (!result.ok) {
    const sqlstate = result.code === 'wrong_resource' || result.code === 'not_owner' || result.code === 'not_active' ? '28000' : '28P01';
    return refuse(result.code, sqlstate, `hallpass: ${result.message}`, result.grantId);
  }
  if (result.session.resource !== resource) return refuse('wrong_resource', '28000', `hallpass: this token is not for ${resource}`);
  const early = queue.detach();
  // Bytes behind the password that do not frame end the session (not the login: the grant's
  // session starts, and what came before them goes on, as when they come a moment later).
  const failure = queue.failure !== undefined && !(queue.failure instanceof ClosedError) ? queue.failure : undefined;
  return { kind: 'ok', client: socket, tls, auth: result.session, startup, framer: queue.framer, early, ...(failure ? { failure } : {}) };
}

const noop = (): void => {};
