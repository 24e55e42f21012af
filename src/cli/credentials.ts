import { Option } from 'commander';
import { CliError } from './io.js';
import type { HallpassClient } from './http.js';
import { json } from './format.js';
import type { Credentials } from './views.js';

export const CREDENTIAL_FORMATS = ['env', 'json', 'dsn'] as const;
export type CredentialFormat = (typeof CREDENTIAL_FORMATS)[number];

export const formatOption = () =>
  new Option('--format <format>', 'how to print the credentials').choices(CREDENTIAL_FORMATS).default('env');

export function fetchCredentials(client: HallpassClient, grantId: string, via: 'gateway' | 'direct'): Promise<Credentials> {
  return client.get<Credentials>(`/api/v1/grants/${grantId}/credentials`, { via });
}

/**
 * Through the gateway when the server runs one, else straight to the target. The API does not
 * say whether it has a gateway, so ask for one and fall back on its "not enabled" refusal.
 */
export async function fetchPreferGateway(client: HallpassClient, grantId: string): Promise<Credentials> {
  try {
    return await fetchCredentials(client, grantId, 'gateway');
  } catch (err) {
    if (err instanceof CliError && err.code === 'bad_request' && /gateway/i.test(err.message)) {
      return fetchCredentials(client, grantId, 'direct');
    }
    throw err;
  }
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
