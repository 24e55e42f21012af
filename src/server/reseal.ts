import type { Kysely } from 'kysely';
import { inTx, type AccessDeps } from '../access/context.js';
import { SecretBoxError, type SecretBox } from '../secrets/envelope.js';
import type { Tx } from '../store/db.js';
import type { DB } from '../store/schema.js';

/** Rows read (and re-sealed in one transaction) at a time. */
const PAGE = 500;

/** A column of sealed envelopes: how to page through it, re-seal one row, and its associated data. */
interface SealedColumn {
  /** As counted in the `secrets.resealed` event. */
  readonly name: 'grants' | 'totp' | 'sso_logins';
  page(db: Kysely<DB>, afterId: string, notKey: string): Promise<Array<{ id: string; envelope: string }>>;
  /** Replaces `from` with `to`, only if the row still holds `from` (another instance may be at it). */
  swap(tx: Tx, id: string, from: string, to: string): Promise<boolean>;
  aad(id: string): string;
}

const changed = (r: { numUpdatedRows?: bigint }): boolean => (r.numUpdatedRows ?? 0n) > 0n;

const COLUMNS: readonly SealedColumn[] = [
  {
    name: 'grants',
    page: (db, afterId, notKey) => db.selectFrom('grants').select(['id', 'secret_enc as envelope'])
      .where('id', '>', afterId).where('secret_enc', 'not like', notKey).orderBy('id').limit(PAGE).execute(),
    swap: async (tx, id, from, to) => changed(await tx.updateTable('grants').set({ secret_enc: to })
      .where('id', '=', id).where('secret_enc', '=', from).executeTakeFirst()),
    aad: (id) => id, // as requests.ts seals it
  },
  {
    name: 'totp',
    page: (db, afterId, notKey) => db.selectFrom('mfa_totp').select(['user_id as id', 'secret_enc as envelope'])
      .where('user_id', '>', afterId).where('secret_enc', 'not like', notKey).orderBy('user_id').limit(PAGE).execute(),
    swap: async (tx, id, from, to) => changed(await tx.updateTable('mfa_totp').set({ secret_enc: to })
      .where('user_id', '=', id).where('secret_enc', '=', from).executeTakeFirst()),
    aad: (id) => `totp:${id}`, // as src/auth/mfa.ts seals it
  },
  {
    name: 'sso_logins',
    page: (db, afterId, notKey) => db.selectFrom('oidc_logins').select(['state_hash as id', 'verifier_enc as envelope'])
      .where('state_hash', '>', afterId).where('verifier_enc', 'not like', notKey).orderBy('state_hash').limit(PAGE).execute(),
    swap: async (tx, id, from, to) => changed(await tx.updateTable('oidc_logins').set({ verifier_enc: to })
      .where('state_hash', '=', id).where('verifier_enc', '=', from).executeTakeFirst()),
    aad: (id) => `oidc:${id}`, // as src/auth/oidc.ts seals it
  },
];

export interface ResealResult {
  /** Envelopes now sealed with the current key, by column. */
  readonly resealed: Readonly<Record<SealedColumn['name'], number>>;
  /** Envelopes no key of this process opens (sealed by a master key it was not given), by column. */
  readonly unopened: Readonly<Record<SealedColumn['name'], number>>;
}

/**
 * After a master key rotation (docs/secrets.md): re-seals under the current master key what an
 * earlier one sealed in the store (grants' credentials, TOTP secrets, pending SSO logins' PKCE
 * verifiers), so the previous key can then be dropped from the configuration. Each page is one
 * transaction with a `secrets.resealed` event; envelopes no key of this process opens are left
 * as they are and counted (`unopened`), never lost. Idempotent, and safe beside another instance
 * doing the same (a row is replaced only if it still holds what was read).
 */
export async function resealStoredSecrets(deps: AccessDeps, box: SecretBox, currentKeyId: string): Promise<ResealResult> {
  const resealed = { grants: 0, totp: 0, sso_logins: 0 };
  const unopened = { grants: 0, totp: 0, sso_logins: 0 };
  // Rows already under the current key are skipped in SQL (a master key's id is `m` and hex; an
  // id with a LIKE wildcard skips nothing there). needsRotation decides either way.
  const notKey = /^[A-Za-z0-9-]+$/.test(currentKeyId) ? `v1.${currentKeyId}.%` : '';
  for (const col of COLUMNS) {
    let after = '';
    for (;;) {
      const rows = await col.page(deps.store.db, after, notKey);
      if (rows.length === 0) break;
      after = (rows[rows.length - 1] as { id: string }).id;
      const fresh: Array<{ id: string; from: string; to: string }> = [];
      for (const r of rows) {
        try {
          // Inside: a malformed envelope throws here too, and is counted, not fatal to the start.
          if (!box.needsRotation(r.envelope)) continue;
          fresh.push({ id: r.id, from: r.envelope, to: box.seal(box.open(r.envelope, col.aad(r.id)), col.aad(r.id)) });
        } catch (e) {
          if (!(e instanceof SecretBoxError)) throw e;
          unopened[col.name]++;
        }
      }
      if (fresh.length === 0) continue;
      await inTx(deps, async (tx, audit) => {
        let n = 0;
        for (const f of fresh) if (await col.swap(tx, f.id, f.from, f.to)) n++;
        resealed[col.name] += n;
        if (n > 0) {
          audit({ type: 'secrets.resealed', actor: 'system', at: deps.clock.now(), data: { what: col.name, count: n, sealedBy: currentKeyId } });
        }
      });
    }
  }
  return { resealed, unopened };
}
