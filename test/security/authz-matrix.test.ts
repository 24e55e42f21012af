import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPolicy } from '../support/hallpass.js';
import { startLocalIssuer, type LocalIssuer } from '../support/oidc-issuer.js';
import { startOidcProvider, TEST_CLIENT, type LocalOidcProvider } from '../support/oidc-provider.js';
import { startIdentityHallpass, type ApiResult, type IdentityHallpass } from '../support/oidc-hallpass.js';
import { freePort, startPgTarget, type PgTarget } from '../support/pg-target.js';

/**
 * The authorization matrix: every route the running server serves (its /openapi.json, plus the
 * few deliberately undocumented ones), called as each kind of caller, with the outcome class we expect. A route without an entry fails the test,
 * and so does an entry for a route that no longer exists: adding a route means deciding here who
 * may call it.
 *
 * Outcome classes:
 *   ok      2xx/3xx: the caller may do this
 *   denied  401 unauthenticated (anonymous) / 403 forbidden or self_approval: authn/authz said no
 *   missing 404: no such object for this caller (another's grant looks like no grant: no existence leak)
 *   refused another 4xx after authorization passed (bad input, wrong state, policy said no, MFA code needed)
 * No call may answer 5xx.
 */
type Role = 'anonymous' | 'requester' | 'approver' | 'admin' | 'workload';
type Outcome = 'ok' | 'denied' | 'missing' | 'refused';
const ROLES: readonly Role[] = ['anonymous', 'requester', 'approver', 'admin', 'workload'];

interface Fixtures {
  /** A fresh pending write request by the requester (alice), awaiting an sre approval. */
  pending(): Promise<string>;
  /** A fresh active read grant held by the requester (alice). */
  grant(): Promise<string>;
  /** An open break-glass review. */
  review(): Promise<string>;
}

interface Entry {
  /** Path with placeholders filled for a call (fixtures are made fresh per call). */
  path?: (f: Fixtures) => Promise<string>;
  body?: unknown;
  query?: string;
  expect: Record<Role, Outcome>;
}

const all = (o: Outcome): Record<Role, Outcome> => ({ anonymous: o, requester: o, approver: o, admin: o, workload: o });
const authed = (o: Outcome, overrides: Partial<Record<Role, Outcome>> = {}): Record<Role, Outcome> => ({ ...all(o), anonymous: 'denied', ...overrides });
const adminOnly = (o: Outcome = 'ok') => authed('denied', { admin: o });
const peopleOnly = (o: Outcome, overrides: Partial<Record<Role, Outcome>> = {}) => authed(o, { workload: 'denied', ...overrides });

/** Served but deliberately left out of the OpenAPI document. */
const UNDOCUMENTED = ['GET /metrics', 'GET /openapi.json'];

