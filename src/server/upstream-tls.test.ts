import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { upstreamTls } from './upstream-tls.js';

const dir = mkdtempSync(join(tmpdir(), 'hp-upstream-tls-'));
const caFile = join(dir, 'ca.pem');
writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('upstreamTls: the resource sslmode/sslrootcert as gateway upstream options', () => {
  it('no TLS unless the resource asks for it', async () => {
    expect(await upstreamTls(undefined)).toBe(false);
  });

  it('require: encrypted, not authenticated; with a CA file the chain is checked but not the host name', async () => {
    expect(await upstreamTls({ mode: 'require' })).toEqual({ rejectUnauthorized: false });
    expect(await upstreamTls({ mode: 'require', caFile })).toEqual({ ca: expect.stringContaining('BEGIN CERTIFICATE'), rejectUnauthorized: true, verifyHostname: false });
  });

  it('verify-full: chain and host name, against the CA file or else the system CAs', async () => {
    expect(await upstreamTls({ mode: 'verify-full' })).toEqual({ rejectUnauthorized: true });
    expect(await upstreamTls({ mode: 'verify-full', caFile })).toEqual({ ca: expect.stringContaining('BEGIN CERTIFICATE'), rejectUnauthorized: true, verifyHostname: true });
  });

  it('an unreadable CA file fails (the gateway refuses the session) rather than connecting unverified', async () => {
    await expect(upstreamTls({ mode: 'verify-full', caFile: join(dir, 'missing.pem') })).rejects.toThrow(/ENOENT/);
  });
});
