/**
 * PostgreSQL v3 wire-protocol message codes and the few readers the gateway needs.
 * Only headers and the messages the gateway inspects are decoded; everything else is relayed
 * as raw bytes. https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

import { isUtf8 } from 'node:buffer';

/** Messages a client (frontend) sends after startup. */
export const enum FrontendCode {
  Bind = 0x42, // 'B'
  Close = 0x43, // 'C'
  Describe = 0x44, // 'D'
  Execute = 0x45, // 'E'
  FunctionCall = 0x46, // 'F'
  Flush = 0x48, // 'H'
  Parse = 0x50, // 'P'
  Query = 0x51, // 'Q'
  Sync = 0x53, // 'S'
  Terminate = 0x58, // 'X'
  CopyFail = 0x66, // 'f'
  CopyDone = 0x63, // 'c'
  CopyData = 0x64, // 'd'
  /** PasswordMessage, SASLInitialResponse and SASLResponse share 'p'. */
  Password = 0x70, // 'p'
}

/** Messages a server (backend) sends. */
export const enum BackendCode {
  ParseComplete = 0x31, // '1'
  BindComplete = 0x32, // '2'
  CloseComplete = 0x33, // '3'
  NotificationResponse = 0x41, // 'A'
  CommandComplete = 0x43, // 'C'
  DataRow = 0x44, // 'D'
  ErrorResponse = 0x45, // 'E'
  CopyInResponse = 0x47, // 'G'
  CopyOutResponse = 0x48, // 'H'
  EmptyQueryResponse = 0x49, // 'I'
  BackendKeyData = 0x4b, // 'K'
  NoticeResponse = 0x4e, // 'N'
  Authentication = 0x52, // 'R'
  ParameterStatus = 0x53, // 'S'
  RowDescription = 0x54, // 'T'
  FunctionCallResponse = 0x56, // 'V'
  CopyBothResponse = 0x57, // 'W'
  ReadyForQuery = 0x5a, // 'Z'
  CopyDone = 0x63, // 'c'
  CopyData = 0x64, // 'd'
  NoData = 0x6e, // 'n'
  PortalSuspended = 0x73, // 's'
  ParameterDescription = 0x74, // 't'
  NegotiateProtocolVersion = 0x76, // 'v'
}

/** Authentication request sub-codes (int32 after 'R'). */
export const enum AuthCode {
  Ok = 0,
  CleartextPassword = 3,
  MD5Password = 5,
  SASL = 10,
  SASLContinue = 11,
  SASLFinal = 12,
}

/** Codes of untyped startup-phase packets (int32 after the length). */
export const enum StartupCode {
  Protocol3 = 196608, // 3.0
  CancelRequest = 80877102,
  SSLRequest = 80877103,
  GSSENCRequest = 80877104,
}

/** A wire-protocol violation: the connection that sent it is closed, nothing else is affected. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

/** Reads NUL-terminated strings and integers from one message body; bounds-checked. */
export class Reader {
  offset: number;
  constructor(
    readonly buf: Buffer,
    start = 0,
  ) {
    this.offset = start;
  }
  int16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.offset);
    this.offset += 2;
    return v;
  }
  int32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  /** A statement or portal name (see nameOf). */
  name(): string {
    if (this.buf[this.offset] === 0) {
      this.offset++; // the unnamed statement/portal, the common case
      return '';
    }
    const end = this.buf.indexOf(0, this.offset);
    if (end < 0) throw new ProtocolError('unterminated string in message');
    const s = nameOf(this.buf, this.offset, end);
    this.offset = end + 1;
    return s;
  }

  cstring(): string {
    if (this.buf[this.offset] === 0) {
      this.offset++; // the unnamed statement/portal: no search, no allocation
      return '';
    }
    const end = this.buf.indexOf(0, this.offset);
    if (end < 0) throw new ProtocolError('unterminated string in message');
    const s = this.buf.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return s;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return b;
  }
  get remaining(): number {
    return this.buf.length - this.offset;
  }
  private need(n: number): void {
    if (n < 0 || this.offset + n > this.buf.length) throw new ProtocolError('message shorter than its contents');
  }
}

