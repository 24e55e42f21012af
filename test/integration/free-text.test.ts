import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { whyEnded } from '../../src/cli/summaries.js';
import { startPgTarget, type PgTarget } from '../support/pg-target.js';
import { startTestHallpass, type TestHallpass } from '../support/hallpass.js';

/**
 * Every free-text field a person writes for others to read (deny reasons, approval comments,
 * revoke reasons, review notes) is held to what a request reason is: no control characters and
 * no bidirectional overrides, which can make text read differently in a terminal (review:
 * a deny reason with U+202E and U+009B was stored and printed raw by the CLI).
 */
describe('free text in decisions', () => {
  let target: PgTarget;
  let t: TestHallpass;
  beforeAll(async () => {
    target = await startPgTarget();
    t = await startTestHallpass({ target });
  });
  afterAll(async () => {
    await t?.close();
    await target?.stop();
  });

  it('refuses control characters, bidi overrides and blank text in every decision field, and changes nothing', async () => {
    const r = await t.api(await t.token('alice'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'write', duration: '30m', reason: 'free text' });
    const id = r.body.request.id;
    const bob = await t.token('bob');
    for (const bad of ['ok\u202edeyorppa\u202c', 'red \u009b31m', 'tab\there', '   ', 'a\u2066b']) {
      const deny = await t.api(bob, 'POST', `/api/v1/requests/${id}/deny`, { reason: bad });
      expect(deny.status, JSON.stringify(bad)).toBe(400);
      const approve = await t.api(bob, 'POST', `/api/v1/requests/${id}/approve`, { comment: bad });
      expect(approve.status, JSON.stringify(bad)).toBe(400);
    }
    const after = await t.api(await t.token('alice'), 'GET', `/api/v1/requests/${id}`);
    expect(after.body.status).toBe('pending');
    expect(after.body.approvals).toEqual([]);
    // ordinary text in any script is fine
    const ok = await t.api(bob, 'POST', `/api/v1/requests/${id}/deny`, { reason: 'naïve — 日本語 ok' });
    expect(ok.status).toBe(200);
    expect(ok.body.decisionNote ?? ok.body.request?.decisionNote).toBe('naïve — 日本語 ok');

    const g = await t.api(await t.token('alice'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '5m', reason: 'read' });
    const revoke = await t.api(await t.token('alice'), 'POST', `/api/v1/grants/${g.body.grant.id}/revoke`, { reason: 'done\u202e' });
    expect(revoke.status).toBe(400);
    expect((await t.api(await t.token('alice'), 'GET', `/api/v1/grants/${g.body.grant.id}`)).body.status).toBe('active');
  });

  it('the CLI prints what it is given without control characters or bidi overrides', () => {
    const printed = whyEnded({ denialReasons: [], decisionNote: 'ok\u202edeyorppa\u202c \u009b31mRED', status: 'denied' } as unknown as Parameters<typeof whyEnded>[0]);
    expect(printed).toBe('ok deyorppa   31mRED');
  });
});
