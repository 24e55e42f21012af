import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GatewayAuditEvent, GatewayAuditSink } from '../authority.js';
import { startFakeUpstream, type FakeUpstream } from '../../../test/support/gateway-fake-upstream.js';
import { TestAuthority } from '../../../test/support/gateway-harness.js';
import { rawLogin, rawQuery } from '../../../test/support/gateway-raw-client.js';
import { PostgresGateway } from './server.js';

/** An audit store that stalls until released. */
class GatedSink implements GatewayAuditSink {
  readonly stored: GatewayAuditEvent[] = [];
  #open = false;
  #waiters: Array<() => void> = [];
  async record(events: readonly GatewayAuditEvent[]): Promise<void> {
    if (!this.#open) await new Promise<void>((r) => this.#waiters.push(r));
    this.stored.push(...events);
  }
  open(): void {
    this.#open = true;
    for (const w of this.#waiters.splice(0)) w();
  }
}

let upstream: FakeUpstream;
let dir = '';
beforeAll(async () => {
  upstream = await startFakeUpstream();
  dir = mkdtempSync(join(tmpdir(), 'hp-gwthrottle-'));
});
afterAll(async () => {
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('audit backpressure', () => {
  it('stops reading from clients while the audit store lags, then catches up without losing an event', async () => {
    const authority = new TestAuthority();
    const sink = new GatedSink();
    const gw = new PostgresGateway({ authority, audit: sink, port: 0, tls: { selfSignedDir: dir }, auditBatch: { highWater: 4, maxBatch: 2, maxDelayMs: 0 } });
    const { port } = await gw.start();
    const grantId = authority.addGrant({
      userId: 'usr_a',
      userName: 'alice',
      resource: 'app',
      role: 'write',
      expiresAt: new Date(Date.now() + 3_600_000),
      upstream: { host: '127.0.0.1', port: upstream.port, database: 'app', user: 'u', password: 'p' },
      guardrails: [],
      readOnly: false,
      storeParameters: false,
    });
    try {
      const s = await rawLogin(port, authority.token(grantId));
      let completed = 0;
      const all = (async () => {
        for (let i = 0; i < 20; i++) {
          await rawQuery(s, `select ${i}`);
          completed++;
        }
      })();
      await new Promise((r) => setTimeout(r, 300));
      // Held back while the store lags: only the few queries before the high-water mark ran.
      expect(completed).toBeLessThan(8);
      sink.open();
      await all;
      expect(completed).toBe(20);
      s.end();
      await gw.close();
      expect(sink.stored.filter((e) => e.type === 'gateway.query').map((e) => e.data.sql)).toEqual(Array.from({ length: 20 }, (_, i) => `select ${i}`));
    } finally {
      sink.open();
      await gw.close();
    }
  });
});
