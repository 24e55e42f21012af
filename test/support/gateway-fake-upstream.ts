import { createServer, type Server, type Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { Framer } from '../../src/gateway/postgres/framing.js';
import * as ser from '../../src/gateway/postgres/serializer.js';

/**
 * A minimal PostgreSQL-speaking target for protocol tests that need no real database: it logs
 * anyone in (trust), answers Query and Sync, and in 'garbage' mode answers the first query with
 * random bytes (to fuzz the gateway's backend side). With `tls`, it accepts SSLRequest.
 */
export interface FakeUpstream {
  readonly port: number;
  mode: 'answer' | 'garbage';
  close(): Promise<void>;
}

export async function startFakeUpstream(random: () => number = Math.random, tls?: SecureContext): Promise<FakeUpstream> {
  const sockets = new Set<Socket>();
  const fake: { mode: 'answer' | 'garbage' } = { mode: 'answer' };
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
            if (fake.mode === 'garbage') {
              // A header with an impossible length, then noise: always a protocol violation.
              const junk = Buffer.alloc(5 + Math.floor(random() * 64));
              junk.set([0x44, 0, 0, 0, 2]);
              for (let i = 5; i < junk.length; i++) junk[i] = Math.floor(random() * 256);
              s.write(junk);
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

function commandComplete(tag: string): Buffer {
  const body = Buffer.from(`${tag}\0`);
  const out = Buffer.alloc(5 + body.length);
  out[0] = 0x43;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}
