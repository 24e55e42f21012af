import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayExtension } from '../../src/server/gateway-extension.js';
import { startTestHallpass, type TestHallpass } from '../support/hallpass.js';
import { freePort, startPgTarget, type PgTarget } from '../support/pg-target.js';

const run = promisify(execFile);

/** An operator's own certificate, issued by a private CA: clients are handed the CA (gateway.caFile), not the leaf. */
describe('gateway with a configured certificate and CA', () => {
  let target: PgTarget;
  let t: TestHallpass;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hp-gw-ca-'));
    const o = (args: string[]) => run('openssl', args, { cwd: dir });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await o(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=test ca']);
    await o(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=gateway']);
    writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    await o(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext']);
    target = await startPgTarget();
    t = await startTestHallpass({
      target,
      start: { extensions: [gatewayExtension({
        host: '127.0.0.1', port: await freePort(), requireTls: true,
        certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server.key'), caFile: join(dir, 'ca.pem'),
      })] },
    });
  });
  afterAll(async () => {
    await t?.close();
    await target?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('returns the CA as caPem, and psql verifies the gateway with it (verify-full)', async () => {
    const r = await t.api(await t.token('alice'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '5m', reason: 'ca' });
    const creds = await t.api(await t.token('alice'), 'GET', `/api/v1/grants/${r.body.grant.id}/credentials?via=gateway`);
    expect(creds.status, JSON.stringify(creds.body)).toBe(200);
    expect(creds.body.caPem).toBe(readFileSync(join(dir, 'ca.pem'), 'utf8'));
    expect(creds.body.env.PGSSLMODE).toBe('verify-full');
    writeFileSync(join(dir, 'from-api.pem'), creds.body.caPem);
    const dsn = `${creds.body.dsn}&sslrootcert=${encodeURIComponent(join(dir, 'from-api.pem'))}`;
    const out = await run('/usr/bin/psql', [dsn, '-X', '-Atc', 'select 1'], { env: { PATH: '/usr/bin:/bin' } });
    expect(out.stdout.trim()).toBe('1');
  });
});
