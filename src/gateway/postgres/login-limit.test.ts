import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../../../test/support/gateway-harness.js';

let fx: GatewayFixture;
beforeAll(async () => {
  fx = await startGatewayFixture({ maxLoginsPerAddress: 3 });
});
afterAll(async () => {
  await fx?.stop();
});

const open = async (): Promise<{ s: Socket; got: () => string; closed: Promise<void> }> => {
  const s = connect({ host: '127.0.0.1', port: fx.port });
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString('latin1')));
  s.on('error', () => {});
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  await new Promise((r) => s.once('connect', r));
  return { s, got: () => text, closed };
};

describe('gateway: connections still logging in, per client address', () => {
  it('refuses one address more than its share of unfinished logins, and takes it again once they end', async () => {
    // Three connections that say nothing hold three login slots (until the login timeout).
    const idle = await Promise.all([open(), open(), open()]);
    await new Promise((r) => setTimeout(r, 100));
    const fourth = await open();
    await fourth.closed;
    expect(fourth.got()).toContain('too many connections from your address are still logging in');
    expect(fourth.got()).toContain('53300');
    for (const c of idle) c.s.destroy();
    await Promise.all(idle.map((c) => c.closed));
    await new Promise((r) => setTimeout(r, 100));
    // A real client gets in again (the slots were given back).
    const c = fx.client(fx.grant({ role: 'write' }));
    await c.connect();
    expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    await c.end();
  });
});
