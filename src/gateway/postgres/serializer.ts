import { AuthCode, BackendCode, FrontendCode, StartupCode } from './messages.js';

/**
 * Pure builders for the messages the gateway itself originates. Relayed messages are never
 * re-serialised: they pass through as the bytes that arrived.
 */

function typed(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf8');
const int32 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
};

// ---- backend messages (gateway -> client) ----

export const authenticationOk = (): Buffer => typed(BackendCode.Authentication, int32(AuthCode.Ok));
export const authenticationCleartext = (): Buffer => typed(BackendCode.Authentication, int32(AuthCode.CleartextPassword));

export function backendKeyData(pid: number, secret: number): Buffer {
  return typed(BackendCode.BackendKeyData, Buffer.concat([int32(pid), int32(secret)]));
}

export function parameterStatus(name: string, value: string): Buffer {
  return typed(BackendCode.ParameterStatus, Buffer.concat([cstr(name), cstr(value)]));
}

/**
 * NegotiateProtocolVersion: the newest protocol version the gateway speaks (3.0, sent whole as
 * PostgreSQL sends it) and the `_pq_.` options it does not recognise.
 */
export function negotiateProtocolVersion(options: readonly string[]): Buffer {
  return typed(BackendCode.NegotiateProtocolVersion, Buffer.concat([int32(StartupCode.Protocol3), int32(options.length), ...options.map(cstr)]));
}

export function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  return typed(BackendCode.ReadyForQuery, Buffer.from(status, 'latin1'));
}

export interface ErrorFields {
  readonly severity: 'ERROR' | 'FATAL' | 'PANIC';
  /** SQLSTATE, five characters. */
  readonly code: string;
  readonly message: string;
  readonly detail?: string;
  readonly hint?: string;
}

export function errorResponse(e: ErrorFields): Buffer {
  const parts = [
    Buffer.from('S'),
    cstr(e.severity),
    Buffer.from('V'),
    cstr(e.severity),
    Buffer.from('C'),
    cstr(e.code),
    Buffer.from('M'),
    cstr(e.message),
  ];
  if (e.detail !== undefined) parts.push(Buffer.from('D'), cstr(e.detail));
  if (e.hint !== undefined) parts.push(Buffer.from('H'), cstr(e.hint));
  parts.push(Buffer.from([0]));
  return typed(BackendCode.ErrorResponse, Buffer.concat(parts));
}

/** The one-byte answers to SSLRequest / GSSENCRequest. */
export const sslAccepted = (): Buffer => Buffer.from('S');
export const sslRefused = (): Buffer => Buffer.from('N');

// ---- frontend messages (gateway -> upstream) ----

export function startupMessage(params: ReadonlyMap<string, string>, version: number = StartupCode.Protocol3): Buffer {
  const parts: Buffer[] = [int32(0), int32(version)];
  for (const [k, v] of params) parts.push(cstr(k), cstr(v));
  parts.push(Buffer.from([0]));
  const out = Buffer.concat(parts);
  out.writeInt32BE(out.length, 0);
  return out;
}

export function sslRequest(): Buffer {
  return Buffer.concat([int32(8), int32(StartupCode.SSLRequest)]);
}

export function cancelRequest(pid: number, secret: number): Buffer {
  return Buffer.concat([int32(16), int32(StartupCode.CancelRequest), int32(pid), int32(secret)]);
}

export const passwordMessage = (password: string): Buffer => typed(FrontendCode.Password, cstr(password));

export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  return typed(FrontendCode.Password, Buffer.concat([cstr(mechanism), int32(data.length), data]));
}

export const saslResponse = (data: Buffer): Buffer => typed(FrontendCode.Password, data);

export const query = (sql: string): Buffer => typed(FrontendCode.Query, cstr(sql));

export function parse(name: string, sql: string): Buffer {
  return typed(FrontendCode.Parse, Buffer.concat([cstr(name), cstr(sql), Buffer.from([0, 0])]));
}

export const terminate = (): Buffer => typed(FrontendCode.Terminate, Buffer.alloc(0));
