import type { AccessDeps } from '../access/context.js';
import type { AuthorizeInput, AuthorizeResult, GatewayAuditSink, GatewayAuthority, RefusalCode } from '../gateway/authority.js';
import { verifyGatewayToken } from '../gateway/tokens.js';
import { highVolumeSink } from '../audit/index.js';
import { getGrant } from '../store/grants.js';
import { getUserById } from '../store/users.js';
import { upstreamTls } from './upstream-tls.js';

/**
 * The core's answer to "may this gateway client in?": a valid, unexpired, single-use token for
 * an active grant of this user on this resource. The upstream credential comes from the grant
 * (decrypted here, handed to the gateway in memory only); TLS to the target and whether to store
 * parameter values come from the resource (its connection's sslmode/sslrootcert, its gateway:).
 */
export function gatewayAuthority(deps: AccessDeps, tokenKey: Buffer): GatewayAuthority {
  return {
    async authorize(input: AuthorizeInput): Promise<AuthorizeResult> {
      const now = deps.clock.now();
      const v = verifyGatewayToken(tokenKey, input.token, now);
      if (!v.ok) {
        // An expired token is authentic: its refusal names the grant, as a leaked token tried late
        // is evidence too (third review: a tokenless flood could hide it among the anonymous ones).
        return v.code === 'expired'
          ? { ok: false, code: 'expired', message: 'gateway token expired: mint a new one (hallpass connect / hallpass creds --via-gateway)', grantId: v.grantId }
          : { ok: false, code: 'bad_token', message: 'invalid gateway token' };
      }
      const grant = await getGrant(deps.store.db, v.grantId);
      if (!grant) return { ok: false, code: 'bad_token', message: 'invalid gateway token' };
      // From here on the token is authentic and names this grant: refusals say which, for the audit.
      const no = (code: Exclude<RefusalCode, 'bad_token'>, message: string): AuthorizeResult => ({ ok: false, code, message, grantId: grant.id });
      const user = await getUserById(deps.store.db, grant.user_id);
      if (!user || user.disabled || user.name !== input.user) {
        return no('not_owner', 'this token belongs to another user\'s grant');
      }
      if (grant.resource !== input.resource) {
        return no('wrong_resource', `this token is for ${grant.resource}, not ${input.resource}`);
      }
      if (grant.status === 'revoked' || grant.end_reason === 'revoked') return no('revoked', `access to ${grant.resource} was revoked`);
      if (grant.status !== 'active' || grant.expires_at === null) {
        return grant.status === 'expired' || grant.end_reason === 'expired'
          ? no('expired', `access to ${grant.resource} expired`)
          : no('not_active', `grant ${grant.id} is ${grant.status}`);
      }
      if (grant.expires_at <= now.getTime()) return no('expired', `access to ${grant.resource} expired`);
      // Single use: the first connection records the nonce; any later one is a replay.
      // (A reusable token — minted on request for pools and pgbench -C — is bounded by its TTL.)
      const inserted = v.reusable ? { numInsertedOrUpdatedRows: 1n } : await deps.store.db.insertInto('used_nonces')
        .values({ nonce: v.nonce, expires_at: v.expiresAt.getTime() })
        .onConflict((oc) => oc.column('nonce').doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) {
        return no('replayed', 'this gateway token was already used: mint a new one');
      }
      const policy = deps.policy();
      const resource = policy.resources.get(grant.resource);
      const role = resource?.roles.get(grant.role);
      const provider = deps.providers.get(grant.resource);
      if (!resource || !role || !provider) return no('not_active', `${grant.resource} is no longer in the policy`);
      const info = provider.connectionInfo(grant.principal, deps.sealer.open(grant.secret_enc, grant.id));
      const ssl = await upstreamTls(info.tls);
      return {
        ok: true,
        session: {
          grantId: grant.id, userId: user.id, userName: user.name, resource: grant.resource, role: grant.role,
          expiresAt: new Date(grant.expires_at),
          upstream: { host: info.host, port: info.port, database: info.database ?? grant.resource, user: info.user, password: info.password, ssl },
          guardrails: role.guardrails ?? [], readOnly: role.readOnly, storeParameters: resource.gateway.storeParameters,
        },
      };
    },
  };
}

/**
 * Gateway audit batches go into the same hash chain, one transaction per batch (in a writer
 * thread on a SQLite file store). close() once the gateway has drained its batcher.
 */
export function gatewayAuditSink(deps: AccessDeps): GatewayAuditSink & { close(): Promise<void> } {
  return highVolumeSink(deps.store);
}

/** Forget used nonces whose tokens have expired anyway. */
export async function pruneNonces(deps: AccessDeps): Promise<void> {
  await deps.store.db.deleteFrom('used_nonces').where('expires_at', '<', deps.clock.now().getTime() - 60_000).execute();
}
