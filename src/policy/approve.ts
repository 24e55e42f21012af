import type { Principal } from '../domain/principal.js';
import type { Policy } from './types.js';

export interface ApprovalSubject {
  /** Principal id of whoever asked. */
  readonly requesterId: string;
  /** The rule the request was decided under. */
  readonly ruleName: string;
  /** Approver groups recorded on the request when it was decided (authoritative over later edits). */
  readonly approverGroups: readonly string[];
}

export type ApproveCheck = { ok: true } | { ok: false; reason: string; code: 'self_approval' | 'forbidden' | 'mfa_required' };

/**
 * May `approver` approve this request? Never their own (break-glass has no approval at all);
 * only people, only members of an approver group. Admins are not approvers by virtue of being
 * admins. When `now` is given and the rule asks for MFA on approval, the approver's last MFA
 * check must be within the rule's freshness window.
 */
export function canApprove(policy: Policy, request: ApprovalSubject, approver: Principal, now?: Date): ApproveCheck {
  if (approver.id === request.requesterId) {
    return { ok: false, code: 'self_approval', reason: 'nobody approves their own request' };
  }
  if (approver.kind !== 'user') return { ok: false, code: 'forbidden', reason: 'only people approve requests, not workloads' };
  if (!approver.groups.some((g) => request.approverGroups.includes(g))) {
    const groups = request.approverGroups.length === 0 ? 'no group' : request.approverGroups.join(', ');
    return { ok: false, code: 'forbidden', reason: `approvers must be in ${groups}; ${approver.name} is not` };
  }
  const rule = policy.rules.find((r) => r.name === request.ruleName);
  if (now && rule?.mfa.approve) {
    const fresh = approver.mfaAt !== undefined && now.getTime() - approver.mfaAt <= rule.mfa.freshnessSeconds * 1000;
    if (!fresh) return { ok: false, code: 'mfa_required', reason: `rule ${rule.name} requires a recent MFA check to approve` };
  }
  return { ok: true };
}
