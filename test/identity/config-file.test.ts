import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveServerConfig } from '../../src/server/file-config.js';

describe('identity section of the server config file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hp-idcfg-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (yaml: string) => {
    const path = join(dir, 'hallpass.yaml');
    writeFileSync(path, yaml);
    return path;
  };

  it('reaches the server config, with the client secret from the environment', () => {
    const path = write(`
identity:
  oidc:
    issuer: https://login.example.com
    clientId: hallpass
    clientSecretEnv: HP_OIDC_SECRET
    groupMap: { Engineering: engineers }
  workloadIssuers:
    - { issuer: https://token.actions.githubusercontent.com, audience: hallpass }
  workloads:
    - name: orders-deploy
      issuer: https://token.actions.githubusercontent.com
      claims: { repository: acme/orders, ref: refs/heads/main }
  sessions: { idleSeconds: 600 }
`);
    const c = resolveServerConfig({ config: path }, { HP_OIDC_SECRET: 'from-env' });
    expect(c.identity?.oidc).toMatchObject({ issuer: 'https://login.example.com', clientId: 'hallpass', clientSecret: 'from-env', groupMap: { Engineering: 'engineers' } });
    expect(c.identity?.workloads?.[0]?.name).toBe('orders-deploy');
    expect(c.identity?.sessions?.idleSeconds).toBe(600);
  });

  it('refuses a misspelt field and a missing secret with a message naming it', () => {
    expect(() => resolveServerConfig({ config: write('identity:\n  oidc: { issuer: https://x, clientId: y, clientSecret: inline }\n') }, {})).toThrow(/clientSecret/);
    expect(() => resolveServerConfig({ config: write('identity:\n  oidc: { issuer: https://x, clientId: y, clientSecretEnv: NOPE }\n') }, {})).toThrow(/NOPE is not set/);
  });

  it('takes trustedProxies as addresses or CIDR ranges and refuses anything else, naming it', () => {
    const c = resolveServerConfig({ config: write('trustedProxies: [10.0.0.5, 10.1.0.0/16, "fd00::/8", "::1"]\n') }, {});
    expect(c.trustedProxies).toEqual(['10.0.0.5', '10.1.0.0/16', 'fd00::/8', '::1']);
    for (const bad of ['proxy.example.com', '10.0.0.0/33', '10.0.0.1/8/8', '*', 'fd00::/129']) {
      expect(() => resolveServerConfig({ config: write(`trustedProxies: [${JSON.stringify(bad)}]\n`) }, {}), bad).toThrow(/trustedProxies: .* is not an IP address or CIDR range/);
    }
  });
});
