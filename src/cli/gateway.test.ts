import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadGatewayTls } from '../gateway/postgres/tls.js';
import { gatewayExtension } from '../server/gateway-extension.js';
import { freePort, startPgTarget, type PgTarget } from '../../test/support/pg-target.js';
import { startTestHallpass, type TestHallpass } from '../../test/support/hallpass.js';
import { memoryIo } from './io.js';
import { buildProgram, runCli } from './program.js';
import type { Credentials, RequestOutcome } from './views.js';

const run = promisify(execFile);
let target: PgTarget;
let t: TestHallpass;
let dir: string;

async function hp(user: string, args: string[], env: Record<string, string> = {}) {
  const io = memoryIo({ XDG_CONFIG_HOME: dir, HALLPASS_SERVER: t.h.url, HALLPASS_TOKEN: await t.token(user), ...env });
  const code = await runCli(buildProgram(io), args);
  return { code, out: io.out, err: io.err };
}

beforeAll(async () => {
  target = await startPgTarget();
  const admin = await target.admin();
  await admin.query('create table orders (id int primary key, total numeric)');
  await admin.query('insert into orders values (1, 10), (2, 20), (3, 30)');
  await admin.end();
  const port = await freePort();
  t = await startTestHallpass({ target, start: { extensions: [gatewayExtension({ host: '127.0.0.1', port, requireTls: true })] } });
  dir = mkdtempSync(join(tmpdir(), 'hp-cli-gw-'));
});

afterAll(async () => {
  await t?.close();
  await target?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('hallpass CLI with the gateway enabled', () => {
  it('creds --via-gateway gives gateway credentials; without it, the target\'s own', async () => {
    const o = JSON.parse((await hp('alice', ['request', 'app-db', '--role', 'read', '--reason', 'gw creds', '--json'])).out) as RequestOutcome;
    const gw = JSON.parse((await hp('alice', ['creds', o.grant!.id, '--via-gateway', '--json'])).out) as Credentials;
    expect(gw).toMatchObject({ viaGateway: true, user: 'alice', database: 'app-db' });
    expect(gw.port).not.toBe(target.port);
    expect(gw.caPem).toBe(t.h.gateway!.certificatePem);
    expect(gw.env).toMatchObject({ PGSSLMODE: 'verify-full', PGSSLROOTCERT: expect.stringMatching(/gateway-ca-[0-9a-f]{16}\.pem$/) });
    const direct = JSON.parse((await hp('alice', ['creds', o.grant!.id, '--json'])).out) as Credentials;
    expect(direct).toMatchObject({ viaGateway: false, port: target.port, user: o.grant!.principal });
  });

  it('connect runs the real psql through the gateway, verifying it (verify-full with the gateway CA saved 0600)', async () => {
    await hp('dave', ['request', 'app-db', '--role', 'read', '--reason', 'gw connect']);
    const bin = mkdtempSync(join(tmpdir(), 'hp-psql-wrap-'));
    const log = join(bin, 'out');
    const tlsEnv = join(bin, 'tls-env');
    // Wraps the real psql only to capture its output (connect inherits stdio) and its TLS settings.
    writeFileSync(join(bin, 'psql'), `#!/bin/sh\nprintf '%s\\n%s\\n' "$PGSSLMODE" "$PGSSLROOTCERT" > ${tlsEnv}\nexec /usr/bin/psql "$@" > ${log} 2>&1\n`);
    chmodSync(join(bin, 'psql'), 0o755);
    try {
      const r = await hp('dave', ['connect', 'app-db', '--', '-Atc', 'select sum(total)::int from orders'], { PATH: `${bin}:/usr/bin:/bin`, PGSSLMODE: 'disable' });
      expect(r.err).toContain('connecting to app-db as dave through the hallpass gateway');
      expect(readFileSync(log, 'utf8').trim()).toBe('60');
      expect(r.code).toBe(0);
      const [mode, rootcert] = readFileSync(tlsEnv, 'utf8').split('\n');
      expect(mode).toBe('verify-full'); // the caller's own PGSSLMODE=disable did not leak through
      expect(dirname(rootcert!)).toBe(join(dir, 'hallpass'));
      expect(readFileSync(rootcert!, 'utf8')).toBe(t.h.gateway!.certificatePem);
      expect(statSync(rootcert!).mode & 0o777).toBe(0o600);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it('creds --via-gateway --format dsn works as is with psql (verify-full); a wrong CA fails verification', async () => {
    const o = JSON.parse((await hp('carol', ['request', 'app-db', '--role', 'read', '--reason', 'gw dsn', '--json'])).out) as RequestOutcome;
    const psql = (dsn: string) => run('/usr/bin/psql', [dsn, '-X', '-Atc', 'select 1'], { env: { PATH: '/usr/bin:/bin' } });
    const dsn = (await hp('carol', ['creds', o.grant!.id, '--via-gateway', '--format', 'dsn'])).out.trim();
    expect(dsn).toMatch(/^postgres:\/\/carol:hpg_[^@]+@127\.0\.0\.1:\d+\/app-db\?sslmode=verify-full&sslrootcert=%2F/);
    expect((await psql(dsn)).stdout.trim()).toBe('1');

    // The same DSN with another certificate in the CA file: psql refuses the gateway before sending the token.
    const other = await loadGatewayTls({ selfSignedDir: join(dir, 'other-ca') });
    const next = (await hp('carol', ['creds', o.grant!.id, '--via-gateway', '--format', 'dsn'])).out.trim();
    const caFile = decodeURIComponent(/sslrootcert=([^&]+)/.exec(next)![1]!);
    writeFileSync(caFile, other.certPem);
    const refused = await psql(next).then(() => undefined, (e: { stderr?: string }) => e);
    expect(refused?.stderr).toMatch(/certificate verify failed/);
  });
});