export interface StartupMessage {
  readonly kind: 'startup';
  readonly params: ReadonlyMap<string, string>;
  /** The minor protocol version the client asked for (3.x); the gateway speaks 3.0. */
  readonly minor: number;
  /** `_pq_.*` protocol options the client asked for: none is known here, so all are declined. */
  readonly protocolOptions: readonly string[];
}
export type StartupPacket =
  | StartupMessage
  | { readonly kind: 'ssl' }
  | { readonly kind: 'gssenc' }
  | { readonly kind: 'cancel'; readonly pid: number; readonly secret: number };

/** Decodes a startup-phase packet (`packet` includes its 4-byte length). */
export function readStartupPacket(packet: Buffer): StartupPacket {
  const r = new Reader(packet, 4);
  const code = r.int32();
  switch (code) {
    case StartupCode.SSLRequest:
      return { kind: 'ssl' };
    case StartupCode.GSSENCRequest:
      return { kind: 'gssenc' };
    case StartupCode.CancelRequest:
      return { kind: 'cancel', pid: r.int32(), secret: r.int32() };
    default: {
      // Any 3.x: a minor version above 3.0 (3.2 since PostgreSQL 18) and `_pq_.` options are
      // declined with NegotiateProtocolVersion (login.ts), as PostgreSQL declines what it lacks.
      if (code >>> 16 !== 3) {
        throw new ProtocolError(`unsupported frontend protocol ${code >>> 16}.${code & 0xffff}: the gateway supports 3.0`);
      }
      const params = new Map<string, string>();
      const protocolOptions: string[] = [];
      for (;;) {
        const key = r.cstring();
        if (key === '') break;
        if (params.size + protocolOptions.length >= 64) throw new ProtocolError('too many startup parameters');
        const value = r.cstring();
        if (key.startsWith('_pq_.')) protocolOptions.push(key);
        else params.set(key, value);
      }
      return { kind: 'startup', params, minor: code & 0xffff, protocolOptions };
    }
  }
}

/** Query ('Q'): the SQL text. */
export function readQuery(frame: Buffer): string {
  return new Reader(frame, 5).cstring();
}

/**
 * The SQL text of a Query or Parse frame (`sql`, as decoded) for deciding on its structure. Decoding
 * invalid UTF-8 replaces each bad byte with U+FFFD, so dollar-quote tags that differ on the target
 * (`$é$` and `$è$` in LATIN1) would look the same to the parser, and a statement the target runs
 * could sit inside what the parser takes for a string (found in review, 2026-12-02). Such text is
 * read byte for byte instead (latin1): every byte a character of its own, so tags stay distinct and
 * bytes >= 0x80 stay identifier characters, as the target's lexer sees them in any client encoding
 * whose characters are all made of such bytes (UTF8 itself refuses invalid bytes; the encodings
 * whose characters can contain ASCII bytes, such as SJIS, are refused for guarded sessions).
 */
export function lexicalSql(frame: Buffer, sql: string): string {
  if (!sql.includes('\uFFFD')) return sql;
  const start = frame[0] === FrontendCode.Parse ? frame.indexOf(0, 5) + 1 : 5;
  const end = frame.indexOf(0, start);
  const bytes = frame.subarray(start, end < 0 ? frame.length : end);
  return isUtf8(bytes) ? sql : bytes.toString('latin1');
}

/** ParameterStatus ('S'): a setting the target reports, and its value. */
export function readParameterStatus(frame: Buffer): { name: string; value: string } {
  const r = new Reader(frame, 5);
  return { name: r.cstring(), value: r.cstring() };
}

/** Parse ('P'): statement name, SQL text, declared parameter type count. */
export function readParse(frame: Buffer): { name: string; sql: string } {
  const r = new Reader(frame, 5);
  return { name: r.name(), sql: r.cstring() };
}

