import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import type { GrantEvent } from '../../src/access/context.js';
import { PgGrantEvents } from '../../src/server/events.js';
import { freePort } from '../support/pg-target.js';
import { services } from '../support/services.js';
import { eventually } from '../support/target-checks.js';

/** A TCP proxy in front of the state store that can be taken down (a store restart, failover or network cut). */
async function storeProxy(to: URL): Promise<{ port: number; up(): Promise<void>; down(): Promise<void> }> {
  const port = await freePort();
  const conns = new Set<Socket>();
  let server: Server | undefined;
  return {
    port,
    up: () => new Promise<void>((resolve) => {
      server = createServer((c) => {
        const u = connect(Number(to.port || 5432), to.hostname);
        for (const [x, y] of [[c, u], [u, c]] as const) {
          conns.add(x);
          x.pipe(y);
          x.on('error', () => y.destroy());
          x.on('close', () => y.destroy());
        }
      });
      server.listen(port, '127.0.0.1', () => resolve());
    }),
    down: () => new Promise<void>((resolve) => {
      for (const c of conns) c.destroy();
      conns.clear();
      server?.close(() => resolve());
    }),
  };
}

describe('grant events across instances (PostgreSQL LISTEN/NOTIFY)', () => {
  const buses: PgGrantEvents[] = [];
  afterAll(async () => {
    for (const b of buses) await b.close();
  });

  it('keeps retrying after the store was unreachable for seconds, then hears events again and asks for a catch-up', async () => {
    const url = new URL(services.postgresUrl);
    const proxy = await storeProxy(url);
    await proxy.up();
    const viaProxy = new URL(url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const a = new PgGrantEvents(url.href, 'instance-a');
    const b = new PgGrantEvents(viaProxy.href, 'instance-b');
    buses.push(a, b);
    await a.start();
    await b.start();
    const heard: string[] = [];
    b.subscribe((ev) => heard.push(ev.grantId));
    let catchUps = 0;
    b.onReconnect(() => catchUps++);
    const ended = (grantId: string): GrantEvent => ({ type: 'ended', grantId, resource: 'app-db', reason: 'revoked', at: Date.now() });

    await a.publish(ended('grt_before'));
    expect(await eventually(async () => heard.includes('grt_before'))).toBe(true);

    // Down long enough for several reconnect attempts to fail (one failure used to end them all).
    await proxy.down();
    expect(await eventually(async () => !b.listening)).toBe(true);
    await new Promise((r) => setTimeout(r, 2500));
    await a.publish(ended('grt_during')); // missed by b: the catch-up is for this
    await proxy.up();
    expect(await eventually(async () => b.listening && catchUps === 1, 15_000)).toBe(true);

    await a.publish(ended('grt_after'));
    expect(await eventually(async () => heard.includes('grt_after'))).toBe(true);
    expect(heard).toEqual(['grt_before', 'grt_after']);
    await proxy.down();
  });
});
