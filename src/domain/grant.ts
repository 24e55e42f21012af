import type { GrantStatusCol } from '../store/schema.js';
import type { Transition } from './request.js';

export type GrantStatus = GrantStatusCol;

/**
 * Grant life: scheduled -> activating -> active -> revoking -> expired | revoked.
 * revoking may pass through revoke_failed (target kept refusing) and still ends expired/revoked.
 * 'activating' and 'revoking' are recorded intent: the store says what we are about to do to the
 * target before we do it, so a crash at any instant is finished (idempotently) on restart.
 */
export type GrantEvent =
  | 'activate' // start provisioning on the target (scheduled -> activating)
  | 'activated' // target confirmed (activating -> active)
  | 'extend' // active -> active with a later end
  | 'end' // expiry or revocation begins (-> revoking)
  | 'revoke_failed' // repeated failures (revoking -> revoke_failed)
  | 'ended'; // target confirmed gone (-> expired | revoked, by end_reason)

const LIVE_ENDABLE: readonly GrantStatus[] = ['scheduled', 'activating', 'active'];

export function grantTransition(
  status: GrantStatus,
  event: GrantEvent,
  endReason?: 'expired' | 'revoked' | null,
): Transition<GrantStatus> {
  const bad = (message?: string): Transition<GrantStatus> => ({
    ok: false,
    from: status,
    message: message ?? `cannot ${event.replace('_', ' ')} a grant that is ${status.replace('_', ' ')}`,
  });
  const ok = (to: GrantStatus): Transition<GrantStatus> => ({ ok: true, from: status, to });
  switch (event) {
    case 'activate':
      return status === 'scheduled' ? ok('activating') : bad();
    case 'activated':
      return status === 'activating' ? ok('active') : bad();
    case 'extend':
      return status === 'active' ? ok('active') : bad();
    case 'end':
      return LIVE_ENDABLE.includes(status) ? ok('revoking') : bad();
    case 'revoke_failed':
      return status === 'revoking' || status === 'revoke_failed' ? ok('revoke_failed') : bad();
    case 'ended':
      if (status !== 'revoking' && status !== 'revoke_failed') return bad();
      return ok(endReason === 'revoked' ? 'revoked' : 'expired');
  }
}

/** Statuses in which a principal may exist on the target and must not be reconciled away. */
export const LIVE_GRANT_STATUSES: readonly GrantStatus[] = ['activating', 'active'];
/** Statuses whose access is on its way out (scheduler keeps retrying). */
export const ENDING_GRANT_STATUSES: readonly GrantStatus[] = ['revoking', 'revoke_failed'];
export const FINAL_GRANT_STATUSES: readonly GrantStatus[] = ['expired', 'revoked'];
export const GRANT_STATUSES: readonly GrantStatus[] = [
  'scheduled', 'activating', 'active', 'revoking', 'revoke_failed', 'expired', 'revoked',
];

/** Backoff for revocation retries: 1s, 2s, 4s ... capped at 60s, with jitter up to 20%. */
export function revokeBackoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(60_000, 1000 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (1 + 0.2 * random()));
}

/** After this many failed attempts the grant is flagged revoke_failed and an alert is raised. */
export const REVOKE_ALERT_AFTER = 3;
