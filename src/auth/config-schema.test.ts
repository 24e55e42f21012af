import { describe, expect, it } from 'vitest';
import { ConfigError } from '../domain/errors.js';
import { resolveIdentityConfig } from './config-schema.js';

describe('identity config section', () => {
  const oidc = { issuer: 'https://login.example.com', clientId: 'hallpass', clientSecretEnv: 'OIDC_SECRET', groupMap: { Eng: 'engineers', Ops: ['sre', 'oncall'] } };

  it('reads the client secret from the named env var, never from the file', () => {
    const c = resolveIdentityConfig({ oidc }, { OIDC_SECRET: 's3cret' });
    expect(c?.oidc?.clientSecret).toBe('s3cret');
    expect(c?.oidc).not.toHaveProperty('clientSecretEnv');
    expect(() => resolveIdentityConfig({ oidc }, {})).toThrow(/OIDC_SECRET is not set/);
    expect(() => resolveIdentityConfig({ oidc: { ...oidc, clientSecret: 'inline' } }, { OIDC_SECRET: 'x' })).toThrow(ConfigError);
  });

  it('refuses http issuers unless allowed, unknown fields and bad workload names', () => {
    expect(() => resolveIdentityConfig({ oidc: { issuer: 'http://idp', clientId: 'x' } }, {})).toThrow(/https/);
    expect(resolveIdentityConfig({ oidc: { issuer: 'http://idp', clientId: 'x', allowInsecureHttp: true } }, {})?.oidc?.issuer).toBe('http://idp');
    expect(() => resolveIdentityConfig({ sso: {} }, {})).toThrow(ConfigError);
    expect(() => resolveIdentityConfig({ workloads: [{ name: 'Deploy Job', issuer: 'https://ci', claims: { repository: 'a/b' } }] }, {})).toThrow(/workloads/);
    expect(resolveIdentityConfig(undefined, {})).toBeUndefined();
    expect(() => resolveIdentityConfig({ workloadIssuers: [{ issuer: 'https://ci', jwksUri: 'http://ci/jwks', audience: 'hallpass' }] }, {})).toThrow(/https/);
    expect(resolveIdentityConfig({ workloadIssuers: [{ issuer: 'https://ci', audience: 'hallpass' }] }, {})?.workloadIssuers).toHaveLength(1);
  });
});
