import { inTx, type AccessDeps } from '../access/context.js';
import { hashToken, issueToken, isTokenShaped } from '../auth/tokens.js';
import { ConfigError } from '../domain/errors.js';
import { newUserId } from '../domain/ids.js';
import { getUserByName } from '../store/users.js';

export const ADMIN_USER = 'admin';

/**
 * Makes sure the bootstrap admin exists and can log in. With HALLPASS_ADMIN_TOKEN its token is
 * that value (stored hashed); otherwise a token is generated on the very first start and
 * returned once, for the caller to print. Nothing secret is audited.
 */
export async function bootstrapAdmin(deps: AccessDeps, envToken: string | undefined): Promise<{ generatedToken?: string }> {
  const now = deps.clock.now().getTime();
  return inTx(deps, async (tx, audit) => {
    let admin = await getUserByName(tx, ADMIN_USER);
    if (!admin) {
      admin = {
        id: newUserId(), name: ADMIN_USER, kind: 'user', email: null, password_hash: null, groups: '[]', attributes: '{}',
        is_admin: 1, source: 'bootstrap', disabled: 0, created_at: now, updated_at: now, sso_issuer: null, sso_subject: null,
      };
      await tx.insertInto('users').values(admin).execute();
      audit({ type: 'user.created', actor: 'system', at: now, data: { user: ADMIN_USER, admin: true, source: 'bootstrap' } });
    }
    if (envToken !== undefined && envToken !== '') {
      if (!isTokenShaped(envToken)) throw new ConfigError('HALLPASS_ADMIN_TOKEN must be hp_tok_ followed by 43 letters and digits (e.g. hp_tok_ + the output of: head -c 96 /dev/urandom | base64 | tr -dc A-Za-z0-9 | head -c 43)');
      const hash = hashToken(envToken);
      const exists = await tx.selectFrom('api_tokens').select('id').where('token_hash', '=', hash).executeTakeFirst();
      if (!exists) {
        await tx.insertInto('api_tokens').values({
          id: `tok_env_${hash.slice(0, 12)}`, user_id: admin.id, token_hash: hash, name: 'HALLPASS_ADMIN_TOKEN',
          created_at: now, expires_at: null, last_used_at: null, revoked_at: null,
        }).execute();
        audit({ type: 'token.issued', actor: 'system', at: now, data: { user: ADMIN_USER, name: 'HALLPASS_ADMIN_TOKEN' } });
      }
      return {};
    }
    const done = await tx.selectFrom('meta').select('value').where('key', '=', 'admin_bootstrapped').executeTakeFirst();
    if (done) return {};
    const issued = await issueToken(tx, { userId: admin.id, name: 'bootstrap', now });
    await tx.insertInto('meta').values({ key: 'admin_bootstrapped', value: String(now) }).execute();
    audit({ type: 'token.issued', actor: 'system', at: now, data: { user: ADMIN_USER, name: 'bootstrap', tokenId: issued.id } });
    return { generatedToken: issued.token };
  });
}
