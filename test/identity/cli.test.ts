import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/password.js';
import { totpAt } from '../../src/auth/totp.js';
import { memoryIo } from '../../src/cli/io.js';
import { registerLoginCommands } from '../../src/cli/login.js';
import { buildProgram, runCli } from '../../src/cli/program.js';
import { testPolicy } from '../support/hallpass.js';
import { startIdentityHallpass, type IdentityHallpass } from '../support/oidc-hallpass.js';
import { startLocalIssuer, type LocalIssuer } from '../support/oidc-issuer.js';
import { signInAtProvider, startOidcProvider, TEST_CLIENT, type LocalOidcProvider } from '../support/oidc-provider.js';
import { freePort, startPgTarget, type PgTarget } from '../support/pg-target.js';

const deployRule = `
  - name: deploy
    who: { workloads: [orders-deploy] }
    resources: { names: [app-db] }
    roles: [write]
    duration: { default: 15m, max: 15m }
    approval: auto
`;

describe('CLI: login, logout, MFA prompt, SSO loopback, pipeline request', () => {
  let target: PgTarget;
  let ci: LocalIssuer;
  let idp: LocalOidcProvider;
  let t: IdentityHallpass;
  let home: string;
  const password = 'pipeline-free password 42';

  beforeAll(async () => {
    target = await startPgTarget();
    const admin = await target.admin();
    await admin.query('create table releases (v text)');
    await admin.end();
    ci = await startLocalIssuer();
    const port = await freePort();
    const hash = await hashPassword(password, { N: 2 ** 14, r: 8, p: 1 });
    const policy = testPolicy(target)
      .replace('- { name: bob, groups: [sre] }', `- { name: bob, groups: [sre], passwordHash: "${hash}" }`)
      .replace('    approval: { approvals: 1, from: [sre] }\n', '    approval: { approvals: 1, from: [sre] }\n    mfa: { approve: true, freshness: 5m }\n')
      .replace('\nrules:\n', `\nrules:\n${deployRule}`);
    t = await startIdentityHallpass({ target, policy, identity: {
      oidc: { issuer: `http://127.0.0.1:${port}`, clientId: TEST_CLIENT.id, clientSecret: TEST_CLIENT.secret, allowInsecureHttp: true, scopes: ['openid', 'email', 'groups'] },
      workloadIssuers: [{ issuer: ci.issuer, audience: 'hallpass' }],
      workloads: [{ name: 'orders-deploy', issuer: ci.issuer, claims: { repository: 'acme/orders', ref: 'refs/heads/main' } }],
    } });
    idp = await startOidcProvider({ port, redirectUri: `${t.h.url}/api/v1/auth/oidc/callback` });
    idp.accounts.set('frank', { email: 'frank@example.com', groups: ['engineers'] });
    home = mkdtempSync(join(tmpdir(), 'hp-cli-home-'));
  });
  afterAll(async () => {
    await t?.close();
    await ci?.close();
    await idp?.close();
    await target?.stop();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  const cli = async (args: string[], env: Record<string, string> = {}) => {
    const io = memoryIo({ XDG_CONFIG_HOME: home, HALLPASS_SERVER: t.h.url, ...env }, { pollIntervalMs: 50 });
    const program = buildProgram(io);
    registerLoginCommands(program);
    const code = await runCli(program, args);
    return { code, out: io.out, err: io.err };
  };

  it('a pipeline gets credentials with request --wait --oidc-token-env', async () => {
    const jwt = await ci.sign({ aud: 'hallpass', sub: 'repo:acme/orders', repository: 'acme/orders', ref: 'refs/heads/main' });
    const r = await cli(['request', 'app-db', '--role', 'write', '--reason', 'release 7', '--wait', '--format', 'dsn', '--oidc-token-env', 'CI_OIDC_TOKEN'], { CI_OIDC_TOKEN: jwt });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const c = new pg.Client({ connectionString: r.out.trim() });
    await c.connect();
    await c.query("insert into releases values ('7')");
    await c.end();
    const missing = await cli(['request', 'app-db', '--role', 'write', '--reason', 'x', '--oidc-token-env', 'NOPE']);
    expect(missing.code).toBe(2);
  });

  it('login asks for the TOTP code after the password, saves a 0600 token, and logout revokes it on the server', async () => {
    const first = await cli(['login', '--user', 'bob'], { HALLPASS_PASSWORD: password });
    expect(first.code).toBe(0);
    const tok = (await t.call('POST', '/api/v1/auth/login', { body: { username: 'bob', password } })).body.token as string;
    const secret = (await t.call('POST', '/api/v1/auth/mfa/enroll', { token: tok })).body.secret as string;
    // Confirm with the previous step's code (within the drift window), so the current one is still unused.
    const confirmed = await t.call('POST', '/api/v1/auth/mfa/confirm', { token: tok, body: { code: await totpAt(secret, Date.now() - 30_000) } });
    expect(confirmed.status).toBe(200);

    const noCode = await cli(['login', '--user', 'bob'], { HALLPASS_PASSWORD: password });
    expect(noCode.code).toBe(1);
    expect(noCode.err).toMatch(/TOTP or recovery code is needed: run in a terminal or set HALLPASS_MFA_CODE/);
    const ok = await cli(['login', '--user', 'bob'], { HALLPASS_PASSWORD: password, HALLPASS_MFA_CODE: await totpAt(secret, Date.now()) });
    expect(ok.err).toBe('');
    expect(ok.out).toMatch(/logged in to .* as bob/);
    const configFile = join(home, 'hallpass', 'config.json');
    expect(statSync(configFile).mode & 0o777).toBe(0o600);
    expect((await cli(['me'])).out).toMatch(/^bob/);
    // A password login is renewed with its refresh token, like an SSO one.
    expect(statSync(join(home, 'hallpass', 'refresh.json')).mode & 0o777).toBe(0o600);
    const before = (JSON.parse(readFileSync(configFile, 'utf8')) as { token: string }).token;
    const renewed = await cli(['login', '--refresh']);
    expect(renewed.err).toBe('');
    expect(renewed.out).toMatch(/logged in to .* as bob/);
    expect((await t.call('GET', '/api/v1/me', { token: before })).status).toBe(401); // rotated out
    expect((await cli(['me'])).out).toMatch(/^bob/);
    expect((await cli(['mfa', 'status'])).out).toBe('MFA: enrolled (TOTP), 10 recovery codes left\n');

    // An approval the policy guards with MFA, with a token that has not passed MFA (the login's
    // token has, just now): the CLI asks for a code, steps the token up, then retries once.
    const req = await t.call('POST', '/api/v1/requests', { token: await t.token('alice'), body: { resource: 'app-db', role: 'write', reason: 'hotfix' } });
    const plain = await t.token('bob');
    const refused = await cli(['--token', plain, 'approve', req.body.request.id]);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/fresh MFA code/);
    const approve = await cli(['--token', plain, 'approve', req.body.request.id], { HALLPASS_MFA_CODE: confirmed.body.recoveryCodes[0] });
    expect(approve.code).toBe(0);
    expect(approve.err).toMatch(/fresh MFA code/);
    expect((await t.call('GET', `/api/v1/requests/${req.body.request.id}`, { token: await t.token('alice') })).body.status).toBe('approved');

    // mfa recovery: steps up with the code given (here a recovery code), prints new codes; the old ones stop working.
    const old = confirmed.body.recoveryCodes as string[];
    expect((await cli(['--token', plain, 'mfa', 'recovery'])).code).not.toBe(0); // no code to give: nothing replaced
    const rec = await cli(['--token', plain, 'mfa', 'recovery', '--code', old[1]!]);
    expect(rec.code).toBe(0);
    const lines = rec.out.trim().split('\n');
    expect(lines[0]).toBe('New recovery codes (the old ones no longer work):');
    const fresh = lines.slice(1);
    expect(fresh).toHaveLength(10);
    const verify = async (code: string) => (await t.call('POST', '/api/v1/auth/mfa/verify', { token: await t.token('bob'), body: { code } })).status;
    expect(await verify(old[2]!)).toBe(401);
    expect(await verify(fresh[0]!)).toBe(200);
    expect(await verify(fresh[0]!)).toBe(401);

    const saved = JSON.parse(readFileSync(configFile, 'utf8')) as { token: string };
    const out = await cli(['logout']);
    expect(out.code).toBe(0);
    expect(existsSync(configFile)).toBe(false);
    expect((await t.call('GET', '/api/v1/me', { token: saved.token })).status).toBe(401);
  });

  it('login --sso opens the provider and receives the result on a loopback redirect', async () => {
    const io = memoryIo({ XDG_CONFIG_HOME: home, HALLPASS_SERVER: t.h.url, PATH: '/nonexistent' });
    const program = buildProgram(io);
    registerLoginCommands(program);
    const run = runCli(program, ['login', '--sso']);
    let url: string | undefined;
    for (let i = 0; i < 200 && !url; i++) {
      url = /Sign in at:\n\s+(\S+)/.exec(io.err)?.[1];
      if (!url) await new Promise((r) => setTimeout(r, 25));
    }
    expect(url).toBeDefined();
    const back = await signInAtProvider(url!, 'frank');
    const cb = await t.call('GET', `${back.pathname}${back.search}`);
    expect(cb.status).toBe(302);
    const loop = cb.headers.get('location')!;
    expect(loop).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback\?code=/);
    expect((await fetch(loop)).status).toBe(200);
    expect(await run).toBe(0);
    expect(io.out).toMatch(/logged in to .* as frank@example.com/);
    const refresh = join(home, 'hallpass', 'refresh.json');
    expect(statSync(refresh).mode & 0o777).toBe(0o600);
    const configFile = join(home, 'hallpass', 'config.json');
    const first = (JSON.parse(readFileSync(configFile, 'utf8')) as { token: string }).token;
    const renewed = await cli(['login', '--refresh']);
    expect(renewed.code).toBe(0);
    expect(renewed.out).toMatch(/as frank@example.com/);
    expect((await t.call('GET', '/api/v1/me', { token: first })).status).toBe(401); // rotated out
    expect((await cli(['me'])).out).toMatch(/^frank@example.com/);
    expect((await cli(['logout'])).code).toBe(0);
    expect(existsSync(refresh)).toBe(false);
  });
});
