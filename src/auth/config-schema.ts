import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ConfigError } from '../domain/errors.js';
import type { IdentityConfig } from './config.js';

const strict = { additionalProperties: false } as const;
const Str = Type.String({ minLength: 1, maxLength: 2000 });
const StrOrList = Type.Union([Str, Type.Array(Str, { minItems: 1 })]);
const Seconds = Type.Integer({ minimum: 1, maximum: 365 * 86400 });

/** The `identity:` section of the server config file (YAML). See docs/identity.md. */
export const IdentitySchema = Type.Object({
  oidc: Type.Optional(Type.Object({
    issuer: Str,
    clientId: Str,
    clientSecretEnv: Type.Optional(Type.String({ pattern: '^[A-Z_][A-Z0-9_]*$', description: 'env var holding the client secret (never put it in the file)' })),
    scopes: Type.Optional(Type.Array(Str)),
    groupsClaim: Type.Optional(Str),
    groupMap: Type.Optional(Type.Record(Type.String(), StrOrList)),
    adminGroups: Type.Optional(Type.Array(Str)),
    allowedEmailDomains: Type.Optional(Type.Array(Str)),
    usernameClaim: Type.Optional(Str),
    allowInsecureHttp: Type.Optional(Type.Boolean()),
  }, strict)),
  workloadIssuers: Type.Optional(Type.Array(Type.Object({
    issuer: Str, jwksUri: Type.Optional(Str), audience: StrOrList, algorithms: Type.Optional(Type.Array(Str)),
    allowInsecureHttp: Type.Optional(Type.Boolean()),
  }, strict))),
  workloads: Type.Optional(Type.Array(Type.Object({
    name: Type.String({ pattern: '^[a-z][a-z0-9_-]{0,62}$' }), issuer: Str, claims: Type.Record(Type.String(), StrOrList),
  }, strict))),
  mfa: Type.Optional(Type.Object({ issuerLabel: Type.Optional(Str), recoveryCodes: Type.Optional(Type.Integer({ minimum: 4, maximum: 20 })) }, strict)),
  sessions: Type.Optional(Type.Object({
    idleSeconds: Type.Optional(Seconds), absoluteSeconds: Type.Optional(Seconds),
    accessTokenSeconds: Type.Optional(Seconds), refreshTokenSeconds: Type.Optional(Seconds),
  }, strict)),
}, strict);
export type IdentityFile = Static<typeof IdentitySchema>;

/** Validates the file section and resolves secrets from the environment. */
export function resolveIdentityConfig(raw: unknown, env: Readonly<Record<string, string | undefined>>): IdentityConfig | undefined {
  if (raw === undefined || raw === null) return undefined;
  const errors = [...Value.Errors(IdentitySchema, raw)];
  if (errors.length > 0) throw new ConfigError(`identity: ${errors.slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`).join('; ')}`);
  const file = raw as IdentityFile;
  for (const i of file.workloadIssuers ?? []) {
    // Keys fetched over plain HTTP could be swapped in transit: then anyone could mint pipeline tokens.
    if (!i.allowInsecureHttp && [i.issuer, i.jwksUri ?? 'https://'].some((u) => !u.startsWith('https://'))) {
      throw new ConfigError(`identity.workloadIssuers: ${i.issuer}: issuer and jwksUri must be https:// (allowInsecureHttp is for local testing only)`);
    }
  }
  if (!file.oidc) return file;
  const { clientSecretEnv, ...oidc } = file.oidc;
  let clientSecret: string | undefined;
  if (clientSecretEnv) {
    clientSecret = env[clientSecretEnv];
    if (!clientSecret) throw new ConfigError(`identity.oidc.clientSecretEnv: environment variable ${clientSecretEnv} is not set`);
  }
  if (!oidc.allowInsecureHttp && !oidc.issuer.startsWith('https://')) throw new ConfigError('identity.oidc.issuer must be https:// (allowInsecureHttp is for local testing only)');
  return { ...file, oidc: { ...oidc, clientSecret } };
}
