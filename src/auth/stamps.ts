import type { Executor } from '../store/db.js';

/** When the holder of an API token last passed MFA (step-up), if ever. */
export async function tokenMfaAt(db: Executor, tokenId: string): Promise<number | undefined> {
  const row = await db.selectFrom('token_mfa').select('mfa_at').where('token_id', '=', tokenId).executeTakeFirst();
  return row?.mfa_at;
}

/** Records a passed MFA check on a token or a web session (upsert; only ever moves forward). */
export async function stampMfa(db: Executor, target: { tokenId?: string | undefined; sessionId?: string | undefined }, at: number): Promise<void> {
  if (target.tokenId) {
    await db.insertInto('token_mfa').values({ token_id: target.tokenId, mfa_at: at })
      .onConflict((oc) => oc.column('token_id').doUpdateSet({ mfa_at: at }).where('token_mfa.mfa_at', '<', at)).execute();
  }
  if (target.sessionId) {
    await db.updateTable('web_sessions').set({ mfa_at: at }).where('id', '=', target.sessionId).execute();
  }
}
