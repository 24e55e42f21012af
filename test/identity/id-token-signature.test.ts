import { exportJWK, generateKeyPair, SignJWT, base64url, type CryptoKey } from 'jose';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIdentityHallpass, type IdentityHallpass } from '../support/oidc-hallpass.js';
import { freePort, type PgTarget } from '../support/pg-target.js';

/**
 * The ID token's signature is checked against the issuer's keys. openid-client checks its claims
 * but, over TLS to the token endpoint, not its signature: a review (2026-12-02) signed in with a
 * token signed by another key, and with a junk signature, through a token endpoint it answered
 * for. This provider is a small one of the test's own whose token endpoint returns the ID token
 * the test builds (the real provider of the other SSO tests would only sign correctly).
 */
const policy = `
groups: [{ name: engineers }]
resources:
  - name: app-db
    kind: postgres
    connection: { host: 127.0.0.1, port: 1, database: x, admin: { user: x, password: { env: TEST_TARGET_ADMIN_PASSWORD } } }
    roles:
      read: { privileges: { memberOf: [pg_read_all_data] } }
rules: []
`;

describe('SSO: the ID token must be signed by the provider', () => {
  let t: IdentityHallpass;
  let srv: Server;
  let issuer = '';
  let nextIdToken: () => Promise<string> = async () => '';
  let nonce = '';
  let key: { publicKey: CryptoKey; privateKey: CryptoKey };
  let otherKey: { publicKey: CryptoKey; privateKey: CryptoKey };

  beforeAll(async () => {
    const port = await freePort();
    issuer = `http://127.0.0.1:${port}`;
    key = await generateKeyPair('RS256', { extractable: true });
    otherKey = await generateKeyPair('RS256', { extractable: true });
    const jwk = { ...(await exportJWK(key.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    srv = createServer((req, res) => {
      void (async () => {
        const u = new URL(req.url ?? '/', issuer);
        res.setHeader('content-type', 'application/json');
        if (u.pathname === '/.well-known/openid-configuration') {
          res.end(JSON.stringify({
            issuer, authorization_endpoint: `${issuer}/auth`, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks`,
            response_types_supported: ['code'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'],
          }));
        } else if (u.pathname === '/jwks') {
          res.end(JSON.stringify({ keys: [jwk] }));
        } else if (u.pathname === '/token') {
          for await (const _ of req) { /* the form body is not needed */ }
          res.end(JSON.stringify({ access_token: 'at', token_type: 'Bearer', expires_in: 60, id_token: await nextIdToken() }));
        } else {
          res.statusCode = 404;
          res.end('{}');
        }
      })();
    });
    await new Promise<void>((r) => srv.listen(port, '127.0.0.1', () => r()));
    const target = { host: '127.0.0.1', port: 1, adminPassword: 'x' } as unknown as PgTarget;
    t = await startIdentityHallpass({ target, policy, identity: { oidc: { issuer, clientId: 'hp', clientSecret: 'client-secret-0123456789abcdef', allowInsecureHttp: true } } });
  });
  afterAll(async () => {
    await t?.close();
    srv?.close();
  });

  const now = () => Math.floor(Date.now() / 1000);
  const claims = (sub: string) => ({ iss: issuer, aud: 'hp', sub, nonce, email: `${sub}@example.com`, email_verified: true, iat: now(), exp: now() + 300 });
  const signed = (sub: string, k: CryptoKey) => new SignJWT(claims(sub)).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(k);

  /** One browser login whose token endpoint answers with `idToken()`; the callback's status. */
  async function login(idToken: () => Promise<string>): Promise<number> {
    const r = await t.call('GET', '/api/v1/auth/oidc/start');
    const binding = /hallpass_oidc=[^;]+/.exec(r.headers.get('set-cookie') ?? '')?.[0] ?? '';
    const loc = new URL(r.headers.get('location') ?? '');
    nonce = loc.searchParams.get('nonce') ?? '';
    nextIdToken = idToken;
    const cb = await t.call('GET', `/api/v1/auth/oidc/callback?code=abc&state=${loc.searchParams.get('state')}`, { headers: { cookie: binding } });
    return cb.status;
  }

  it('signs in with a token the provider signed, and refuses one signed by another key or with a junk signature', async () => {
    expect(await login(() => signed('valid', key.privateKey))).toBe(302);
    expect(await login(() => signed('forged', otherKey.privateKey))).toBe(401);
    expect(await login(async () => `${base64url.encode(JSON.stringify({ alg: 'RS256', kid: 'k1' }))}.${base64url.encode(JSON.stringify(claims('junk')))}.AAAA`)).toBe(401);
    const names = (await t.h.deps.store.db.selectFrom('users').select('name').execute()).map((u) => u.name);
    expect(names).toContain('valid@example.com');
    expect(names).not.toContain('forged@example.com');
    expect(names).not.toContain('junk@example.com');
  });
});