const MATRIX: Record<string, Entry> = {
  'GET /healthz': { expect: all('ok') },
  'GET /metrics': { expect: all('ok') }, // Prometheus scrape: counts only, no names or secrets
  'GET /openapi.json': { expect: all('ok') },
  'GET /api/v1/me': { expect: authed('ok') },
  'GET /api/v1/resources': { expect: authed('ok') },
  'POST /api/v1/auth/login': { body: { username: 'nobody', password: 'wrong' }, expect: all('refused') },
  'POST /api/v1/auth/logout': { expect: authed('ok') },
  'POST /api/v1/auth/web-login': { body: { username: 'nobody', password: 'wrong' }, expect: all('refused') },
  'GET /api/v1/reviews': { expect: adminOnly() },
  'POST /api/v1/reviews/{id}/close': { path: async (f) => `/api/v1/reviews/${await f.review()}/close`, body: { note: 'reviewed' }, expect: adminOnly() },
  'POST /api/v1/requests': {
    body: { resource: 'app-db', role: 'read', duration: '5m', reason: 'matrix' },
    // alice (engineers) is auto-approved; bob, admin and the workload have no rule for read: policy says no.
    expect: authed('refused', { requester: 'ok' }),
  },
  'GET /api/v1/requests': { expect: authed('ok') },
  'GET /api/v1/requests/{id}': { path: async (f) => `/api/v1/requests/${await f.pending()}`, expect: authed('ok', { workload: 'missing' }) },
  'POST /api/v1/requests/{id}/approve': {
    path: async (f) => `/api/v1/requests/${await f.pending()}/approve`, body: {},
    // requester: no self-approval; admin is not in the sre approver group; workloads never approve.
    expect: authed('denied', { approver: 'ok' }),
  },
  'POST /api/v1/requests/{id}/deny': { path: async (f) => `/api/v1/requests/${await f.pending()}/deny`, body: { reason: 'no' }, expect: authed('denied', { approver: 'ok', admin: 'ok' }) },
  'POST /api/v1/requests/{id}/cancel': { path: async (f) => `/api/v1/requests/${await f.pending()}/cancel`, expect: authed('denied', { requester: 'ok', admin: 'ok' }) },
  'GET /api/v1/grants': { expect: authed('ok') },
  'GET /api/v1/grants/{id}': { path: async (f) => `/api/v1/grants/${await f.grant()}`, expect: authed('missing', { requester: 'ok', admin: 'ok' }) },
  'POST /api/v1/grants/{id}/revoke': { path: async (f) => `/api/v1/grants/${await f.grant()}/revoke`, body: { reason: 'matrix' }, expect: authed('missing', { requester: 'ok', admin: 'ok' }) },
  'POST /api/v1/grants/{id}/extend': {
    path: async (f) => `/api/v1/grants/${await f.grant()}/extend`, body: { by: '5m', reason: 'matrix' },
    expect: authed('missing', { requester: 'ok', admin: 'denied' }),
  },
  'GET /api/v1/grants/{id}/credentials': { path: async (f) => `/api/v1/grants/${await f.grant()}/credentials`, expect: authed('missing', { requester: 'ok', admin: 'denied' }) },
  'GET /api/v1/audit': { expect: adminOnly() },
  'GET /api/v1/audit/verify': { expect: adminOnly() },
  'GET /api/v1/audit/export': { query: 'format=jsonl', expect: adminOnly() },
  'POST /api/v1/audit/{seq}/reveal': { path: async () => '/api/v1/audit/1/reveal', body: { reason: 'matrix' }, expect: adminOnly() },
  'GET /api/v1/auth/mfa': { expect: peopleOnly('ok') },
  'POST /api/v1/auth/mfa/enroll': { expect: peopleOnly('ok') },
  'POST /api/v1/auth/mfa/confirm': { body: { code: '000000' }, expect: peopleOnly('missing') }, // no enrolment started
  'POST /api/v1/auth/mfa/verify': { body: { code: '000000' }, expect: peopleOnly('refused') },
  'POST /api/v1/auth/mfa/recovery-codes': { expect: peopleOnly('refused') },
  'POST /api/v1/users/{name}/mfa/reset': { path: async () => '/api/v1/users/alice/mfa/reset', body: { reason: 'matrix' }, expect: adminOnly() },
  'GET /api/v1/auth/session': { expect: peopleOnly('refused') }, // bearer callers: "this is for web sessions"
  'POST /api/v1/auth/signout': { expect: authed('ok') },
  'POST /api/v1/auth/signout-everywhere': { expect: peopleOnly('ok') },
  'POST /api/v1/auth/refresh': { body: { refreshToken: 'hp_ref_nope' }, expect: all('refused') },
  'GET /api/v1/auth/oidc/start': { expect: all('ok') }, // 302 to the provider
  'POST /api/v1/auth/oidc/cli': { body: { challenge: 'a'.repeat(43) }, expect: all('ok') },
  'GET /api/v1/auth/oidc/callback': { query: 'state=x&code=y', expect: all('refused') },
  'POST /api/v1/auth/oidc/exchange': { body: { code: 'a'.repeat(64), verifier: 'b'.repeat(43) }, expect: all('refused') },
  'GET /api/v1/auth/workload': { expect: authed('refused', { workload: 'ok' }) },
};

/** Every route Fastify serves (from its route tree), as `METHOD /path/{param}`, without HEAD. */
function servedRoutes(tree: string): string[] {
  const stack: string[] = [];
  const out: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│ ]*)[├└]── (\S+) \(([A-Z, ]+)\)$/.exec(line.replace(/\u00a0/g, ' '));
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    const path = (stack[depth - 1] ?? '') + m[2]!;
    stack[depth] = path;
    for (const method of m[3]!.split(', ')) if (method !== 'HEAD') out.push(`${method} ${path.replace(/:([A-Za-z]+)/g, '{$1}')}`);
  }
  return out.sort();
}

function classify(r: ApiResult): Outcome | '5xx' {
  if (r.status >= 500) return '5xx';
  if (r.status < 400) return 'ok';
  const code = (r.body as { error?: { code?: string } } | undefined)?.error?.code;
  if (code === 'unauthenticated' && /^(missing bearer token|invalid, expired or revoked token|your session has ended|workload token refused)/.test(String((r.body as { error: { message: string } }).error.message))) return 'denied';
  if (code === 'forbidden' || code === 'self_approval') return 'denied';
  if (r.status === 404 && code === 'not_found') return 'missing';
  return 'refused';
}

