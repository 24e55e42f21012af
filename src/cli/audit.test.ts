import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendEvents, verifyExport } from '../audit/index.js';
import { startPgTarget, type PgTarget } from '../../test/support/pg-target.js';
import { startTestHallpass, type TestHallpass } from '../../test/support/hallpass.js';
import { memoryIo } from './io.js';
import { buildProgram, runCli } from './program.js';
import type { AuditEvent, RequestOutcome, Review } from './views.js';

let target: PgTarget;
let t: TestHallpass;
let dir: string;

async function hp(user: string, args: string[]) {
  const token = user === 'admin' ? t.adminToken : await t.token(user);
  const io = memoryIo({ XDG_CONFIG_HOME: dir, HALLPASS_SERVER: t.h.url, HALLPASS_TOKEN: token });
  const code = await runCli(buildProgram(io), args);
  return { code, out: io.out, err: io.err };
}

beforeAll(async () => {
  target = await startPgTarget();
  t = await startTestHallpass({ target });
  dir = mkdtempSync(join(tmpdir(), 'hp-cli-audit-'));
  const r = await hp('alice', ['request', 'app-db', '--role', 'read', '--reason', 'audit fixture']);
  expect(r.code).toBe(0);
});

afterAll(async () => {
  await t?.close();
  await target?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('hallpass audit, reviews', () => {
  it('audit --type with a family filter lists matching events (table and --json)', async () => {
    const table = await hp('admin', ['audit', '--type', 'request.*', '--since', '1h']);
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/^SEQ\s+WHEN\s+TYPE\s+ACTOR/);
    expect(table.out).toMatch(/request\.created\s+alice\s+req_/);
    const j = JSON.parse((await hp('admin', ['audit', '--type', 'request.*', '--limit', '50', '--json'])).out) as { events: AuditEvent[] };
    expect(j.events.length).toBeGreaterThan(0);
    expect(j.events.every((e) => e.type.startsWith('request.'))).toBe(true);
  });

  it('audit --grant lists one grant\'s events, export --grant streams them, and a malformed id is a usage error', async () => {
    const activated = JSON.parse((await hp('admin', ['audit', '--type', 'grant.activated', '--json'])).out) as { events: AuditEvent[] };
    const grantId = activated.events[0]?.grantId as string;
    expect(grantId).toMatch(/^grt_/);
    const mine = JSON.parse((await hp('admin', ['audit', '--grant', grantId, '--json'])).out) as { events: AuditEvent[] };
    expect(mine.events.map((e) => e.type)).toContain('grant.activated');
    expect(mine.events.every((e) => e.grantId === grantId)).toBe(true);
    const csv = await hp('admin', ['audit', 'export', '--format', 'csv', '--grant', grantId]);
    expect(csv.code).toBe(0);
    const rows = csv.out.trim().split(/\r?\n/).slice(1);
    expect(rows.map((row) => row.split(',')[0])).toEqual(mine.events.map((e) => String(e.seq)));
    const bad = await hp('admin', ['audit', '--grant', "grt_x' or 1=1"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/not a grant id/);
  });

  it('audit is for admins: a user gets the server\'s refusal and exit 1', async () => {
    const r = await hp('alice', ['audit']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^hallpass: .*admin/);
  });

  it('audit export --format jsonl --output writes a 0600 file that verifies offline', async () => {
    const file = join(dir, 'audit.jsonl');
    const r = await hp('admin', ['audit', 'export', '--format', 'jsonl', '--output', file]);
    expect(r.code).toBe(0);
    expect(r.out).toBe('');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(3);
    expect(verifyExport(lines)).toMatchObject({ ok: true, count: lines.length });
  });

  it('audit export --format csv --type streams only that type to stdout', async () => {
    const r = await hp('admin', ['audit', 'export', '--format', 'csv', '--type', 'grant.activated']);
    expect(r.code).toBe(0);
    const [header, ...rows] = r.out.trim().split(/\r?\n/); // RFC 4180: CRLF
    expect(header).toBe('seq,at,type,actor,request_id,grant_id,data,prev_hash,hash');
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((row) => row.split(',')[2] === 'grant.activated')).toBe(true);
  });

  it('audit export without --format is a usage error', async () => {
    const r = await hp('admin', ['audit', 'export']);
    expect(r.code).toBe(2);
    expect(r.err).toContain("required option '--format <format>' not specified");
  });

  it('break-glass opens a review that reviews lists and review close closes', async () => {
    const bg = JSON.parse((await hp('olga', ['request', 'app-db', '--role', 'owner', '--reason', 'db on fire', '--break-glass', '--json'])).out) as RequestOutcome;
    expect(bg.request.kind).toBe('break_glass');
    const list = JSON.parse((await hp('admin', ['reviews', '--json'])).out) as { reviews: Review[] };
    const review = list.reviews.find((r) => r.requestId === bg.request.id)!;
    expect(review.status).toBe('open');
    const close = await hp('admin', ['review', 'close', review.id, '--note', 'checked the session log']);
    expect(close.code).toBe(0);
    expect(close.out).toBe(`review ${review.id} closed\n`);
    const after = await hp('admin', ['reviews']);
    expect(after.out).toMatch(new RegExp(`${review.id}\\s+closed\\s+break_glass\\s.*\\schecked the session log`));
  });

  it('audit verify passes on an intact chain, prints a checkpoint, and checks one given later', async () => {
    const r = await hp('admin', ['audit', 'verify']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^audit chain ok: \d+ events\ncheckpoint: \d+:[0-9a-f]{64}\n$/);
    const checkpoint = /checkpoint: (\S+)/.exec(r.out)?.[1] as string;
    // The log grows past it and still holds it.
    await hp('admin', ['audit', 'verify']);
    const later = await hp('admin', ['audit', 'verify', '--checkpoint', checkpoint]);
    expect(later.code).toBe(0);
    expect(later.out).toMatch(new RegExp(`^audit chain ok: \\d+ events, still holding checkpoint ${checkpoint.split(':')[0]}\n`));
    // A checkpoint the log does not hold: rewritten (another hash), or not reached.
    const [seq] = checkpoint.split(':');
    const other = await hp('admin', ['audit', 'verify', '--checkpoint', `${seq}:${'0'.repeat(64)}`]);
    expect(other.code).toBe(1);
    expect(other.err).toMatch(new RegExp(`BROKEN at seq ${seq} \\(checkpoint_mismatch\\)`));
    const beyond = await hp('admin', ['audit', 'verify', '--checkpoint', `999999:${'0'.repeat(64)}`]);
    expect(beyond.err).toMatch(/\(truncated\): the log ends at event \d+, before the checkpoint at event 999999/);
    for (const bad of ['12', '0:' + 'a'.repeat(64), `1:${'A'.repeat(64)}`, "1:x' or 1=1"]) {
      expect((await hp('admin', ['audit', 'verify', '--checkpoint', bad])).code, bad).toBe(2);
    }
  });

  it('audit reveal opens the secrets sealed in one event\'s SQL, with a reason on the record', async () => {
    const { store } = t.h.deps;
    const [row] = await store.db.transaction().execute((tx) =>
      appendEvents(tx, store.dialect, [{ type: 'gateway.query', actor: 'alice', at: Date.now(), data: { sql: "ALTER ROLE app PASSWORD 'pw9'" } }]));
    expect(row!.data).toMatch(/^\{"sql":"ALTER ROLE app PASSWORD '\[sealed:v1\.[^\]]+\]'"\}$/);
    const r = await hp('admin', ['audit', 'reveal', String(row!.seq), '--reason', 'INC-7 review']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('1 sealed span(s) opened');
    expect(r.out).toContain("ALTER ROLE app PASSWORD 'pw9'");
    const j = await hp('admin', ['audit', 'reveal', String(row!.seq), '--reason', 'again', '--json']);
    expect(JSON.parse(j.out)).toMatchObject({ opened: 1, failed: 0, event: { seq: row!.seq } });
    const log = await hp('admin', ['audit', '--type', 'audit.revealed', '--json']);
    expect(JSON.parse(log.out).events.map((e: AuditEvent) => e.data.reason)).toEqual(['INC-7 review', 'again']);
    expect((await hp('admin', ['audit', 'reveal', String(row!.seq)])).code).toBe(2); // --reason is required
    expect((await hp('admin', ['audit', 'reveal', '0', '--reason', 'x'])).code).toBe(2);
    expect((await hp('alice', ['audit', 'reveal', String(row!.seq), '--reason', 'x'])).code).toBe(1);
  });

  it('audit reveal prints the event\'s actor and type without terminal control codes (a gateway client names its own user: review 2026-12-02)', async () => {
    const { store } = t.h.deps;
    const actor = 'mallory\u001b[2K\r\u001b]0;pwned\u0007';
    const [row] = await store.db.transaction().execute((tx) =>
      appendEvents(tx, store.dialect, [{ type: 'gateway.refused', actor, at: Date.now(), data: { sql: "ALTER ROLE app PASSWORD 'pw8'" } }]));
    const r = await hp('admin', ['audit', 'reveal', String(row!.seq), '--reason', 'INC-8']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('gateway.refused mallory');
    expect([...r.out].filter((c) => c !== '\n' && (c < ' ' || c === '\u007f'))).toEqual([]);
  });

  it('audit verify exits 1 naming the first bad seq once an event is altered', async () => {
    await t.h.deps.store.db.updateTable('audit_events').set({ actor: 'mallory' }).where('seq', '=', 3).execute();
    const r = await hp('admin', ['audit', 'verify']);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^hallpass: audit chain BROKEN at seq 3 \(hash_mismatch\): event 3 does not match its hash/);
    const j = await hp('admin', ['audit', 'verify', '--json']);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.out)).toMatchObject({ ok: false, firstBad: { seq: 3, reason: 'hash_mismatch' } });
  });
});
