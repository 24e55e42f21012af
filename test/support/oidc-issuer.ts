import { createServer, type Server } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';

/**
 * A real OIDC token issuer for workload tests (like a CI provider's): serves its discovery
 * document and JWKS over HTTP and signs RS256 JWTs. Keys can be rotated.
 */
export interface LocalIssuer {
  readonly issuer: string;
  /** `previous`: the key (and kid) in use before the last rotate(), no longer published. */
  sign(claims: Record<string, unknown>, opts?: { expiresIn?: number; issuedAt?: number; key?: 'current' | 'previous' | 'stranger' }): Promise<string>;
  /** A new current key (with a new kid); the JWKS serves only the new one. */
  rotate(): Promise<void>;
  /** The current public key as published (what anyone can read from the JWKS). */
  readonly publicJwk: JWK;
  readonly jwksFetches: number;
  close(): Promise<void>;
}

interface Key {
  kid: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

async function newKey(n: number): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = `k${n}`;
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

export async function startLocalIssuer(): Promise<LocalIssuer> {
  let n = 1;
  let current = await newKey(n);
  let previous: Key | undefined;
  // Signs with a key the issuer never published, under the current kid: a forged token.
  const stranger = await newKey(99);
  let fetches = 0;
  let issuer = '';
  const server: Server = createServer((req, res) => {
    if (req.url === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks`, id_token_signing_alg_values_supported: ['RS256'] }));
    } else if (req.url === '/jwks') {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [current.jwk] }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  issuer = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  return {
    issuer,
    get jwksFetches() {
      return fetches;
    },
    get publicJwk() {
      return current.jwk;
    },
    async sign(claims, opts = {}) {
      if (opts.key === 'previous' && !previous) throw new Error('no previous key: rotate() first');
      const signer = opts.key === 'previous' ? previous! : current;
      const key = opts.key === 'stranger' ? stranger.privateKey : signer.privateKey;
      const iat = opts.issuedAt ?? Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: issuer, ...claims })
        .setProtectedHeader({ alg: 'RS256', kid: signer.kid, typ: 'JWT' })
        .setIssuedAt(iat)
        .setExpirationTime(iat + (opts.expiresIn ?? 300))
        .sign(key);
    },
    async rotate() {
      previous = current;
      current = await newKey(++n);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** An unsigned token (`alg: none`) with the given claims. */
export function unsignedJwt(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
}
