import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../../test/support/services.js';
import { openStore, type StoreConnection } from '../store/db.js';
import { LAST_USED_RESOLUTION_MS, authenticateToken, authenticateTokenWithId, hashToken, issueToken, revokeAllForUser, revokeToken } from './tokens.js';

const T0 = Date.UTC(2026, 0, 1, 12);

const targets: Array<{ name: string; url: () => Promise<string> }> = [
  { name: 'sqlite', url: async () => ':memory:' },
  {
    name: 'postgres',
    url: async () => {
      const d = await createTestDatabase('hp_tokens');
      drops.push(d.drop);
      return d.url;
    },
  },
];
const drops: Array<() => Promise<void>> = [];

for (const target of targets) {
  describe(`API tokens on ${target.name}`, () => {
    let store: StoreConnection;
    const stores: StoreConnection[] = [];

    beforeEach(async () => {
      store = await openStore({ url: await target.url() });
      stores.push(store);
      for (const [id, name] of [['usr_a', 'ann'], ['usr_b', 'bob']] as const) {
        await store.db
          .insertInto('users')
          .values({ id, name, kind: 'user', email: null, password_hash: null, groups: '[]', attributes: '{}', is_admin: 0, source: 'bootstrap', disabled: 0, created_at: T0, updated_at: T0 })
          .execute();
      }
    });
    afterAll(async () => {
      for (const s of stores) await s.close();
      for (const d of drops.splice(0)) await d();
    });

    const lastUsed = async (id: string) =>
      (await store.db.selectFrom('api_tokens').select('last_used_at').where('id', '=', id).executeTakeFirstOrThrow()).last_used_at;

    it('issues an hp_tok_ token, stores only its hash, and authenticates it', async () => {
      const t = await issueToken(store.db, { userId: 'usr_a', name: 'laptop', now: T0 });
      expect(t.token).toMatch(/^hp_tok_[0-9A-Za-z]{43}$/);
      expect(t.expiresAt).toBeNull();
      const rows = await store.db.selectFrom('api_tokens').selectAll().execute();
      expect(rows).toHaveLength(1);
      expect(rows[0]?.token_hash).toBe(hashToken(t.token));
      expect(JSON.stringify(rows)).not.toContain(t.token);
      const user = await authenticateToken(store.db, t.token, T0 + 1);
      expect(user).toMatchObject({ id: 'usr_a', name: 'ann' });
      expect(Object.keys(user ?? {}).sort()).toEqual(Object.keys(await store.db.selectFrom('users').selectAll().executeTakeFirstOrThrow()).sort());
    });

    it('authenticateTokenWithId names the token, and refuses what authenticateToken refuses', async () => {
      const t = await issueToken(store.db, { userId: 'usr_a', name: 'laptop', ttlSeconds: 60, now: T0 });
      expect(await authenticateTokenWithId(store.db, t.token, T0)).toMatchObject({ tokenId: t.id, user: { id: 'usr_a' } });
      expect(await authenticateTokenWithId(store.db, t.token, T0 + 60_000)).toBeUndefined();
      expect(await authenticateTokenWithId(store.db, 'hp_tok_short', T0)).toBeUndefined();
    });

    it('issues distinct tokens', async () => {
      const a = await issueToken(store.db, { userId: 'usr_a', name: 'x', now: T0 });
      const b = await issueToken(store.db, { userId: 'usr_a', name: 'x', now: T0 });
      expect(a.token).not.toBe(b.token);
      expect(a.id).not.toBe(b.id);
    });

    it('rejects malformed and unknown tokens', async () => {
      const t = await issueToken(store.db, { userId: 'usr_a', name: 'laptop', now: T0 });
      for (const bad of ['', 'hp_tok_', t.token.slice(0, -1), `${t.token}x`, t.token.replace('hp_tok_', 'hp_tk_'), `hp_tok_${'A'.repeat(43)}`, `${t.token.slice(0, -1)}!`]) {
        expect(await authenticateToken(store.db, bad, T0), bad).toBeUndefined();
      }
    });

    it('refuses an expired token at and after its expiry', async () => {
      const t = await issueToken(store.db, { userId: 'usr_a', name: 'ci', ttlSeconds: 60, now: T0 });
      expect(t.expiresAt).toBe(T0 + 60_000);
      expect(await authenticateToken(store.db, t.token, T0 + 59_999)).toBeDefined();
      expect(await authenticateToken(store.db, t.token, T0 + 60_000)).toBeUndefined();
    });

    it('refuses a revoked token, and revokes only the owner token when asked', async () => {
      const t = await issueToken(store.db, { userId: 'usr_a', name: 'laptop', now: T0 });
      expect(await revokeToken(store.db, t.id, T0, 'usr_b')).toBe(false);
      expect(await authenticateToken(store.db, t.token, T0)).toBeDefined();
      expect(await revokeToken(store.db, t.id, T0 + 1)).toBe(true);
      expect(await revokeToken(store.db, t.id, T0 + 2)).toBe(false);
      expect(await authenticateToken(store.db, t.token, T0 + 3)).toBeUndefined();
    });

    it('revokes all tokens of one user only', async () => {
      const a1 = await issueToken(store.db, { userId: 'usr_a', name: '1', now: T0 });
      const a2 = await issueToken(store.db, { userId: 'usr_a', name: '2', now: T0 });
      const b = await issueToken(store.db, { userId: 'usr_b', name: '1', now: T0 });
      expect(await revokeAllForUser(store.db, 'usr_a', T0 + 1)).toBe(2);
      expect(await authenticateToken(store.db, a1.token, T0 + 2)).toBeUndefined();
      expect(await authenticateToken(store.db, a2.token, T0 + 2)).toBeUndefined();
      expect(await authenticateToken(store.db, b.token, T0 + 2)).toMatchObject({ id: 'usr_b' });
    });

    it('refuses the token of a disabled user', async () => {
      const t = await issueToken(store.db, { userId: 'usr_a', name: 'laptop', now: T0 });
      await store.db.updateTable('users').set({ disabled: 1 }).where('id', '=', 'usr_a').execute();
      expect(await authenticateToken(store.db, t.token, T0)).toBeUndefined();
    });

    it('updates last_used_at at most once a minute', async () => {
      const t = await issueToken(store.db, { userId: 'usr_a', name: 'laptop', now: T0 });
      expect(await lastUsed(t.id)).toBeNull();
      await authenticateToken(store.db, t.token, T0 + 1000);
      expect(await lastUsed(t.id)).toBe(T0 + 1000);
      await authenticateToken(store.db, t.token, T0 + 1000 + LAST_USED_RESOLUTION_MS - 1);
      expect(await lastUsed(t.id)).toBe(T0 + 1000);
      await authenticateToken(store.db, t.token, T0 + 1000 + LAST_USED_RESOLUTION_MS);
      expect(await lastUsed(t.id)).toBe(T0 + 1000 + LAST_USED_RESOLUTION_MS);
    });

    it('validates issue input', async () => {
      await expect(issueToken(store.db, { userId: 'usr_a', name: ' ', now: T0 })).rejects.toThrow('token name');
      await expect(issueToken(store.db, { userId: 'usr_a', name: 'x', ttlSeconds: 0, now: T0 })).rejects.toThrow('ttlSeconds');
      await expect(issueToken(store.db, { userId: 'usr_nobody', name: 'x', now: T0 })).rejects.toThrow();
    });
  });
}