describe('authorization matrix: every API route x anonymous / requester / approver / admin / workload', () => {
  let target: PgTarget;
  let ci: LocalIssuer;
  let t: IdentityHallpass;
  let idp: LocalOidcProvider;
  let routes: string[] = [];
  let documented: string[] = [];

  beforeAll(async () => {
    target = await startPgTarget();
    ci = await startLocalIssuer();
    const idpPort = await freePort();
    t = await startIdentityHallpass({ target, policy: testPolicy(target), identity: {
      oidc: { issuer: `http://127.0.0.1:${idpPort}`, clientId: TEST_CLIENT.id, clientSecret: TEST_CLIENT.secret, allowInsecureHttp: true },
      workloadIssuers: [{ issuer: ci.issuer, audience: 'hallpass' }],
      workloads: [{ name: 'deployer', issuer: ci.issuer, claims: { repository: 'acme/app' } }],
    } });
    idp = await startOidcProvider({ port: idpPort, redirectUri: `${t.h.url}/api/v1/auth/oidc/callback` });
    const doc = (await t.call('GET', '/openapi.json')).body as { paths: Record<string, Record<string, unknown>> };
    documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)).sort();
    routes = servedRoutes(t.h.api.printRoutes({ commonPrefix: false }));
  });
  afterAll(async () => {
    await t?.close();
    await ci?.close();
    await idp?.close();
    await target?.stop();
  });

  it('documents every route it serves (a hidden route cannot slip past this matrix)', () => {
    expect(documented.length).toBeGreaterThan(30);
    expect(routes.filter((r) => !documented.includes(r) && !UNDOCUMENTED.includes(r)), 'served but not in /openapi.json').toEqual([]);
    expect(documented.filter((r) => !routes.includes(r)), 'documented but not served').toEqual([]);
  });

  it('has an entry for every route, and none for routes that are gone', () => {
    expect(routes.length).toBeGreaterThan(30);
    expect(routes.filter((r) => !(r in MATRIX)), 'routes without a matrix entry').toEqual([]);
    expect(Object.keys(MATRIX).filter((r) => !routes.includes(r)), 'matrix entries for routes that do not exist').toEqual([]);
  });

  it('authenticates a request whatever the form of its target (absolute-form reached the routes as if public)', async () => {
    const { request } = await import('node:http');
    const base = new URL(t.h.url);
    const raw = (path: string) => new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: base.hostname, port: base.port, method: 'GET', path }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    for (const path of [`http://${base.host}/api/v1/audit`, `http://${base.host}/api/v1/grants`, '/api/v1/audit']) {
      const r = await raw(path);
      expect(r.status, path).toBe(401);
      expect(r.body, path).toMatch(/missing bearer token/);
    }
  });

  it('every route answers each caller as the matrix says', async () => {
    const admin = () => t.token('admin');
    const f: Fixtures = {
      async pending() {
        const open = await t.call('GET', '/api/v1/requests?scope=all&status=pending&limit=200', { token: await admin() });
        for (const r of open.body.requests as Array<{ id: string }>) await t.call('POST', `/api/v1/requests/${r.id}/cancel`, { token: await admin() });
        const r = await t.call('POST', '/api/v1/requests', { token: await t.token('alice'), body: { resource: 'app-db', role: 'write', reason: 'matrix' } });
        expect(r.body.request?.status, JSON.stringify(r.body)).toBe('pending');
        return r.body.request.id as string;
      },
      async grant() {
        const live = await t.call('GET', '/api/v1/grants?scope=all&active=true&limit=200', { token: await admin() });
        for (const g of live.body.grants as Array<{ id: string }>) await t.call('POST', `/api/v1/grants/${g.id}/revoke`, { token: await admin(), body: {} });
        const r = await t.call('POST', '/api/v1/requests', { token: await t.token('alice'), body: { resource: 'app-db', role: 'read', duration: '5m', reason: 'matrix' } });
        expect(r.body.grant?.status, JSON.stringify(r.body)).toBe('active');
        return r.body.grant.id as string;
      },
      async review() {
        const r = await t.call('POST', '/api/v1/requests', { token: await t.token('olga'), body: { resource: 'app-db', role: 'owner', duration: '5m', reason: 'matrix incident', breakGlass: true } });
        const reviews = await t.call('GET', '/api/v1/reviews', { token: await admin() });
        const mine = (reviews.body.reviews as Array<{ id: string; requestId: string }>).find((x) => x.requestId === r.body.request.id);
        if (!mine) throw new Error(`no review for ${JSON.stringify(r.body)}`);
        return mine.id;
      },
    };
    const caller = async (role: Role): Promise<string | undefined> => {
      switch (role) {
        case 'anonymous': return undefined;
        case 'requester': return t.token('alice');
        case 'approver': return t.token('bob');
        case 'admin': return t.token('admin');
        case 'workload': return ci.sign({ aud: 'hallpass', sub: 'repo:acme/app', repository: 'acme/app', ref: 'refs/heads/main' });
      }
    };
    const mismatches: string[] = [];
    for (const route of routes) {
      const entry = MATRIX[route];
      if (!entry) continue;
      const [method, template] = route.split(' ') as [string, string];
      for (const role of ROLES) {
        const path = entry.path ? await entry.path(f) : template;
        const r = await t.call(method, `${path}${entry.query ? `?${entry.query}` : ''}`, { token: await caller(role), body: entry.body });
        const got = classify(r);
        if (got !== entry.expect[role]) mismatches.push(`${route} as ${role}: expected ${entry.expect[role]}, got ${got} (${r.status} ${JSON.stringify(r.body).slice(0, 160)})`);
        if (role === 'anonymous' && got === 'denied') expect(r.status, route).toBe(401);
      }
    }
    expect(mismatches).toEqual([]);
  });
});
