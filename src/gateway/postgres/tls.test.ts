import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../../../test/support/gateway-fake-upstream.js';
import { MemoryAuditSink, TestAuthority } from '../../../test/support/gateway-harness.js';
import { rawLogin, rawQuery } from '../../../test/support/gateway-raw-client.js';
import { PostgresGateway } from './server.js';
import { loadGatewayTls } from './tls.js';

const run = promisify(execFile);
let dir = '';
let upstream: FakeUpstream;
const authority = new TestAuthority();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hp-gwtls-'));
  upstream = await startFakeUpstream();
  // A private CA and a server certificate it signed, as an operator would configure.
  const o = (args: string[]) => run('openssl', args, { cwd: dir });
  await o(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=test ca']);
  await o(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=DNS:localhost\n');
  await o(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext']);
});
afterAll(async () => {
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

function grant(): string {
  return authority.addGrant({
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
}

async function psql(port: number, sslmode: string, rootcert: string): Promise<{ ok: boolean; stderr: string }> {
  const env = { ...process.env, PGHOST: 'localhost', PGPORT: String(port), PGUSER: 'alice', PGDATABASE: 'app', PGPASSWORD: authority.token(grant()), PGSSLMODE: sslmode, PGSSLROOTCERT: rootcert };
  try {
    await run('psql', ['-X', '-At', '-c', 'select 1'], { env });
    return { ok: true, stderr: '' };
  } catch (e) {
    return { ok: false, stderr: (e as { stderr?: string }).stderr ?? '' };
  }
}

describe('gateway TLS', () => {
  it('serves a CA-signed certificate from files: verify-full with the CA works, with another CA it fails', async () => {
    const gw = new PostgresGateway({ authority, audit: new MemoryAuditSink(), port: 0, tls: { certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server.key') } });
    const { port } = await gw.start();
    try {
      expect(await psql(port, 'verify-full', join(dir, 'ca.pem'))).toEqual({ ok: true, stderr: '' });
      expect(await psql(port, 'require', join(dir, 'nowhere.pem'))).toEqual({ ok: true, stderr: '' });
      const wrong = await psql(port, 'verify-full', join(dir, 'server.pem'));
      expect(wrong.ok).toBe(false);
      expect(wrong.stderr).toMatch(/certificate verify failed|unable to get/i);
    } finally {
      await gw.close();
    }
  });

  it('generates a self-signed pair once, keeps the key private, and reuses it on restart', async () => {
    const selfSignedDir = join(dir, 'generated');
    const first = await loadGatewayTls({ selfSignedDir });
    expect(statSync(join(selfSignedDir, 'gateway-key.pem')).mode & 0o077).toBe(0);
    const second = await loadGatewayTls({ selfSignedDir });
    expect(second.certPem).toBe(first.certPem);
    expect(readFileSync(join(selfSignedDir, 'gateway-cert.pem'), 'utf8')).toBe(first.certPem);
  });

  it('regenerates a kept self-signed pair that does not name the listen host (clients verify the name)', async () => {
    const selfSignedDir = join(dir, 'rehost');
    const first = await loadGatewayTls({ selfSignedDir, hostnames: ['127.0.0.1', 'localhost'] });
    expect(new X509Certificate(first.certPem).checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect((await loadGatewayTls({ selfSignedDir, hostnames: ['localhost', '127.0.0.1'] })).certPem).toBe(first.certPem);
    const moved = await loadGatewayTls({ selfSignedDir, hostnames: ['db-gw.example', 'localhost'] });
    expect(moved.certPem).not.toBe(first.certPem);
    expect(new X509Certificate(moved.certPem).checkHost('db-gw.example')).toBe('db-gw.example');
    expect(statSync(join(selfSignedDir, 'gateway-key.pem')).mode & 0o077).toBe(0);
  });

  it('logs in to a target over TLS, verifying it with the CA from the grant, and refuses a target it cannot verify', async () => {
    const serverTls = await loadGatewayTls({ certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server.key') });
    const tlsTarget = await startFakeUpstream(Math.random, serverTls.context);
    const sink = new MemoryAuditSink();
    const gw = new PostgresGateway({ authority, audit: sink, port: 0, tls: { selfSignedDir: join(dir, 'gw') } });
    const { port } = await gw.start();
    const upstreamGrant = (ca: string) =>
      authority.addGrant({
        userId: 'usr_a',
        userName: 'alice',
        resource: 'app',
        role: 'write',
        expiresAt: new Date(Date.now() + 3_600_000),
        upstream: { host: '127.0.0.1', port: tlsTarget.port, database: 'app', user: 'u', password: 'p', ssl: { ca, servername: 'localhost' } },
        guardrails: [],
        readOnly: false,
        storeParameters: false,
      });
    try {
      const ok = await rawLogin(port, authority.token(upstreamGrant(readFileSync(join(dir, 'ca.pem'), 'utf8'))));
      expect(await rawQuery(ok, 'select 1')).toContain('SELECT 0');
      ok.end();
      const otherCa = readFileSync(join(dir, 'gw', 'gateway-cert.pem'), 'utf8');
      await expect(rawLogin(port, authority.token(upstreamGrant(otherCa)))).rejects.toThrow(/could not log in to app/);
      await new Promise((r) => setTimeout(r, 30));
      expect(sink.ofType('gateway.refused').map((e) => e.data.code)).toEqual(['upstream_failed']);
    } finally {
      await gw.close();
      await tlsTarget.close();
    }
  });

  it('refuses a configuration that requires TLS without a certificate', () => {
    expect(() => new PostgresGateway({ authority, audit: new MemoryAuditSink(), tls: false })).toThrow(/requireTls/);
  });
});
