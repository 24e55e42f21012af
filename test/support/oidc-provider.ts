import { createServer, type Server } from 'node:http';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

export interface TestAccount {
  email: string;
  groups: string[];
  emailVerified?: boolean;
}

/**
 * A real, certified OpenID provider (panva's oidc-provider) on a local port, with its development
 * login and consent pages (any password is accepted; the login name picks the account).
 */
export interface LocalOidcProvider {
  readonly issuer: string;
  readonly accounts: Map<string, TestAccount>;
  close(): Promise<void>;
}

export const TEST_CLIENT = { id: 'hallpass-test', secret: 'hallpass-test-client-secret-0123456789' };

export async function startOidcProvider(o: { port: number; redirectUri: string; idTokenTtlSeconds?: number }): Promise<LocalOidcProvider> {
  const issuer = `http://127.0.0.1:${o.port}`;
  const accounts = new Map<string, TestAccount>();
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const provider = new Provider(issuer, {
    clients: [{
      client_id: TEST_CLIENT.id, client_secret: TEST_CLIENT.secret, redirect_uris: [o.redirectUri],
      grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'client_secret_post',
    }],
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'test-rs256', alg: 'RS256', use: 'sig' }] },
    cookies: { keys: ['test-cookie-key-0123456789abcdef'] },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
    scopes: ['openid', 'email', 'groups', 'offline_access'],
    ttl: { IdToken: o.idTokenTtlSeconds ?? 60, AccessToken: 60, AuthorizationCode: 60, Interaction: 600, Session: 600, Grant: 600 },
    async findAccount(_ctx: unknown, id: string) {
      const a = accounts.get(id);
      if (!a) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: a.email, email_verified: a.emailVerified ?? true, groups: a.groups };
        },
      };
    },
  });
  const server: Server = createServer(provider.callback());
  await new Promise<void>((resolve) => server.listen(o.port, '127.0.0.1', resolve));
  return { issuer, accounts, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** A minimal cookie jar keyed by name (the provider's cookies are all for one host). */
class Jar {
  readonly #c = new Map<string, { value: string; path: string }>();
  take(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const path = attrs.map((a) => a.trim()).find((a) => /^path=/i.test(a))?.slice(5) ?? '/';
      const gone = attrs.some((a) => /^max-age=0$/i.test(a.trim()) || /^expires=Thu, 01 Jan 1970/i.test(a.trim())) || value === '';
      if (gone) this.#c.delete(`${name}|${path}`);
      else this.#c.set(`${name}|${path}`, { value, path });
    }
  }
  header(url: URL): string {
    return [...this.#c.entries()].filter(([, v]) => url.pathname.startsWith(v.path)).map(([k, v]) => `${k.split('|')[0]}=${v.value}`).join('; ');
  }
}

/**
 * Plays the browser at the provider: follows its redirects, submits its login form with
 * `login`, consents, and returns the URL it finally sends the browser to outside the provider
 * (the relying party's redirect URI with code/state/iss).
 */
export async function signInAtProvider(authorizationUrl: string, login: string): Promise<URL> {
  const jar = new Jar();
  let url = new URL(authorizationUrl);
  const origin = url.origin;
  let form: URLSearchParams | undefined;
  for (let hops = 0; hops < 20; hops++) {
    const res = await fetch(url, {
      method: form ? 'POST' : 'GET', redirect: 'manual',
      headers: { cookie: jar.header(url), ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      body: form?.toString(),
    });
    jar.take(res);
    form = undefined;
    const location = res.headers.get('location');
    if (location) {
      url = new URL(location, url);
      if (url.origin !== origin) return url;
      await res.arrayBuffer();
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) throw new Error(`provider answered ${res.status}: ${html.slice(0, 300)}`);
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    const prompt = /name="prompt" value="([a-z]+)"/.exec(html)?.[1];
    if (!action || !prompt) throw new Error(`unexpected provider page: ${html.slice(0, 300)}`);
    url = new URL(action.replace(/&amp;/g, '&'), url);
    form = new URLSearchParams(prompt === 'login' ? { prompt, login, password: 'any' } : { prompt });
  }
  throw new Error('too many redirects at the provider');
}
