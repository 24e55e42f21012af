import { createHash, randomBytes } from 'node:crypto';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as client from 'openid-client';
import type { AccessDeps } from '../access/context.js';
import { inTx } from '../access/context.js';
import { getUserByName, upsertUser, type UserRow } from '../store/users.js';
import type { OidcConfig } from './config.js';
import { cliChallengeOf } from './login-tokens.js';
import { identityFromClaims, SsoRefused } from './oidc-claims.js';

/** How long the IdP round trip may take. */
const LOGIN_TTL_MS = 10 * 60_000;
const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

export interface BeginBinding {
  /** CLI: loopback URL (http://127.0.0.1:PORT/...) to send the browser back to; omitted: show a code. */
  readonly redirect?: string | undefined;
  /**
   * base64url(sha256(secret)) of a secret only the initiator holds: the CLI's verifier, or the
   * web browser's binding cookie (so a callback URL sent to someone else logs nobody in).
   */
  readonly challenge: string;
}

export interface FinishedLogin {
  readonly user: UserRow;
  readonly mode: 'web' | 'cli';
  readonly cliRedirect: string | null;
  readonly cliChallenge: string | null;
}

/**
 * OpenID Connect login (authorization code + PKCE, state and nonce) against one provider.
 * State, nonce and the PKCE verifier live in `oidc_logins` (the verifier sealed), so any
 * instance can finish a login another began, and each is consumed once.
 */
export class OidcLogin {
  #server: Promise<client.ServerMetadata> | undefined;

  constructor(private readonly deps: AccessDeps, readonly config: OidcConfig, private readonly redirectUri: () => string) {}

  async begin(mode: 'web' | 'cli', cli: BeginBinding): Promise<URL> {
    const config = await this.#client();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const verifier = client.randomPKCECodeVerifier();
    const now = this.deps.clock.now().getTime();
    const stateHash = sha256(state);
    await this.deps.store.db.insertInto('oidc_logins').values({
      state_hash: stateHash, nonce, verifier_enc: this.deps.sealer.seal(verifier, `oidc:${stateHash}`), mode,
      cli_redirect: cli.redirect ?? null, cli_challenge: cli.challenge, created_at: now, expires_at: now + LOGIN_TTL_MS, consumed_at: null,
    }).execute();
    await this.deps.store.db.deleteFrom('oidc_logins').where('expires_at', '<', now - LOGIN_TTL_MS).execute();
    return client.buildAuthorizationUrl(config, {
      redirect_uri: this.redirectUri(),
      scope: (this.config.scopes ?? ['openid', 'email', 'profile']).join(' '),
      state, nonce,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
  }

  /**
   * Finishes a login from the provider's redirect: the state must name a live login of ours, the
   * response must come from our issuer, the code is exchanged with our PKCE verifier, and the ID
   * token must be signed by the issuer, for us, unexpired, with our nonce. Then the user is created
   * or updated (group changes at the IdP apply now, and are audited). Throws SsoRefused.
   */
  async finish(callback: URL, clientAddress: string, browserBinding: string | undefined): Promise<FinishedLogin> {
    const now = this.deps.clock.now().getTime();
    const state = callback.searchParams.get('state');
    if (!state) throw new SsoRefused('the provider response has no state');
    const stateHash = sha256(state);
    // Consume first (race-safe: one caller wins), so a replayed callback finds nothing.
    const login = await this.deps.store.db.updateTable('oidc_logins').set({ consumed_at: now })
      .where('state_hash', '=', stateHash).where('consumed_at', 'is', null).where('expires_at', '>', now)
      .returningAll().executeTakeFirst();
    if (!login) throw new SsoRefused('unknown, expired or already used login state');
    if (login.mode === 'web' && (browserBinding === undefined || cliChallengeOf(browserBinding) !== login.cli_challenge)) {
      throw new SsoRefused('this browser did not start this login (login CSRF): start again from hallpass');
    }
    const idpError = callback.searchParams.get('error');
    if (idpError) throw new SsoRefused(`the identity provider refused: ${idpError.slice(0, 100)}`);
    const config = await this.#client();
    let claims: Record<string, unknown>;
    try {
      const tokens = await client.authorizationCodeGrant(config, callback, {
        pkceCodeVerifier: this.deps.sealer.open(login.verifier_enc, `oidc:${stateHash}`),
        expectedState: state,
        expectedNonce: login.nonce,
        idTokenExpected: true,
      }, { redirect_uri: this.redirectUri() });
      const idClaims = tokens.claims();
      if (!idClaims || tokens.id_token === undefined) throw new SsoRefused('the provider sent no ID token');
      // openid-client checks the ID token's claims but, over TLS to the token endpoint, not its
      // signature (OIDC Core 3.1.3.7 allows that): whoever could answer for the token endpoint (a
      // proxy, allowInsecureHttp) signed anyone in with any signature (review 2026-12-02). The
      // signature is checked against the issuer's published keys.
      await this.#verifySignature(config, tokens.id_token);
      // Many providers put email and groups only in the userinfo response (for the same subject).
      const info = config.serverMetadata().userinfo_endpoint
        ? await client.fetchUserInfo(config, tokens.access_token, idClaims.sub)
        : {};
      claims = { ...info, ...idClaims };
    } catch (e) {
      throw new SsoRefused(`the sign-in response was refused: ${describe(e)}`);
    }
    const id = identityFromClaims(this.config, claims);
    if (typeof claims.iss !== 'string' || typeof claims.sub !== 'string') throw new SsoRefused('the ID token has no issuer or subject');
    const subject = { issuer: claims.iss, subject: claims.sub };
    const user = await inTx(this.deps, async (tx, audit) => {
      // An account already bound to this provider identity is this person's, whatever its name: one
      // named before names were canonical (an IDN domain in its xn-- spelling, say) must neither be
      // left behind for a new account, nor let a disabled person in under the new name.
      const bound = await tx.selectFrom('users').selectAll()
        .where('sso_issuer', '=', subject.issuer).where('sso_subject', '=', subject.subject).executeTakeFirst();
      const name = bound?.name ?? id.name;
      const existing = bound ?? await getUserByName(tx, name);
      if (existing && existing.source !== 'oidc') throw new SsoRefused(`user ${name} is a local ${existing.kind}, not an SSO user`);
      if (existing && existing.disabled !== 0) throw new SsoRefused(`user ${name} is disabled`);
      if (existing && !sameSubject(existing, subject)) {
        throw new SsoRefused(`user ${name} belongs to another account at the identity provider (a different subject with the same ${this.config.usernameClaim ?? 'email'}): ask an admin`);
      }
      const before = existing ? (JSON.parse(existing.groups) as string[]) : [];
      const r = await upsertUser(tx, {
        name, kind: 'user', email: id.email, groups: id.groups, attributes: id.attributes, isAdmin: id.isAdmin, source: 'oidc',
      }, now);
      if (r.created) audit({ type: 'user.created', actor: 'system', at: now, data: { user: name, source: 'oidc', groups: id.groups, admin: id.isAdmin } });
      else if (r.changes.length > 0) {
        audit({ type: 'user.updated', actor: 'system', at: now, data: {
          user: name, source: 'oidc', changes: r.changes, groupsAdded: id.groups.filter((g) => !before.includes(g)),
          groupsRemoved: before.filter((g) => !id.groups.includes(g)), admin: id.isAdmin,
        } });
      }
      // First SSO login (or the first since this was recorded): bind the account to this subject.
      const row = r.row.sso_subject === null
        ? await tx.updateTable('users').set({ sso_issuer: subject.issuer, sso_subject: subject.subject })
          .where('id', '=', r.row.id).returningAll().executeTakeFirstOrThrow()
        : r.row;
      audit({ type: 'auth.login', actor: name, at: now, data: { method: 'oidc', mode: login.mode, clientAddress } });
      return row;
    });
    return { user, mode: login.mode, cliRedirect: login.cli_redirect, cliChallenge: login.cli_challenge };
  }

  #jwks: ReturnType<typeof createRemoteJWKSet> | undefined;

  /** The ID token's signature, by the issuer's keys (its jwks_uri), for this client, asymmetric only. */
  async #verifySignature(config: client.Configuration, idToken: string): Promise<void> {
    const meta = config.serverMetadata();
    if (!meta.jwks_uri) throw new SsoRefused('the provider publishes no signing keys (jwks_uri)');
    this.#jwks ??= createRemoteJWKSet(new URL(meta.jwks_uri), { cooldownDuration: 30_000, timeoutDuration: 5000 });
    try {
      await jwtVerify(idToken, this.#jwks, {
        issuer: meta.issuer, audience: this.config.clientId, currentDate: this.deps.clock.now(), clockTolerance: 30,
        algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'],
      });
    } catch (e) {
      throw new SsoRefused(`the ID token's signature does not verify with the provider's keys: ${e instanceof Error ? e.message.slice(0, 200) : 'error'}`);
    }
  }

