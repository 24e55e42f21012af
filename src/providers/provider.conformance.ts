import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MANAGED_PREFIX, ProviderError, type ConnectionInfo, type Provider } from './provider.js';

export interface ConformanceTarget {
  readonly provider: Provider;
  /** Privileges (in the provider's privilegesSchema) of a read role and, if any, a write role. */
  readonly privileges: { read: unknown; write?: unknown };
  /** Tries a real login with a standard client; false when the target refuses it. */
  canLogin(info: ConnectionInfo): Promise<boolean>;
  teardown(): Promise<void>;
}

const principal = () => `${MANAGED_PREFIX}conf_${randomBytes(6).toString('hex')}`;
const secret = () => randomBytes(18).toString('base64url');
const inAnHour = () => new Date(Date.now() + 3_600_000);

/**
 * The behaviour every Provider promises, run against the real target by each provider's tests:
 * `runProviderConformance('postgres', async () => ({ provider, privileges, canLogin, teardown }))`.
 */
export function runProviderConformance(name: string, setup: () => Promise<ConformanceTarget>): void {
  describe(`Provider conformance: ${name}`, () => {
    let t: ConformanceTarget;
    beforeAll(async () => {
      t = await setup();
    });
    afterAll(async () => {
      await t.provider.close();
      await t.teardown();
    });

    it('check() reports the target reachable', async () => {
      expect(await t.provider.check()).toMatchObject({ ok: true });
    });

    it('provision -> login works -> listed -> revoke -> login fails, not listed -> revoke again is a no-op', async () => {
      const p = principal();
      const s = secret();
      await t.provider.provision({ principal: p, secret: s, privileges: t.privileges.read, validUntil: inAnHour() });
      const info = t.provider.connectionInfo(p, s);
      expect(info.user).toBe(p);
      expect(info.password).toBe(s);
      expect(info.kind).toBe(t.provider.kind);
      expect(await t.canLogin(info)).toBe(true);
      expect(await t.provider.listManagedPrincipals()).toContain(p);

      await t.provider.revoke([p]);
      expect(await t.canLogin(info)).toBe(false);
      expect(await t.provider.listManagedPrincipals()).not.toContain(p);
      await expect(t.provider.revoke([p])).resolves.toBeUndefined();
    });

    it('provision is idempotent and converges to the latest spec (a new secret replaces the old)', async () => {
      const p = principal();
      const first = secret();
      const spec = { principal: p, secret: first, privileges: t.privileges.read, validUntil: inAnHour() };
      await t.provider.provision(spec);
      await t.provider.provision(spec);
      expect(await t.canLogin(t.provider.connectionInfo(p, first))).toBe(true);
      const second = secret();
      await t.provider.provision({ ...spec, secret: second });
      expect(await t.canLogin(t.provider.connectionInfo(p, second))).toBe(true);
      expect(await t.canLogin(t.provider.connectionInfo(p, first))).toBe(false);
      expect((await t.provider.listManagedPrincipals()).filter((x) => x === p)).toHaveLength(1);
      await t.provider.revoke([p]);
    });

    it('a wrong secret is refused', async () => {
      const p = principal();
      await t.provider.provision({ principal: p, secret: secret(), privileges: t.privileges.read, validUntil: inAnHour() });
      expect(await t.canLogin(t.provider.connectionInfo(p, secret()))).toBe(false);
      await t.provider.revoke([p]);
    });

    it('extend keeps a live principal usable', async () => {
      const p = principal();
      const s = secret();
      await t.provider.provision({ principal: p, secret: s, privileges: t.privileges.read, validUntil: inAnHour() });
      await t.provider.extend(p, new Date(Date.now() + 7_200_000));
      expect(await t.canLogin(t.provider.connectionInfo(p, s))).toBe(true);
      await t.provider.revoke([p]);
    });

    it('write privileges provision a working principal', async (ctx) => {
      if (t.privileges.write === undefined) ctx.skip();
      const p = principal();
      const s = secret();
      await t.provider.provision({ principal: p, secret: s, privileges: t.privileges.write, validUntil: inAnHour() });
      expect(await t.canLogin(t.provider.connectionInfo(p, s))).toBe(true);
      await t.provider.revoke([p]);
      expect(await t.canLogin(t.provider.connectionInfo(p, s))).toBe(false);
    });

    it('revokes a batch (with duplicates and never-provisioned names) in one call', async () => {
      const live = Array.from({ length: 5 }, principal);
      const s = secret();
      for (const p of live) await t.provider.provision({ principal: p, secret: s, privileges: t.privileges.read, validUntil: inAnHour() });
      await t.provider.revoke([...live, live[0] ?? '', principal()].filter(Boolean));
      const left = await t.provider.listManagedPrincipals();
      for (const p of live) {
        expect(left).not.toContain(p);
        expect(await t.canLogin(t.provider.connectionInfo(p, s))).toBe(false);
      }
      await expect(t.provider.revoke([])).resolves.toBeUndefined();
    });

    it('refuses to touch a principal without the managed prefix (never drops an operator account)', async () => {
      const err = await t.provider.revoke(['admin']).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProviderError);
      expect((err as ProviderError).retryable).toBe(false);
      const err2 = await t.provider
        .provision({ principal: 'root', secret: secret(), privileges: t.privileges.read, validUntil: inAnHour() })
        .catch((e: unknown) => e);
      expect(err2).toBeInstanceOf(ProviderError);
    });
  });
}
