import type { AccessDeps } from '../access/context.js';
import { AppError } from '../domain/errors.js';
import type { Principal } from '../domain/principal.js';
import type { Decision } from '../policy/types.js';
import { getRequest } from '../store/requests.js';

/**
 * Policy `mfa.connect`: credentials for a grant (direct or through the gateway) are handed out only
 * to a holder who passed MFA within the rule's freshness window. The rule is the one the grant's
 * request was decided under (recorded on the request), not today's policy.
 */
export async function requireConnectMfa(deps: AccessDeps, principal: Principal, requestId: string): Promise<void> {
  const request = await getRequest(deps.store.db, requestId);
  if (!request) return;
  const decision = JSON.parse(request.decision) as Decision;
  if (decision.kind !== 'auto_approved' && decision.kind !== 'needs_approval') return;
  const { connect, freshnessSeconds } = decision.mfa;
  if (!connect) return;
  const now = deps.clock.now().getTime();
  if (principal.mfaAt === undefined || now - principal.mfaAt > freshnessSeconds * 1000) {
    throw new AppError('mfa_required', `policy requires a fresh MFA code (within ${freshnessSeconds}s) to connect`, { freshnessSeconds });
  }
}
