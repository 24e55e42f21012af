import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayExtension } from '../server/gateway-extension.js';
import { freePort, startPgTarget, type PgTarget } from '../../test/support/pg-target.js';
import { startTestHallpass, type TestHallpass } from '../../test/support/hallpass.js';
import { memoryIo } from './io.js';
import { buildProgram, runCli } from './program.js';
import type { Credentials, RequestOutcome } from './views.js';

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
    const direct = JSON.parse((await hp('alice', ['creds', o.grant!.id, '--json'])).out) as Credentials;
    expect(direct).toMatchObject({ viaGateway: false, port: target.port, user: o.grant!.principal });
  });

  it('connect runs the real psql through the gateway', async () => {
    await hp('dave', ['request', 'app-db', '--role', 'read', '--reason', 'gw connect']);
    const bin = mkdtempSync(join(tmpdir(), 'hp-psql-wrap-'));
    const log = join(bin, 'out');
    // Wraps the real psql only to capture its output (connect inherits stdio).
    writeFileSync(join(bin, 'psql'), `#!/bin/sh\nexec /usr/bin/psql "$@" > ${log} 2>&1\n`);
    chmodSync(join(bin, 'psql'), 0o755);
    try {
      const r = await hp('dave', ['connect', 'app-db', '--', '-Atc', 'select sum(total)::int from orders'], { PATH: `${bin}:/usr/bin:/bin` });
      expect(r.err).toContain('connecting to app-db as dave through the hallpass gateway');
      expect(readFileSync(log, 'utf8').trim()).toBe('60');
      expect(r.code).toBe(0);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});
