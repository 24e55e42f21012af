import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/pg-target.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');

/**
 * A newcomer's first five minutes: `hallpass demo` from the built CLI, then the printed tour,
 * pasted line by line into bash, exactly as printed.
 */
describe('hallpass demo, tried as a new user would', () => {
  let demo: ChildProcess;
  let output = '';
  let env: Record<string, string>;

  beforeAll(async () => {
    // `npm test` builds first and says so; a lone vitest run builds here so dist/ is never stale.
    if (process.env.HALLPASS_BUILT !== '1' || !existsSync(join(root, 'dist/cli/main.js'))) await run('npm', ['run', 'build'], { cwd: root });
    const [api, gw] = [await freePort(), await freePort()];
    demo = spawn(process.execPath, ['bin/hallpass', 'demo', '--port', String(api), '--gateway-port', String(gw)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    demo.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    demo.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const end = Date.now() + 90_000;
    while (!output.includes('When a grant\'s time is up') && Date.now() < end && demo.exitCode === null) {
      await new Promise((r) => setTimeout(r, 200));
    }
    if (!output.includes('When a grant\'s time is up')) throw new Error(`demo did not start:\n${output}`);
    const value = (name: string) => new RegExp(`export ${name}=(\\S+)`).exec(output)?.[1] ?? '';
    env = { ...(process.env as Record<string, string>), HALLPASS_SERVER: value('HALLPASS_SERVER'), ALICE: value('ALICE'), BOB: value('BOB'), XDG_CONFIG_HOME: mkdtempSync(join(tmpdir(), 'hp-demo-cli-')) };
  });
  afterAll(async () => {
    if (demo && demo.exitCode === null) {
      const closed = new Promise((r) => demo.once('exit', r));
      demo.kill('SIGINT');
      await closed;
    }
  });

  /** Runs one tour line in bash, as pasted. */
  const sh = async (line: string, input?: string) => {
    const child = spawn('bash', ['-c', line], { cwd: root, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    // A line that reads no input may exit before its stdin is written: EPIPE there is expected.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
    const code = await new Promise<number>((r) => child.on('exit', (c) => r(c ?? -1)));
    return { code, out, err };
  };
  const tourLine = (needle: string) => {
    const line = output.split('\n').find((l) => l.includes(needle));
    if (!line) throw new Error(`tour has no line with ${needle}`);
    return line.replace(/\s+#.*$/, '').trim();
  };

  it('runs the printed tour: read works, writes refused, approval by another user, gateway audit, revoke, verify', async () => {
    expect((await sh(tourLine('hallpass resources'))).out).toContain('demo-db');
    const req = await sh(tourLine('--role read --for 5m'));
    expect(req.code, req.err).toBe(0);
    const select = await sh(tourLine('group by 1'));
    expect(select.code, select.err).toBe(0);
    expect(select.out).toMatch(/paid/);
    const update = await sh(tourLine("update orders set status = 'paid'"));
    expect(update.err).toMatch(/read-only transaction/);
    const write = await sh(tourLine('--role write --for 10m'));
    expect(write.out).toMatch(/pending/);
    const self = await sh(tourLine('HALLPASS_TOKEN=$ALICE ./bin/hallpass approve'));
    expect(self.code).not.toBe(0);
    expect(self.err).toMatch(/cannot approve your own request/);
    expect((await sh(tourLine('HALLPASS_TOKEN=$BOB ./bin/hallpass requests --pending'))).out).toMatch(/alice/);
    const approve = await sh(tourLine('HALLPASS_TOKEN=$BOB ./bin/hallpass approve'));
    expect(approve.code, approve.err).toBe(0);
    expect(approve.out).toMatch(/approved/);
    const grants = await sh(tourLine('./bin/hallpass grants --active'));
    expect(grants.out.match(/active/g)?.length).toBeGreaterThanOrEqual(2);
    const viaGateway = await sh(tourLine('./bin/hallpass connect demo-db'), 'select count(*) from orders;\ndrop table orders;\n');
    expect(viaGateway.out).toMatch(/200/);
    expect(viaGateway.err).toMatch(/statement denied/);
    const revoke = await sh(tourLine('./bin/hallpass revoke'));
    expect(revoke.code, revoke.err).toBe(0);
    expect(revoke.out).toMatch(/revoked/);
    const audit = await sh(tourLine('audit --limit 30'));
    expect(audit.out).toMatch(/gateway\.query/);
    const verify = await sh(tourLine('audit verify'));
    expect(verify.code, verify.err).toBe(0);
    expect(verify.out).toMatch(/audit chain ok/);
  }, 180_000); // a dozen CLI processes, each starting Node: a hang guard, not a timing check (once over 60 s on a loaded host)

  it('cuts an open psql session when the grant is revoked; its credential stops working and its role is gone from pg_roles', async () => {
    const dsn = (await sh('cat /tmp/hallpass-demo-dsn')).out.trim();
    const psql = spawn('psql', [dsn, '-c', 'select pg_sleep(600)'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    psql.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number>((r) => psql.on('exit', (c) => r(c ?? -1)));
    await new Promise((r) => setTimeout(r, 1000));
    const revoke = await sh('HALLPASS_TOKEN=$ALICE ./bin/hallpass revoke "$(HALLPASS_TOKEN=$ALICE ./bin/hallpass grants --active --ids | head -n 1)" --reason "end of demo"');
    expect(revoke.code, revoke.err).toBe(0);
    expect(await exited).not.toBe(0);
    expect(err).toMatch(/terminat/i);
    const again = await sh(`psql "${dsn}" -c 'select 1'`);
    expect(again.code).not.toBe(0);
    expect(again.err).toMatch(/password authentication failed|does not exist/);
    // The role itself is gone from the target. The demo keeps its admin password in memory only,
    // so look with a fresh grant's login (pg_roles is readable by any role); its own role is the
    // control that the query sees hallpass's roles at all.
    const revoked = decodeURIComponent(new URL(dsn).username);
    const fresh = await sh('HALLPASS_TOKEN=$ALICE ./bin/hallpass request demo-db --role read --for 5m --reason "check the revoked role is gone" --wait --format dsn');
    expect(fresh.code, fresh.err).toBe(0);
    const observer = fresh.out.trim();
    const me = decodeURIComponent(new URL(observer).username);
    expect(me).not.toBe(revoked);
    const roles = await sh(`psql "${observer}" -tA -c "select rolname from pg_roles where rolname in ('${revoked}', '${me}')"`);
    expect(roles.code, roles.err).toBe(0);
    expect(roles.out.trim().split('\n')).toEqual([me]);
  });
});
