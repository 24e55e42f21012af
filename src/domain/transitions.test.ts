import { describe, expect, it } from 'vitest';
import { grantTransition, GRANT_STATUSES, revokeBackoffMs, type GrantEvent, type GrantStatus } from './grant.js';
import { REQUEST_EVENTS, REQUEST_STATUSES, requestTransition, type RequestEvent, type RequestStatus } from './request.js';
import { formatDuration, parseDuration } from './duration.js';

describe('request state machine: every (status, event) pair', () => {
  const legal: Record<string, RequestStatus> = {
    'pending/approve': 'approved', 'pending/deny': 'denied', 'pending/cancel': 'cancelled', 'pending/expire': 'expired',
  };
  for (const status of REQUEST_STATUSES) {
    for (const event of REQUEST_EVENTS) {
      const key = `${status}/${event}`;
      it(`${key} -> ${legal[key] ?? 'refused'}`, () => {
        const t = requestTransition(status, event as RequestEvent);
        if (legal[key]) expect(t).toEqual({ ok: true, from: status, to: legal[key] });
        else expect(t).toMatchObject({ ok: false, from: status, message: `cannot ${event} a request that is ${status}` });
      });
    }
  }
});

describe('grant state machine: every (status, event) pair', () => {
  const events: GrantEvent[] = ['activate', 'activated', 'extend', 'end', 'revoke_failed', 'ended'];
  const legal: Record<string, GrantStatus> = {
    'scheduled/activate': 'activating',
    'activating/activated': 'active',
    'active/extend': 'active',
    'scheduled/end': 'revoking', 'activating/end': 'revoking', 'active/end': 'revoking',
    'revoking/revoke_failed': 'revoke_failed', 'revoke_failed/revoke_failed': 'revoke_failed',
    'revoking/ended': 'expired', 'revoke_failed/ended': 'expired',
  };
  for (const status of GRANT_STATUSES) {
    for (const event of events) {
      const key = `${status}/${event}`;
      it(`${key} -> ${legal[key] ?? 'refused'}`, () => {
        const t = grantTransition(status, event, 'expired');
        if (legal[key]) expect(t).toEqual({ ok: true, from: status, to: legal[key] });
        else expect(t.ok).toBe(false);
      });
    }
  }
  it('ends as revoked when the end reason is a revocation', () => {
    expect(grantTransition('revoking', 'ended', 'revoked')).toEqual({ ok: true, from: 'revoking', to: 'revoked' });
    expect(grantTransition('revoke_failed', 'ended', 'revoked')).toEqual({ ok: true, from: 'revoke_failed', to: 'revoked' });
  });
  it('never leaves a final state', () => {
    for (const status of ['expired', 'revoked'] as const) {
      for (const event of events) expect(grantTransition(status, event).ok).toBe(false);
    }
  });
});

describe('revocation backoff', () => {
  it('doubles from 1 s, capped at 60 s, with at most 20% jitter', () => {
    expect(revokeBackoffMs(1, () => 0)).toBe(1000);
    expect(revokeBackoffMs(2, () => 0)).toBe(2000);
    expect(revokeBackoffMs(4, () => 0)).toBe(8000);
    expect(revokeBackoffMs(30, () => 0)).toBe(60_000);
    expect(revokeBackoffMs(30, () => 1)).toBe(72_000);
  });
});

describe('durations', () => {
  it.each([['90s', 90], ['30m', 1800], ['1h30m', 5400], ['2d', 172800], ['1d2h3m4s', 93784]])('parses %s', (text, s) => {
    expect(parseDuration(text)).toBe(s);
    expect(parseDuration(formatDuration(s))).toBe(s);
  });
  it.each(['', '0m', '-5m', '5', '5x', '1.5h', 'm', '1h 30m', '30M', '9'.repeat(40) + 's', '1e3s'])('refuses %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});
