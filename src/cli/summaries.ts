import { cell, humanSeconds, printable, relative, table } from './format.js';
import type { Grant, Request, RequestOutcome } from './views.js';

/** One-paragraph, human summaries of requests and grants. */

export function requestLine(r: Request, now: number): string {
  switch (r.status) {
    case 'pending': {
      const have = r.approvals.length;
      const from = r.approverGroups.length ? ` from ${r.approverGroups.join(' or ')}` : '';
      const ttl = r.pendingExpiresAt ? `; lapses ${relative(r.pendingExpiresAt, now)}` : '';
      const start = r.startAt ? `; would start ${relative(r.startAt, now)}` : '';
      return `request ${r.id} pending: ${have}/${r.approvalsRequired} approvals${from}${ttl}${start}`;
    }
    case 'approved':
      return `request ${r.id} approved${r.kind === 'break_glass' ? ' (BREAK-GLASS: a review has been opened)' : ''}`;
    default:
      return `request ${r.id} ${r.status}${whyEnded(r) ? `: ${whyEnded(r)}` : ''}`;
  }
}

/** Why a request did not become access, in the server's words. */
export function whyEnded(r: Request): string {
  if (r.denialReasons.length) return printable(r.denialReasons.join('; '));
  if (r.decisionNote) return printable(r.decisionNote);
  if (r.status === 'expired') return 'nobody decided it before it lapsed';
  return '';
}

export function grantLine(g: Grant, now: number): string {
  const what = `${g.resource}/${g.role} as ${g.principal}`;
  switch (g.status) {
    case 'active':
      return `grant ${g.id} active: ${what}, expires ${relative(g.expiresAt, now)}`;
    case 'scheduled':
      return `grant ${g.id} scheduled: ${what}, starts ${relative(g.startsAt, now)}`;
    case 'expired':
    case 'revoked':
      return `grant ${g.id} ${g.status} ${relative(g.endedAt, now)}${g.endReason ? ` (${g.endReason})` : ''}`;
    default:
      return `grant ${g.id} ${g.status}: ${what}${g.lastError ? ` (last error: ${printable(g.lastError)})` : ''}`;
  }
}

export function outcomeText(o: RequestOutcome, now: number): string {
  const lines = [requestLine(o.request, now)];
  if (o.grant) {
    lines.push(grantLine(o.grant, now));
    if (o.grant.status === 'active' || o.grant.status === 'scheduled') {
      lines.push(`credentials: hallpass creds ${o.grant.id}    connect: hallpass connect ${o.grant.resource}`);
    }
  } else if (o.request.status === 'pending') {
    lines.push(`an approver runs: hallpass approve ${o.request.id}`);
  }
  return lines.join('\n') + '\n';
}

export function requestsTable(rows: readonly Request[], now: number): string {
  return table(
    ['id', 'status', 'requester', 'resource', 'role', 'for', 'approvals', 'created', 'reason'],
    rows.map((r) => [
      r.id, r.kind === 'break_glass' ? `${r.status}!` : r.status, cell(r.requester, 24), r.resource, r.role,
      r.durationSeconds > 0 ? humanSeconds(r.durationSeconds) : '-',
      r.approvalsRequired > 0 ? `${r.approvals.length}/${r.approvalsRequired}` : '-', relative(r.createdAt, now), cell(r.reason),
    ]),
  );
}

export function grantsTable(rows: readonly Grant[], now: number): string {
  return table(
    ['id', 'status', 'user', 'resource', 'role', 'principal', 'window'],
    rows.map((g) => [
      g.id, g.status, cell(g.user, 24), g.resource, g.role, g.principal,
      g.status === 'active' ? `expires ${relative(g.expiresAt, now)}`
        : g.status === 'scheduled' ? `starts ${relative(g.startsAt, now)}`
          : g.endedAt ? `ended ${relative(g.endedAt, now)}` : '-',
    ]),
  );
}
