import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../../../test/support/gateway-fake-upstream.js';
import { MemoryAuditSink, TestAuthority } from '../../../test/support/gateway-harness.js';
import { rawLogin, rawQuery } from '../../../test/support/gateway-raw-client.js';
import * as ser from './serializer.js';
import { PostgresGateway } from './server.js';

/** Deterministic PRNG (mulberry32) so a failure can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.HALLPASS_FUZZ_SEED ?? 20261121);
const rand = prng(SEED);
const int = (n: number) => Math.floor(rand() * n);
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));

let upstream: FakeUpstream;
let gateway: PostgresGateway;
let port = 0;
let dir = '';
const authority = new TestAuthority();
const sink = new MemoryAuditSink();
let grantId = '';

beforeAll(async () => {
  upstream = await startFakeUpstream(rand);
  dir = mkdtempSync(join(tmpdir(), 'hp-gwfuzz-'));
  gateway = new PostgresGateway({ authority, audit: sink, port: 0, tls: { selfSignedDir: dir }, maxMessageBytes: 1 << 20, loginTimeoutMs: 1500 });
  ({ port } = await gateway.start());
  grantId = authority.addGrant({
    userId: 'usr_a',
    userName: 'alice',
    resource: 'app',
    role: 'write',
    expiresAt: new Date(Date.now() + 3_600_000),
    upstream: { host: '127.0.0.1', port: upstream.port, database: 'app', user: 'u', password: 'p' },
    guardrails: ['ddl'],
    readOnly: false,
    storeParameters: true,
  });
});
afterAll(async () => {
  await gateway?.close();
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Sends `data` on a fresh plain connection; resolves when the gateway closes it. */
function sendRaw(data: Buffer[]): Promise<Buffer> {
  return new Promise((resolve) => {
    const s = netConnect({ port, host: '127.0.0.1' });
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', () => {});
    s.on('close', () => resolve(Buffer.concat(got)));
    s.on('connect', () => {
      for (const d of data) s.write(d);
    });
  });
}

const login = (): Promise<Socket> => rawLogin(port, authority.token(grantId));

async function stillServes(): Promise<void> {
  const s = await login();
  expect(await rawQuery(s, 'select 1')).toContain('SELECT 0');
  s.end(ser.terminate());
}

describe(`gateway fuzz (seed ${SEED})`, () => {
  it('closes connections that send random bytes or mutated startup packets, and keeps serving', async () => {
    const valid = ser.startupMessage(new Map([['user', 'alice'], ['database', 'app']]));
    const inputs: Buffer[][] = [];
    for (let i = 0; i < 60; i++) inputs.push([bytes(1 + int(200))]);
    for (let i = 0; i < 60; i++) {
      const m = Buffer.from(valid);
      for (let k = 0; k < 1 + int(4); k++) m[int(m.length)] = int(256);
      inputs.push([int(2) === 0 ? m : m.subarray(0, int(m.length)), bytes(int(20))]);
    }
    inputs.push([Buffer.from([0, 0, 0x27, 0x11, 0, 3, 0, 0])]); // 10001-byte startup: over the limit
    inputs.push([ser.sslRequest(), Buffer.from('not a TLS handshake')]); // plaintext injected before the handshake
    const before = process.memoryUsage().rss;
    const replies = await Promise.all(inputs.map((i) => sendRaw(i)));
    expect(replies).toHaveLength(inputs.length);
    await stillServes();
    expect(process.memoryUsage().rss - before).toBeLessThan(256 * 1024 * 1024);
  });

  it('survives random and mutated frontend messages after login', async () => {
    const templates = [
      ser.query('select 1'),
      ser.parse('s', 'select $1'),
      Buffer.from([0x42, 0, 0, 0, 14, 0, 0x73, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), // Bind (mangled below)
      Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0]), // Execute
      Buffer.from([0x53, 0, 0, 0, 4]), // Sync
      Buffer.from([0x46, 0, 0, 0, 4]), // FunctionCall with no body
      Buffer.from([0x43, 0, 0, 0, 5, 0x53]), // Close with no name terminator
    ];
    const sessions = await Promise.all(Array.from({ length: 20 }, () => login()));
    await Promise.all(
      sessions.map(async (s) => {
        const closed = new Promise<void>((r) => s.once('close', () => r()));
        for (let i = 0; i < 30; i++) {
          const t = Buffer.from(templates[int(templates.length)] ?? Buffer.alloc(0));
          const choice = int(4);
          if (choice === 0) s.write(bytes(1 + int(40)));
          else if (choice === 1) {
            for (let k = 0; k < 1 + int(3); k++) t[5 + int(Math.max(1, t.length - 5))] = int(256);
            s.write(t);
          } else if (choice === 2) s.write(t.subarray(0, 1 + int(t.length)));
          else s.write(t);
        }
        s.end(ser.terminate());
        await closed;
      }),
    );
    await stillServes();
  });

  it('closes one connection on an over-limit message without buffering it', async () => {
    const s = await login();
    const closed = new Promise<string>((r) => {
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.once('close', () => r(got));
    });
    const header = Buffer.from([0x51, 0, 0, 0, 0]);
    header.writeInt32BE(2 << 20, 1);
    s.write(header);
    expect(await closed).toMatch(/exceeds the limit/);
    await stillServes();
  });

  it('closes a session whose target sends garbage, and keeps serving others', async () => {
    const s = await login();
    upstream.mode = 'garbage';
    try {
      const closed = new Promise<void>((r) => s.once('close', () => r()));
      s.write(ser.query('select 1'));
      await closed;
    } finally {
      upstream.mode = 'answer';
    }
    await stillServes();
  });
});
