import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../../../test/support/gateway-harness.js';
import { rawLogin, rawStartup, receiveUntil, resetConnection } from '../../../test/support/gateway-raw-client.js';
import type { Clock } from '../../domain/clock.js';
import * as ser from './serializer.js';

/**
 * A grant that ends while its session logs in upstream, and a session whose end is noticed after
 * its grant's end (review of 2026-12-02). The upstream here never answers (a target that
 * accepts TCP and says nothing, as one stuck or far away), with a connect timeout far beyond
 * the test's: so a cut that waited for the login would never arrive within the test's time.
 */
describe('a grant ending during the upstream login', () => {
  let fx: GatewayFixture;
  let silent: Server;
  let silentPort = 0;
  const held: Socket[] = [];
  /** The clock the gateway reads: real time plus `ahead` ms. */
  const clock = { ahead: 0 };
  const gatewayClock: Clock = { now: () => new Date(Date.now() + clock.ahead) };

  beforeAll(async () => {
    silent = createServer((s) => {
      s.on('error', () => {});
      held.push(s);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    silentPort = (silent.address() as { port: number }).port;
    fx = await startGatewayFixture({ upstreamConnectTimeoutMs: 600_000, loginTimeoutMs: 600_000, clock: gatewayClock });
  });
  afterAll(async () => {
    for (const s of held) s.destroy();
    silent?.close();
    await fx?.stop();
  });

  /** Logs in to a grant whose target never answers; resolves once the gateway is connecting upstream. */
  async function stuckLogin(grantId: string): Promise<{ answer: Promise<Buffer> }> {
    const before = held.length;
    const s = await rawStartup(fx.port);
    const answer = receiveUntil(s, (b) => b.includes(0x45) || b.includes(0x5a));
    s.write(ser.passwordMessage(fx.authority.token(grantId)));
    await expect.poll(() => held.length, { timeout: 10_000 }).toBeGreaterThan(before);
    return { answer };
  }

  const refusals = (grantId: string) => fx.sink.events.filter((e) => e.grantId === grantId).map((e) => [e.type, (e.data as { code?: string; reason?: string }).code ?? (e.data as { reason?: string }).reason]);

  it('a revocation calls the login off at once: the client gets the revocation, the audit a refusal, and endGrant resolves', async () => {
    const g = fx.grant({ upstream: { port: silentPort } });
    const { answer } = await stuckLogin(g);
    fx.authority.revoke(g);
    expect(await fx.gateway.endGrant(g, 'revoked')).toBe(1);
    expect((await answer).toString('latin1')).toContain('hallpass: access to app revoked');
    await expect.poll(() => refusals(g)).toEqual([['gateway.refused', 'revoked']]);
  });

  it('the grant\'s end during the login refuses it at the grant\'s end, never later', async () => {
    const end = new Date(Date.now() + 300);
    const g = fx.grant({ upstream: { port: silentPort }, expiresAt: end });
    const { answer } = await stuckLogin(g);
    expect((await answer).toString('latin1')).toContain('hallpass: access to app expired');
    await expect.poll(() => refusals(g)).toEqual([['gateway.refused', 'expired']]);
    const ev = fx.sink.events.find((e) => e.grantId === g);
    expect(ev!.at.getTime()).toBeLessThanOrEqual(end.getTime());
  });

  it('a cut noticed after the grant\'s end during the login is the expiry, at the grant\'s end, as for a session (second review)', async () => {
    const end = new Date(Date.now() + 3_600_000);
    const g = fx.grant({ upstream: { port: silentPort }, expiresAt: end });
    const { answer } = await stuckLogin(g);
    clock.ahead = 3_600_000 + 5_000;
    try {
      await fx.gateway.endGrant(g, 'revoked');
    } finally {
      clock.ahead = 0;
    }
    expect((await answer).toString('latin1')).toContain('hallpass: access to app expired');
    await expect.poll(() => fx.sink.events.filter((e) => e.grantId === g).map((e) => [e.type, (e.data as { code: string }).code, e.at.getTime()]))
      .toEqual([['gateway.refused', 'expired', end.getTime()]]);
  });

  it('a session whose client leaves after its grant\'s end, before its own timer fires, ended by the expiry at the grant\'s end', async () => {
    const end = new Date(Date.now() + 3_600_000);
    const g = fx.grant({ expiresAt: end });
    const s = await rawLogin(fx.port, fx.authority.token(g));
    // The gateway's clock passes the grant's end; the session's timer (real time) has not fired.
    clock.ahead = 3_600_000 + 5_000;
    try {
      // A reset, as a client killed or timing out does: the relay hears a close, no end of stream.
      resetConnection(s);
      await expect.poll(() => fx.sink.events.some((e) => e.grantId === g && e.type === 'gateway.session.end')).toBe(true);
    } finally {
      clock.ahead = 0;
    }
    const ended = fx.sink.events.find((e) => e.grantId === g && e.type === 'gateway.session.end')!;
    // It said `client_closed`, 5 s after the grant's end.
    expect((ended.data as { reason: string }).reason).toBe('expired');
    expect(ended.at.getTime()).toBe(end.getTime());
  });
});

describe('the gateway stopping during an upstream login', () => {
  it('calls the login off and answers the client at once', async () => {
    const held: Socket[] = [];
    const silent = createServer((s) => {
      s.on('error', () => {});
      held.push(s);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const fx = await startGatewayFixture({ upstreamConnectTimeoutMs: 600_000, loginTimeoutMs: 600_000 });
    try {
      const g = fx.grant({ upstream: { port: (silent.address() as { port: number }).port } });
      const s = await rawStartup(fx.port);
      const answer = receiveUntil(s, (b) => b.includes(0x45));
      s.write(ser.passwordMessage(fx.authority.token(g)));
      await expect.poll(() => held.length, { timeout: 10_000 }).toBe(1);
      await fx.gateway.close();
      expect((await answer).toString('latin1')).toContain('the gateway is shutting down');
      expect(fx.sink.events.filter((e) => e.grantId === g).map((e) => [e.type, (e.data as { code?: string }).code])).toEqual([['gateway.refused', 'shutdown']]);
    } finally {
      for (const s of held) s.destroy();
      silent.close();
      await fx.stop();
    }
  });
});
