import { setTimeout as sleep } from 'node:timers/promises';
import { CliError } from './io.js';
import type { CliContext } from './program.js';
import { grantLine, requestLine, whyEnded } from './summaries.js';
import type { Grant, Request, RequestOutcome } from './views.js';

const ENDED_GRANT = new Set<Grant['status']>(['expired', 'revoked', 'revoking', 'revoke_failed']);

/**
 * Polls until the request is decided and its grant is active. Denied, cancelled or lapsed
 * requests (and grants that ended before activating) are failures naming the reason.
 * Progress goes to stderr so stdout carries only the credentials.
 */
export async function waitForActiveGrant(ctx: CliContext, first: RequestOutcome, timeoutMs: number | undefined): Promise<Grant> {
  const client = ctx.client();
  const interval = ctx.io.pollIntervalMs ?? 1000;
  const deadline = timeoutMs === undefined ? undefined : ctx.now() + timeoutMs;
  let request: Request = first.request;
  let grant: Grant | undefined = first.grant;
  let said = '';
  const say = (line: string) => {
    if (line !== said) ctx.err(`${line}\n`);
    said = line;
  };
  for (;;) {
    if (request.status === 'denied' || request.status === 'cancelled' || request.status === 'expired') {
      throw new CliError(`request ${request.id} was ${request.status}${whyEnded(request) ? `: ${whyEnded(request)}` : ''}`);
    }
    if (grant?.status === 'active') return grant;
    if (grant && ENDED_GRANT.has(grant.status)) {
      throw new CliError(`grant ${grant.id} ended before it could be used: ${grant.status}${grant.endReason ? ` (${grant.endReason})` : ''}`);
    }
    say(grant ? `waiting: ${grantLine(grant, ctx.now())}` : `waiting: ${requestLine(request, ctx.now())}`);
    if (deadline !== undefined && ctx.now() >= deadline) {
      throw new CliError(`gave up waiting for request ${request.id} (still ${grant ? `grant ${grant.status}` : request.status}); it stays open: hallpass cancel ${request.id}`);
    }
    await sleep(interval);
    request = await client.get<Request>(`/api/v1/requests/${request.id}`);
    if (request.grantId) grant = await client.get<Grant>(`/api/v1/grants/${request.grantId}`);
  }
}