/**
 * A statement or portal name from bytes `start`..`end` of `buf`, as the target tells names apart:
 * byte for byte. Valid UTF-8 is read as such; other bytes (a SQL_ASCII session may send any) are
 * read one character per byte behind a NUL, which no name read as UTF-8 holds. As UTF-8 every
 * invalid byte became U+FFFD, so `\x81` and `\x80` were one name here and two on the target, and
 * the audit credited one's execution with the other's text (third review, 2026-12-02).
 */
export function nameOf(buf: Buffer, start: number, end: number): string {
  if (start === end) return '';
  const s = buf.toString('utf8', start, end);
  return !s.includes('\uFFFD') || isUtf8(buf.subarray(start, end)) ? s : `\0${buf.toString('latin1', start, end)}`;
}

/** A parameter or argument value for the audit: text format as text, binary as `\\x…` hex. */
const valueText = (value: Buffer, format: number | undefined): string => (format === 1 ? `\\x${value.toString('hex')}` : value.toString('utf8'));

/** Bind ('B'): portal and statement names; parameter values only when asked (auditing them is opt-in). */
export function readBind(frame: Buffer, withParams: boolean): { portal: string; statement: string; params?: (string | null)[] } {
  const r = new Reader(frame, 5);
  const portal = r.name();
  const statement = r.name();
  if (!withParams) return { portal, statement };
  return { portal, statement, params: readValues(r, true).values };
}

/**
 * Format codes, then length-prefixed values (Bind's parameters, FunctionCall's arguments): how
 * many, and their text when asked (text format as text, binary as `\x…` hex, NULL as null).
 */
function readValues(r: Reader, withValues: boolean): { n: number; values: (string | null)[] } {
  const nFormats = r.int16();
  const formats: number[] = [];
  for (let i = 0; i < nFormats; i++) formats.push(r.int16());
  const n = r.int16();
  const values: (string | null)[] = [];
  for (let i = 0; i < n; i++) {
    const len = r.int32();
    const value = len === -1 ? null : r.bytes(len);
    if (withValues) values.push(value && valueText(value, nFormats === 1 ? formats[0] : formats[i]));
  }
  return { n, values };
}

/**
 * FunctionCall ('F'): the function's OID and its argument count; argument values only when asked
 * (as for Bind). The whole message is read, so a malformed one is a protocol error.
 */
export function readFunctionCall(frame: Buffer, withArgs: boolean): { oid: number; nargs: number; args?: (string | null)[] } {
  const r = new Reader(frame, 5);
  const oid = r.int32() >>> 0;
  const { n: nargs, values: args } = readValues(r, withArgs);
  r.int16(); // result format
  return withArgs ? { oid, nargs, args } : { oid, nargs };
}

/** Execute ('E'): portal name. */
export function readExecute(frame: Buffer): string {
  return new Reader(frame, 5).name();
}

/** CommandComplete ('C'): the command tag, e.g. "SELECT 5", "INSERT 0 1". */
export function readCommandTag(frame: Buffer): string {
  return new Reader(frame, 5).cstring();
}

/** Rows affected or returned, from a command tag's last number (null when it has none). */
export function rowsFromTag(tag: string): number | null {
  const i = tag.lastIndexOf(' ');
  if (i < 0) return null;
  const n = Number(tag.slice(i + 1));
  return Number.isInteger(n) ? n : null;
}

/** ErrorResponse/NoticeResponse fields keyed by their one-byte code ('S','C','M',...). */
export function readErrorFields(frame: Buffer): Map<string, string> {
  const r = new Reader(frame, 5);
  const out = new Map<string, string>();
  while (r.remaining > 0) {
    const code = r.buf[r.offset];
    r.offset++;
    if (code === 0) break;
    out.set(String.fromCharCode(code ?? 0), r.cstring());
  }
  return out;
}
