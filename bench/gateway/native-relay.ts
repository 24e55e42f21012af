import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AuditBatcher } from '../../src/audit/batcher.js';
import type { GatewayAuditEvent } from '../../src/gateway/authority.js';
import { Framer } from '../../src/gateway/postgres/framing.js';
import { readCommandTag, readParse, readQuery, rowsFromTag } from '../../src/gateway/postgres/messages.js';

/**
 * A reference point for the gateway benchmark: the ceiling of a data path that runs natively
 * inside this Node.js process (native-relay/relay.c: OpenSSL and libuv poll callbacks on Node's
 * event loop, no Node stream or TLSWrap). Not part of hallpass. Modes:
 * - `native`: bytes never reach JavaScript;
 * - `native-js`: each read is handed to a JavaScript function (no copy) before it is forwarded,
 *   which runs the gateway's own Framer over it: what keeping statement tracking in JavaScript
 *   would cost such a data path, less the tracking itself;
 * - `native-js-audit`: as `native-js`, and each statement (the SQL of a Query or Parse, the tag of
 *   its CommandComplete, its duration) goes to `audit` as one event shaped like the gateway's
 *   `gateway.execute`: a native data path that keeps the gateway's audit as it is. A sketch of
 *   the tracker (no pipelining, no guardrails), not the gateway's.
 * Built on first use with the node-gyp bundled with npm, against Node's own headers.
 */
type Native = {
  createContext(certPem: string, keyPem: string): unknown;
  adopt(ctx: unknown, clientFd: number, upstreamFd: number, onChunk?: (dir: number, len: number) => void, clientBuf?: ArrayBuffer, upstreamBuf?: ArrayBuffer): void;
};

const here = join(dirname(fileURLToPath(import.meta.url)), 'native-relay');

function load(): Native {
  const built = join(here, 'build', 'Release', 'native_relay.node');
  if (!existsSync(built)) {
    const gyp = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    const r = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${join(dirname(process.execPath), '..')}`], { cwd: here, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`building the native relay failed:\n${r.stdout}\n${r.stderr}`);
  }
  return createRequire(import.meta.url)(built) as Native;
}

let sessions = 0;

const fdOf = (s: Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;

export async function startNativeRelay(
  target: { host: string; port: number },
  certPem: string,
  keyPem: string,
  mode: 'native' | 'native-js' | 'native-js-audit',
  audit?: AuditBatcher<GatewayAuditEvent>,
): Promise<{ port: number; close(): Promise<void> }> {
  const native = load();
  const ctx = native.createContext(certPem, keyPem);
  const server: Server = createServer({ pauseOnConnect: true }, (raw) => {
    const upstream = connect({ host: target.host, port: target.port, noDelay: true });
    raw.setNoDelay(true);
    upstream.pause();
    upstream.once('connect', () => {
      if (mode === 'native') native.adopt(ctx, fdOf(raw), fdOf(upstream));
      else {
        const cbuf = new ArrayBuffer(32 * 1024);
        const ubuf = new ArrayBuffer(32 * 1024);
        const cview = Buffer.from(cbuf);
        const uview = Buffer.from(ubuf);
        const fromClient = new Framer(1 << 20, true);
        const fromServer = new Framer(1 << 20);
        const sessionId = `nrs_${++sessions}`;
        const statements: Array<{ sql: string; start: number }> = [];
        // The startup message is the first frame from the client; typed messages follow.
        const onClientFrame = (type: number, frame: Buffer): void => {
          fromClient.startup = false;
          if (mode !== 'native-js-audit') return;
          if (type === 0x51) statements.push({ sql: readQuery(frame), start: performance.now() });
          else if (type === 0x50) statements.push({ sql: readParse(frame).sql, start: performance.now() });
        };
        const onServerFrame = (type: number, frame: Buffer): void => {
          if (type !== 0x43 || audit === undefined) return;
          const s = statements.shift();
          if (s === undefined) return;
          const tag = readCommandTag(frame);
          audit.add({
            type: 'gateway.execute',
            actor: 'bench',
            grantId: 'grt_native_bench',
            at: new Date(),
            data: { sessionId, statementId: 1, sql: s.sql, tag, rows: rowsFromTag(tag), durationMs: performance.now() - s.start },
          });
        };
        native.adopt(
          ctx,
          fdOf(raw),
          fdOf(upstream),
          (dir, len) => {
            try {
              // A partial frame held by a Framer would be overwritten by the next read here; pgbench's
              // messages come whole, and a real data path would copy such a remainder.
              if (dir === 0) fromClient.push(cview.subarray(0, len), onClientFrame);
              else fromServer.push(uview.subarray(0, len), onServerFrame);
            } catch {
              // A benchmark's framing errors are not its business.
            }
          },
          cbuf,
          ubuf,
        );
      }
      raw.destroy();
      upstream.destroy();
    });
    upstream.once('error', () => raw.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return { port: address.port, close: () => new Promise((r) => server.close(() => r())) };
}
