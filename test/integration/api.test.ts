import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { queryEvents } from '../../src/audit/index.js';
import { whyEnded } from '../../src/cli/summaries.js';
import { startPgTarget, type PgTarget } from '../support/pg-target.js';
import { startTestHallpass, testPolicy, type TestHallpass } from '../support/hallpass.js';
import { metricValue } from '../support/metrics.js';
import { eventually, roleExists } from '../support/target-checks.js';

describe('HTTP API edges, policy reload and audit verification', () => {
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

  it('answers errors as JSON {error:{code,message}} with the right status', async () => {
    const anon = await t.api(undefined, 'GET', '/api/v1/grants');
    expect(anon.status).toBe(401);
    expect(anon.body.error.code).toBe('unauthenticated');
    const junkToken = await t.api('hp_tok_not-a-real-token', 'GET', '/api/v1/grants');
    expect(junkToken.status).toBe(401);
    const alice = await t.token('alice');
    const missing = await t.api(alice, 'GET', '/api/v1/requests/req_0000000000000000');
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('not_found');
    const badId = await t.api(alice, 'GET', '/api/v1/grants/../../etc/passwd');
    expect([400, 404]).toContain(badId.status);
    const route = await t.api(alice, 'GET', '/api/v1/nope');
    expect(route.status).toBe(404);
    const notJson = await t.api(alice, 'POST', '/api/v1/requests', '{"resource":');
    expect(notJson.status).toBe(400);
    expect(notJson.body.error.code).toBe('bad_request');
    const badDuration = await t.api(alice, 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '5x', reason: 'x' });
    expect(badDuration.status).toBe(400);
    expect(badDuration.body.error.message).toContain('duration');
    const unknownResource = await t.api(alice, 'POST', '/api/v1/requests', { resource: 'nope-db', role: 'read', reason: 'x' });
    expect(unknownResource.status).toBe(404);
    const unknownRole = await t.api(alice, 'POST', '/api/v1/requests', { resource: 'app-db', role: 'superuser', reason: 'x' });
    expect(unknownRole.status).toBe(400);
    const huge = await t.api(alice, 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', reason: 'x'.repeat(200_000) });
    expect([400, 413]).toContain(huge.status);
    const adminOnly = await t.api(alice, 'GET', '/api/v1/audit');
    expect(adminOnly.status).toBe(403);
    // nothing above created anything
    expect(await t.h.deps.store.db.selectFrom('requests').select('id').execute()).toEqual([]);
  });

  it('serves /healthz, Prometheus /metrics and an OpenAPI document built from the validating schemas', async () => {
    const health = await t.api(undefined, 'GET', '/healthz');
    expect(health.status).toBe(200);
    expect(health.body.status).toBe('ok');
    const alice = await t.token('alice');
    await t.api(alice, 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '5m', reason: 'metrics' });
    const metrics = await fetch(`${t.h.url}/metrics`).then((r) => r.text());
    for (const name of ['hallpass_http_requests_total', 'hallpass_active_grants', 'hallpass_revocation_failures_total', 'hallpass_expiry_lag_seconds_bucket']) {
      expect(metrics).toContain(name);
    }
    expect(metricValue(metrics, 'hallpass_active_grants')).toBe(1);
    const doc = await t.api(undefined, 'GET', '/openapi.json');
    expect(doc.status).toBe(200);
    const paths = Object.keys(doc.body.paths);
    for (const p of ['/api/v1/requests', '/api/v1/requests/{id}/approve', '/api/v1/grants/{id}/credentials', '/api/v1/audit/verify', '/api/v1/me']) {
      expect(paths).toContain(p);
    }
    const body = doc.body.paths['/api/v1/requests'].post.requestBody.content['application/json'].schema;
    expect(body.required).toEqual(expect.arrayContaining(['resource', 'role', 'reason']));
    expect(body.additionalProperties).toBe(false);
  });

  it('/metrics reports real values: active grants as counted in the store, an expiry observed in the lag histogram', async () => {
    const scrape = () => fetch(`${t.h.url}/metrics`).then((r) => r.text());
    const activeInStore = async () => (await t.h.deps.store.db.selectFrom('grants').select('id').where('status', '=', 'active').execute()).length;
    const before = await scrape();
    const lagCount = metricValue(before, 'hallpass_expiry_lag_seconds_count') ?? 0;
    expect(metricValue(before, 'hallpass_active_grants')).toBe(await activeInStore());
    const carol = await t.token('carol');
    const r = await t.api(carol, 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '3s', reason: 'metrics expiry' });
    expect(r.body.grant.status).toBe('active');
    const during = await scrape();
    const nowActive = await activeInStore();
    expect(nowActive).toBe((metricValue(before, 'hallpass_active_grants') ?? 0) + 1);
    expect(metricValue(during, 'hallpass_active_grants')).toBe(nowActive);
    // the real scheduler ends it: role gone from the target, grant expired, lag observed
    expect(await eventually(async () => !(await roleExists(target, r.body.grant.principal)), 15_000)).toBe(true);
    expect(await eventually(async () => (await t.api(carol, 'GET', `/api/v1/grants/${r.body.grant.id}`)).body.status === 'expired', 5_000)).toBe(true);
    const after = await scrape();
    expect(metricValue(after, 'hallpass_expiry_lag_seconds_count')).toBe(lagCount + 1);
    expect(metricValue(after, 'hallpass_expiry_lag_seconds_sum')).toBeGreaterThanOrEqual(0);
    expect(metricValue(after, 'hallpass_expiry_lag_seconds_bucket', 'le="+Inf"')).toBe(lagCount + 1);
    expect(metricValue(after, 'hallpass_active_grants')).toBe(nowActive - 1);
    expect(await activeInStore()).toBe(nowActive - 1);
    // access requests and grants by status, as stored (every status present, zero when none)
    const db = t.h.deps.store.db;
    for (const [table, metric, statuses] of [
      ['requests', 'hallpass_access_requests', ['pending', 'approved', 'denied', 'cancelled', 'expired']],
      ['grants', 'hallpass_grants', ['scheduled', 'activating', 'active', 'revoking', 'revoke_failed', 'expired', 'revoked']],
    ] as const) {
      for (const status of statuses) {
        const stored = (await db.selectFrom(table).select('id').where('status', '=', status).execute()).length;
        expect(metricValue(after, metric, `status="${status}"`), `${metric}{status="${status}"}`).toBe(stored);
      }
    }
    expect(metricValue(after, 'hallpass_grants', 'status="expired"')).toBeGreaterThanOrEqual(1);
    expect(metricValue(after, 'hallpass_access_requests', 'status="approved"')).toBeGreaterThanOrEqual(1);
  });

  it('detects tampering through GET /api/v1/audit/verify and names the first bad event', async () => {
    const ok = await t.api(t.adminToken, 'GET', '/api/v1/audit/verify');
    expect(ok.body.ok).toBe(true);
    const db = t.h.deps.store.db;
    const victim = (await queryEvents(db, { type: 'request.created', limit: 1 }))[0]!;
    await sql`update audit_events set data = ${JSON.stringify({ ...victim.data, reason: 'nothing to see' })} where seq = ${victim.seq}`.execute(db);
    const bad = await t.api(t.adminToken, 'GET', '/api/v1/audit/verify');
    expect(bad.body.ok).toBe(false);
    expect(bad.body.firstBad.seq).toBe(victim.seq);
    // put it back (the other tests share this store)
    await sql`update audit_events set data = ${JSON.stringify(victim.data)} where seq = ${victim.seq}`.execute(db);
  });

  it('a log wiped while the server was down is on the record at the restarted server\'s first append (audit.rollback_detected; second review)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'hp-anchor-'));
    const masterKey = randomBytes(32).toString('base64');
    let s = await startTestHallpass({ target, dataDir, masterKey });
    const alice = await s.token('alice');
    expect((await s.api(alice, 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '5m', reason: 'before the wipe' })).status).toBe(201);
    await s.close();
    // While it is down: every event gone, the head back at the start (no key needed for that).
    const db = new Database(join(dataDir, 'hallpass.db'));
    db.exec("delete from audit_grant_spans; delete from audit_events; update audit_head set seq = 0, hash = '" + '0'.repeat(64) + "', seal = null");
    db.close();
    s = await startTestHallpass({ target, dataDir, masterKey });
    try {
      expect((await s.api(await s.token('dave'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '5m', reason: 'after' })).status).toBe(201);
      const all = await queryEvents(s.h.deps.store.db, { limit: 100 });
      // The restarted server's first append records what it found, ahead of anything else.
      expect(all[0]?.type).toBe('audit.rollback_detected');
      const found = await queryEvents(s.h.deps.store.db, { type: 'audit.rollback_detected', limit: 5 });
      expect(found).toHaveLength(1);
      expect(found[0]!.data.headSeq).toBe(0);
    } finally {
      await s.close();
    }
  });

  it('reloads a changed policy file, audits the change, and keeps the old one when the edit is invalid', async () => {
    const before = t.h.policy.current.version;
    const good = testPolicy(target).replace('duration: { default: 5m, max: 1h }', 'duration: { default: 5m, max: 2h }');
    writeFileSync(t.policyPath, good);
    const r1 = await t.h.policy.reload(t.h.deps);
    expect(r1.changed).toBe(true);
    expect(t.h.policy.current.version).not.toBe(before);
    const changed = await queryEvents(t.h.deps.store.db, { type: 'policy.changed', limit: 10 });
    expect(changed.at(-1)?.data.previousVersion).toBe(before);
    const v2 = t.h.policy.current.version;
    writeFileSync(t.policyPath, `${readFileSync(t.policyPath, 'utf8')}\nrules_typo: []\n`);
    const r2 = await t.h.policy.reload(t.h.deps);
    expect(r2.changed).toBe(false);
    expect(r2.errors?.join('\n')).toMatch(/policy\.yaml:\d+/);
    expect(t.h.policy.current.version).toBe(v2);
    expect((await queryEvents(t.h.deps.store.db, { type: 'policy.reload_failed', limit: 10 })).length).toBe(1);
    // the request records the version it was decided under
    const alice = await t.token('dave');
    const req = await t.api(alice, 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '90m', reason: 'after reload' });
    expect(req.status).toBe(201);
    expect(req.body.request.policyVersion).toBe(v2);
  });

  it('applies a watched policy file only once it reads the same twice: a file caught mid-write revokes nobody (second review)', async () => {
    const u = await startTestHallpass({ target });
    try {
      const full = readFileSync(u.policyPath, 'utf8');
      // What a non-atomic write can leave for a moment: a valid policy without the users section.
      const partial = full.replace(/\nusers:\n(?: {2}- .*\n)+/, '\n');
      expect(partial).not.toContain('name: alice');
      const g = await u.api(await u.token('alice'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '10m', reason: 'watch' });
      expect(g.status).toBe(201);
      u.h.policy.watch(u.h.deps, 300);
      await new Promise((r) => setTimeout(r, 400));
      writeFileSync(u.policyPath, partial);
      await new Promise((r) => setTimeout(r, 350)); // longer than a poll: the watcher sees it
      writeFileSync(u.policyPath, `${full}\n# edited\n`);
      await new Promise((r) => setTimeout(r, 2000));
      const grant = await u.api(u.adminToken, 'GET', `/api/v1/grants/${g.body.grant.id}`);
      expect(grant.body.status).toBe('active');
      expect((await queryEvents(u.h.deps.store.db, { type: 'grant.revoking', limit: 10 }))).toHaveLength(0);
      // A change that stays is applied: alice removed for good loses the grant.
      writeFileSync(u.policyPath, partial);
      expect(await eventually(async () => (await u.api(u.adminToken, 'GET', `/api/v1/grants/${g.body.grant.id}`)).body.status !== 'active', 15_000)).toBe(true);
    } finally {
      await u.close();
    }
  });

  it('refuses to start with an invalid policy, naming file and line', async () => {
    await expect(startTestHallpass({ target, policy: 'resources:\n  - name: BAD NAME\n    kind: postgres\n' }))
      .rejects.toThrow(/policy\.yaml:2/);
  });

  // Every free-text field a person writes for others to read is held to what a request reason is
  // (review: a deny reason with U+202E and U+009B was stored and printed raw by the CLI).
  it('refuses control characters, bidi overrides and blank text in every decision field, and changes nothing', async () => {
    const r = await t.api(await t.token('alice'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'write', duration: '30m', reason: 'free text' });
    const id = r.body.request.id;
    const bob = await t.token('bob');
    for (const bad of ['ok\u202edeyorppa\u202c', 'red \u009b31m', 'tab\there', '   ', 'a\u2066b', 'rtl\u200fmark', 'line\u2028sep', '\u200b', '\u0301', 'tag\u{e0041}', 'lone\ud800', 'soft\u00adhyphen', 'ann\ufff9otation', '\u3164\u3164', '\u2800']) {
      const deny = await t.api(bob, 'POST', `/api/v1/requests/${id}/deny`, { reason: bad });
      expect(deny.status, JSON.stringify(bad)).toBe(400);
      const approve = await t.api(bob, 'POST', `/api/v1/requests/${id}/approve`, { comment: bad });
      expect(approve.status, JSON.stringify(bad)).toBe(400);
    }
    const after = await t.api(await t.token('alice'), 'GET', `/api/v1/requests/${id}`);
    expect(after.body.status).toBe('pending');
    expect(after.body.approvals).toEqual([]);
    // ordinary text in any script is fine
    // ordinary text in any script is fine: Persian with ZWNJ, Hindi and emoji with ZWJ, CJK, Arabic
    const fine = 'naïve — 日本語 می\u200cخواهم क्\u200dष 👩\u200d💻 مرحبا ok {Cc} p';
    const ok = await t.api(bob, 'POST', `/api/v1/requests/${id}/deny`, { reason: fine });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.body.decisionNote ?? ok.body.request?.decisionNote).toBe(fine);

    // carol holds no grant from the tests before (a held one would make this an extension)
    const carol = await t.token('carol');
    const g = await t.api(carol, 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '5m', reason: 'read' });
    expect(g.status, JSON.stringify(g.body)).toBe(201);
    for (const bad of ['done\u202e', 'x\u200b', '\u200b\u200b']) {
      const revoke = await t.api(carol, 'POST', `/api/v1/grants/${g.body.grant.id}/revoke`, { reason: bad });
      expect(revoke.status, JSON.stringify(bad)).toBe(400);
    }
    expect((await t.api(carol, 'GET', `/api/v1/grants/${g.body.grant.id}`)).body.status).toBe('active');
  });

  it('refuses a leap second with 400 and explains a refused text field in words (review 2026-12-02: a 500, and the pattern itself)', async () => {
    const alice = await t.token('alice');
    const leap = await t.api(alice, 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '5m', reason: 'later', startAt: '2030-06-30T23:59:60Z' });
    expect(leap.status).toBe(400);
    expect(leap.body.error.message).toBe('body.startAt must be an RFC 3339 time (seconds 00-59)');
    const admin = await t.token('admin');
    const q = await t.api(admin, 'GET', `/api/v1/audit?since=${encodeURIComponent('2030-06-30T23:59:60Z')}`);
    expect(q.status).toBe(400);
    const bad = await t.api(alice, 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '5m', reason: 'tab\there' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toBe('body.reason must be visible text without control characters, line breaks, tabs, or bidirectional and invisible marks');
  });

  it('takes a JSON body as typed: a list, a number or a string where the schema wants another type is refused, not coerced (review: coerceTypes)', async () => {
    const alice = await t.token('alice');
    const requests = async (): Promise<number> => (await t.h.deps.store.db.selectFrom('requests').select('id').execute()).length;
    const before = await requests();
    for (const bad of [
      { resource: 'app-db', role: 'read', duration: '5m', reason: ['a list, read as its one item'] },
      { resource: ['app-db'], role: 'read', duration: '5m', reason: 'x' },
      { resource: 'app-db', role: 'read', duration: '5m', reason: 'x', breakGlass: 'true' },
      { resource: 'app-db', role: 'read', duration: '5m', reason: 'x', breakGlass: 1 },
      { resource: 'app-db', role: 'read', duration: 300, reason: 'x' },
      { resource: 'app-db', role: 'read', duration: '5m', reason: 42 },
    ]) {
      const r = await t.api(alice, 'POST', '/api/v1/requests', bad);
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect(r.body.error.code).toBe('bad_request');
    }
    expect(await requests()).toBe(before);
    // Query strings are text: their numbers and lists are still read as such.
    const admin = await t.token('admin');
    const q = await t.api(admin, 'GET', '/api/v1/audit?limit=2');
    expect(q.status).toBe(200);
    expect(q.body.events.length).toBeLessThanOrEqual(2);
  });

  it('the CLI prints what it is given without control characters or bidi overrides', () => {
    const printed = whyEnded({ denialReasons: [], decisionNote: 'ok\u202edeyorppa\u202c \u009b31mRED', status: 'denied' } as unknown as Parameters<typeof whyEnded>[0]);
    expect(printed).toBe('ok deyorppa   31mRED');
  });
});
