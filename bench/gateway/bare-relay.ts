import { connect, createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, TLSSocket } from 'node:tls';

/**
 * A reference point for the gateway benchmark: the simplest PostgreSQL proxy on Node's socket and
 * TLS stack. TLS from the client (answering SSLRequest, as the gateway does), then the decrypted
 * bytes copied to the target and back with 'data' events and write(), backpressure aside. No framing, no authentication of its
 * own (the client logs in to the target with the target's password), no audit. The gateway's
 * relay does the same I/O plus its protocol work, so the gap between this and PgBouncer is what
 * the runtime costs before a line of the gateway runs.
 */
export async function startBareRelay(target: { host: string; port: number }, certPem: string, keyPem: string): Promise<{ port: number; close(): Promise<void> }> {
  const context = createSecureContext({ cert: certPem, key: keyPem });
  const sockets = new Set<Socket>();
  const server: Server = createServer((raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    raw.setNoDelay(true);
    raw.once('readable', () => {
      const head = raw.read(8) as Buffer | null;
      if (!head || head.readInt32BE(4) !== 80877103) return raw.destroy(); // not an SSLRequest
      raw.write('S');
      const client = new TLSSocket(raw, { isServer: true, secureContext: context });
      const upstream = connect({ host: target.host, port: target.port, noDelay: true });
      client.on('data', (b: Buffer) => upstream.write(b));
      upstream.on('data', (b: Buffer) => client.write(b));
      sockets.add(upstream);
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      for (const s of [client, upstream]) {
        s.on('error', end);
        s.on('close', end);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return {
    port: address.port,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
