import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { Option } from 'commander';
import { clientConfigPath, writePrivateFile } from './config.js';
import { CliError } from './io.js';
import type { HallpassClient } from './http.js';
import { json } from './format.js';
import type { Credentials } from './views.js';

export const CREDENTIAL_FORMATS = ['env', 'json', 'dsn'] as const;
export type CredentialFormat = (typeof CREDENTIAL_FORMATS)[number];

export const formatOption = () =>
  new Option('--format <format>', 'how to print the credentials').choices(CREDENTIAL_FORMATS).default('env');

type Env = Readonly<Record<string, string | undefined>>;

/** A grant's credentials, ready to use here: the gateway's CA saved locally (see withGatewayCa). */
export async function fetchCredentials(client: HallpassClient, grantId: string, via: 'gateway' | 'direct', env: Env): Promise<Credentials> {
  return withGatewayCa(await client.get<Credentials>(`/api/v1/grants/${grantId}/credentials`, { via }), env);
}

/**
 * Through the gateway when the server runs one, else straight to the target. The API does not
 * say whether it has a gateway, so ask for one and fall back on its "not enabled" refusal.
 */
export async function fetchPreferGateway(client: HallpassClient, grantId: string, env: Env): Promise<Credentials> {
  try {
    return await fetchCredentials(client, grantId, 'gateway', env);
  } catch (err) {
    if (err instanceof CliError && err.code === 'bad_request' && /gateway/i.test(err.message)) {
      return fetchCredentials(client, grantId, 'direct', env);
    }
    throw err;
  }
}

/**
 * The gateway is verified (sslmode=verify-full), which needs its CA in a file: the CA the API
 * returned is written to the hallpass config directory (0600, named by its hash, so servers with
 * different CAs do not overwrite each other) and named in the DSN and as PGSSLROOTCERT.
 */
export function withGatewayCa(c: Credentials, env: Env): Credentials {
  if (c.caPem === undefined) return c;
  const file = join(dirname(clientConfigPath(env)), `gateway-ca-${createHash('sha256').update(c.caPem).digest('hex').slice(0, 16)}.pem`);
  writePrivateFile(file, c.caPem);
  return {
    ...c,
    dsn: `${c.dsn}${c.dsn.includes('?') ? '&' : '?'}sslrootcert=${encodeURIComponent(file)}`,
    env: { ...c.env, PGSSLROOTCERT: file },
  };
}

/** POSIX single-quoting, so `eval "$(hallpass creds ...)"` is safe whatever the password holds. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export function renderCredentials(c: Credentials, format: CredentialFormat): string {
  switch (format) {
    case 'json':
      return json(c);
    case 'dsn':
      return `${c.dsn}\n`;
    case 'env':
      return Object.entries(c.env)
        .filter(([k]) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
        .map(([k, v]) => `export ${k}=${shellQuote(v)}\n`)
        .join('');
  }
}
