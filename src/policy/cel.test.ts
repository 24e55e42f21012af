import { describe, expect, it } from 'vitest';
import { celRequest, celRequester, CelResource, compileCondition } from './cel.js';
import { celNow } from './cel-time.js';

describe('CEL conditions', () => {
  it('the cached time-zone formatter answers exactly like Date#toLocaleString', () => {
    const instants = ['2026-03-29T00:59:59Z', '2026-03-29T01:00:00Z', '2026-10-25T00:30:00Z', '2026-10-25T01:30:00Z', '2026-12-31T23:59:59Z'];
    for (const iso of instants) {
      for (const timeZone of ['UTC', 'Europe/Paris', 'America/New_York', 'Asia/Kolkata', 'Pacific/Chatham']) {
        const d = new Date(iso);
        expect(celNow(d).toLocaleString('en-US', { timeZone })).toBe(d.toLocaleString('en-US', { timeZone }));
      }
    }
    expect(celNow(new Date(0)).toLocaleString('en-GB')).toBe(new Date(0).toLocaleString('en-GB'));
  });

  it('evaluates hours and weekdays in a named zone', () => {
    const compiled = compileCondition('now.getHours("Asia/Kolkata") == 14 && now.getDayOfWeek("Asia/Kolkata") == 1');
    if (!compiled.ok) throw new Error(compiled.error);
    const ctx = {
      request: celRequest(60, undefined, undefined),
      requester: celRequester({ id: '1', kind: 'user', name: 'a', groups: [], isAdmin: false, attributes: {} }),
      resource: new CelResource('db', 'postgres', {}),
      role: 'read',
      now: celNow(new Date('2026-01-05T08:45:00Z')), // Monday 14:15 in Kolkata (UTC+5:30)
    };
    expect(compiled.run(ctx)).toEqual({ ok: true, value: true });
  });

  it('refuses a literal unknown time zone at compile time', () => {
    expect(compileCondition('now.getHours("Mars/Olympus") > 1')).toEqual({ ok: false, error: 'unknown time zone "Mars/Olympus"' });
  });

  it('reports a computed unknown time zone as an evaluation error, not an exception', () => {
    const compiled = compileCondition('now.getHours(request.ticket) > 1');
    if (!compiled.ok) throw new Error(compiled.error);
    const result = compiled.run({
      request: celRequest(60, 'r', 'Mars/Olympus'),
      requester: celRequester({ id: '1', kind: 'user', name: 'a', groups: [], isAdmin: false, attributes: {} }),
      resource: new CelResource('db', 'postgres', {}),
      role: 'read',
      now: celNow(new Date()),
    });
    expect(result.ok).toBe(false);
  });
});
