import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { connectUpstream } from './upstream.js';
import * as ser from './serializer.js';

/** An authentication request ('R') with its code and body. */
const auth = (code: number, body: Buffer = Buffer.alloc(0)): Buffer => {
  const out = Buffer.alloc(9 + body.length);
  out.write('R', 0, 'latin1');
  out.writeInt32BE(8 + body.length, 1);
  out.writeInt32BE(code, 5);
  body.copy(out, 9);
  return out;
};

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A target that asks for SCRAM-SHA-256, reads whatever comes back, then sends `then` (no SASLFinal). */
async function skippingTarget(then: Buffer): Promise<number> {
  server = createServer((s) => {
    s.on('error', () => {});
    let step = 0;
    s.on('data', () => {
      step++;
      if (step === 1) s.write(auth(10, Buffer.from('SCRAM-SHA-256\0\0', 'latin1')));
      else if (step === 2) s.write(then);
    });
  });
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('no address');
  return a.port;
}

describe('upstream login', () => {
  it('refuses a target that ends SCRAM without proving it knows the password', async () => {
    // A target (or anyone between) that answers the client-first message with AuthenticationOk.
    const port = await skippingTarget(Buffer.concat([auth(0), ser.readyForQuery('I')]));
    const target = { host: '127.0.0.1', port, database: 'app', user: 'hp_x', password: 'pw', ssl: false } as Parameters<typeof connectUpstream>[0];
    await expect(connectUpstream(target, new Map(), 5000)).rejects.toThrow(/without proving it knows the password/);
  });
});