  /** A Configuration per use: its clock follows the injected clock (tests move it). */
  async #client(): Promise<client.Configuration> {
    this.#server ??= this.#discover().catch((e: unknown) => {
      this.#server = undefined;
      throw e;
    });
    const server = await this.#server;
    const skew = Math.round((this.deps.clock.now().getTime() - Date.now()) / 1000);
    const auth = this.config.clientSecret ? client.ClientSecretPost(this.config.clientSecret) : client.None();
    const config = new client.Configuration(server, this.config.clientId, { [client.clockSkew]: skew }, auth);
    if (this.config.allowInsecureHttp) client.allowInsecureRequests(config);
    return config;
  }

  async #discover(): Promise<client.ServerMetadata> {
    const c = await client.discovery(new URL(this.config.issuer), this.config.clientId, undefined, undefined,
      this.config.allowInsecureHttp ? { execute: [client.allowInsecureRequests] } : undefined);
    return c.serverMetadata();
  }
}

/**
 * Whether an SSO account is this provider identity. Accounts from before the binding was stored
 * are checked against the iss/sub their last login recorded in their attributes.
 */
function sameSubject(row: UserRow, id: { issuer: string; subject: string }): boolean {
  if (row.sso_subject !== null) return row.sso_issuer === id.issuer && row.sso_subject === id.subject;
  // identityFromClaims keeps the first 256 characters of each.
  const attrs = JSON.parse(row.attributes) as Record<string, string | undefined>;
  return (attrs.iss === undefined || attrs.iss === id.issuer.slice(0, 256)) && (attrs.sub === undefined || attrs.sub === id.subject.slice(0, 256));
}

/** openid-client wraps the precise reason (e.g. 'unexpected JWT "nonce" claim value') in `cause`. */
function describe(e: unknown): string {
  const outer = e as { message?: unknown; error?: unknown; cause?: { message?: unknown } };
  const err = typeof outer.cause?.message === 'string' ? { ...outer, message: outer.cause.message } : outer;
  const msg = typeof err.message === 'string' ? err.message : 'unknown error';
  return (typeof err.error === 'string' ? `${err.error}: ${msg}` : msg).slice(0, 300);
}

/** A random one-time code handed to a CLI (64 hex chars). */
export function newCliCode(): string {
  return randomBytes(32).toString('hex');
}
