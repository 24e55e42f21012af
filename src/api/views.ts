import type { Static } from '@sinclair/typebox';
import { formatDuration } from '../domain/duration.js';
import type { Decision } from '../policy/types.js';
import type { Executor } from '../store/db.js';
import type { GrantRow } from '../store/grants.js';
import type { RequestRow } from '../store/requests.js';
import type { GrantView, RequestView } from './schemas.js';

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

async function userNames(ex: Executor, ids: readonly string[]): Promise<Map<string, string>> {
  const unique = [...new Set(ids)];
  if (unique.length === 0) return new Map();
  const rows = await ex.selectFrom('users').select(['id', 'name']).where('id', 'in', unique).execute();
  return new Map(rows.map((r) => [r.id, r.name]));
}

export async function requestViews(ex: Executor, rows: readonly RequestRow[]): Promise<Array<Static<typeof RequestView>>> {
  if (rows.length === 0) return [];
  const approvals = await ex.selectFrom('approvals').selectAll().where('request_id', 'in', rows.map((r) => r.id)).orderBy('at').execute();
  const names = await userNames(ex, [...rows.map((r) => r.requester_id), ...approvals.map((a) => a.approver_id)]);
  return rows.map((r) => {
    const decision = JSON.parse(r.decision) as Decision;
    return {
      id: r.id,
      requester: names.get(r.requester_id) ?? r.requester_id,
      resource: r.resource,
      role: r.role,
      duration: formatDuration(r.duration_s),
      durationSeconds: r.duration_s,
      reason: r.reason,
      ticket: r.ticket,
      startAt: iso(r.start_at),
      status: r.status,
      kind: r.kind,
      extendsGrantId: r.extends_grant_id,
      rule: r.rule,
      policyVersion: r.policy_version,
      approvalsRequired: r.approvals_required,
      approverGroups: JSON.parse(r.approver_groups) as string[],
      approvals: approvals.filter((a) => a.request_id === r.id).map((a) => ({
        approver: names.get(a.approver_id) ?? a.approver_id,
        at: new Date(a.at).toISOString(),
        duration: a.duration_s === null ? null : formatDuration(a.duration_s),
        comment: a.comment,
      })),
      pendingExpiresAt: iso(r.pending_expires_at),
      decidedAt: iso(r.decided_at),
      decisionNote: r.decision_note,
      denialReasons: decision.kind === 'denied' ? [...decision.reasons] : [],
      grantId: r.grant_id,
      createdAt: new Date(r.created_at).toISOString(),
    };
  });
}

export async function grantViews(ex: Executor, rows: readonly GrantRow[]): Promise<Array<Static<typeof GrantView>>> {
  const names = await userNames(ex, rows.map((g) => g.user_id));
  return rows.map((g) => ({
    id: g.id,
    requestId: g.request_id,
    user: names.get(g.user_id) ?? g.user_id,
    resource: g.resource,
    role: g.role,
    status: g.status,
    principal: g.principal,
    startsAt: iso(g.starts_at),
    expiresAt: iso(g.expires_at),
    endedAt: iso(g.ended_at),
    endReason: g.end_reason,
    revokeAttempts: g.revoke_attempts,
    lastError: g.last_error,
    createdAt: new Date(g.created_at).toISOString(),
  }));
}

export async function requestView(ex: Executor, row: RequestRow) {
  return (await requestViews(ex, [row]))[0]!;
}
export async function grantView(ex: Executor, row: GrantRow) {
  return (await grantViews(ex, [row]))[0]!;
}
