import { createServer, type Server, type Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { Framer } from '../../src/gateway/postgres/framing.js';
import * as ser from '../../src/gateway/postgres/serializer.js';

/**
 * A minimal PostgreSQL-speaking target for protocol tests that need no real database: it logs
 * anyone in (trust), answers Query and Sync, and in 'garbage' mode answers the first query with
 * random bytes (to fuzz the gateway's backend side). With `tls`, it accepts SSLRequest.
 * `select 'text'` is answered with one row holding `text` (so a caller can check its answers);
 * `script`, when set, may take over a query's answer (bytes, then optionally closing).
 */
export interface FakeUpstream {
  readonly port: number;
  mode: 'answer' | 'garbage';
  script: ((sql: string) => { readonly bytes: Buffer; readonly close?: boolean } | undefined) | undefined;
  close(): Promise<void>;
}

export async function startFakeUpstream(random: () => number = Math.random, tls?: SecureContext): Promise<FakeUpstream> {
  const sockets = new Set<Socket>();
  const fake: Pick<FakeUpstream, 'mode' | 'script'> = { mode: 'answer', script: undefined };
  const server: Server = createServer((raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    raw.on('error', () => {});
    let s: Socket = raw;
    const framer = new Framer(1 << 20, true);
    const onData = (chunk: Buffer) => {
      try {
        framer.push(chunk, (type, frame) => {
          if (framer.startup && tls && frame.readInt32BE(4) === 80877103 /* SSLRequest */) {
            s.off('data', onData);
            s.write('S');
            s = new TLSSocket(raw, { isServer: true, secureContext: tls });
            s.on('error', () => {});
            s.on('data', onData);
            return;
          }
          if (framer.startup) {
            framer.startup = false;
            s.write(Buffer.concat([ser.authenticationOk(), ser.parameterStatus('server_version', '17.0'), ser.backendKeyData(1, 2), ser.readyForQuery('I')]));
            return;
          }
          if (type === 0x51 /* Q */) {
            const sql = frame.toString('utf8', 5, frame.length - 1);
            const scripted = fake.script?.(sql);
            if (scripted) {
              s.write(scripted.bytes);
              if (scripted.close) s.end();
              return;
            }
            if (fake.mode === 'garbage') {
              // A header with an impossible length, then noise: always a protocol violation.
              const junk = Buffer.alloc(5 + Math.floor(random() * 64));
              junk.set([0x44, 0, 0, 0, 2]);
              for (let i = 5; i < junk.length; i++) junk[i] = Math.floor(random() * 256);
              s.write(junk);
              return;
            }
            const echo = /^select '([^']*)'$/.exec(sql)?.[1];
            if (echo !== undefined) {
              s.write(Buffer.concat([rowDescription('text'), dataRow(echo), commandComplete('SELECT 1'), ser.readyForQuery('I')]));
              return;
            }
            s.write(Buffer.concat([commandComplete('SELECT 0'), ser.readyForQuery('I')]));
          } else if (type === 0x53 /* S */) s.write(ser.readyForQuery('I'));
          else if (type === 0x58 /* X */) s.end();
        });
      } catch {
        s.destroy();
      }
    };
    s.on('data', onData);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return Object.assign(fake, {
    port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  });
}

function message(type: number, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out[0] = type;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

export function commandComplete(tag: string): Buffer {
  return message(0x43, Buffer.from(`${tag}\0`));
}

/** RowDescription ('T') of one text column named `name`. */
export function rowDescription(name: string): Buffer {
  const field = Buffer.alloc(18);
  field.writeUInt32BE(25, 6); // type oid: text
  field.writeInt16BE(-1, 10); // type size: variable
  field.writeInt32BE(-1, 12); // type modifier
  return message(0x54, Buffer.concat([Buffer.from([0, 1]), Buffer.from(`${name}\0`), field]));
}

/** DataRow ('D') of one text value. */
export function dataRow(value: string): Buffer {
  const v = Buffer.from(value);
  const head = Buffer.alloc(6);
  head.writeInt16BE(1, 0);
  head.writeInt32BE(v.length, 2);
  return message(0x44, Buffer.concat([head, v]));
}
