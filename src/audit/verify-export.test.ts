import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../store/db.js';
import { appendEvents } from './append.js';
import { exportEvents } from './export.js';
import { GENESIS_HASH, chainHash } from './chain.js';
import { jsonLine } from './export.js';
import type { AuditEvent } from './types.js';
import { verifyExport } from './verify-export.js';

/** Builds a valid chain the way appendEvents does, straight from the documented formula. */
function chain(n: number): AuditEvent[] {
  const out: AuditEvent[] = [];
  let prevHash = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const e = { seq, at: 1_700_000_000_000 + seq, type: 'grant.activated', actor: 'ann', requestId: null, grantId: `grt_${seq}`, data: { b: [1, 'x'], a: seq } };
    const hash = chainHash(prevHash, { ...e, dataJson: JSON.stringify({ a: seq, b: [1, 'x'] }) });
    out.push({ ...e, prevHash, hash });
    prevHash = hash;
  }
  return out;
}
const lines = (events: AuditEvent[]) => events.map((e) => jsonLine(e).trimEnd());

describe('verifyExport (offline JSONL check)', () => {
  it('accepts a complete export, blank lines included, and reports its head', () => {
    const events = chain(4);
    expect(verifyExport(['', ...lines(events), ''])).toEqual({ ok: true, count: 4, headSeq: 4, headHash: events[3]?.hash });
    expect(verifyExport([])).toMatchObject({ ok: true, count: 0, headSeq: 0, headHash: GENESIS_HASH });
  });

  it('names the first bad line: edited, deleted, duplicated, reordered, garbage', () => {
    const l = lines(chain(5));
    const edited = [...l];
    edited[2] = edited[2]?.replace('"actor":"ann"', '"actor":"eve"') ?? '';
    expect(verifyExport(edited)).toMatchObject({ ok: false, count: 2, firstBad: { seq: 3, reason: 'hash_mismatch' } });
    expect(verifyExport([...l.slice(0, 2), ...l.slice(3)])).toMatchObject({ ok: false, firstBad: { seq: 3, reason: 'seq_gap' } });
    expect(verifyExport([...l.slice(0, 3), l[2] ?? '', ...l.slice(3)])).toMatchObject({ ok: false, firstBad: { seq: 3, reason: 'duplicate_seq' } });
    expect(verifyExport([l[0] ?? '', l[2] ?? '', l[1] ?? ''])).toMatchObject({ ok: false, firstBad: { seq: 2, reason: 'seq_gap' } });
    expect(verifyExport([l[0] ?? '', '{not json', l[1] ?? ''])).toMatchObject({ ok: false, firstBad: { seq: 2, reason: 'malformed' } });
    expect(verifyExport([l[0] ?? '', '{"seq":2}'])).toMatchObject({ ok: false, firstBad: { seq: 2, reason: 'malformed' } });
  });

  it('refuses a line with a field the hash does not cover, even in canonical order (review 2026-12-02)', () => {
    const events = chain(3);
    const forged = lines(events);
    // "approvedBy" sorts before "at": the line stays canonical JSON, and the chain is untouched.
    forged[1] = forged[1]?.replace('{"actor":"ann",', '{"actor":"ann","approvedBy":"bob",') ?? '';
    expect(forged[1]).toContain('"approvedBy":"bob"');
    expect(verifyExport(forged, { expectedHead: { seq: 3, hash: events[2]?.hash ?? '' } })).toMatchObject({ ok: false, firstBad: { seq: 2, reason: 'malformed' } });
  });

  it('catches a cut tail only against a head recorded elsewhere', () => {
    const events = chain(5);
    const head = { seq: 5, hash: events[4]?.hash ?? '' };
    expect(verifyExport(lines(events).slice(0, 3))).toMatchObject({ ok: true, count: 3 });
    expect(verifyExport(lines(events).slice(0, 3), { expectedHead: head })).toMatchObject({ ok: false, firstBad: { seq: 4, reason: 'truncated' } });
    expect(verifyExport(lines(events), { expectedHead: { seq: 5, hash: 'f'.repeat(64) } })).toMatchObject({ ok: false, firstBad: { seq: 5, reason: 'head_mismatch' } });
  });

  it('checks a partial export (not starting at event 1) only when allowed', () => {
    const l = lines(chain(5)).slice(2);
    expect(verifyExport(l)).toMatchObject({ ok: false, firstBad: { seq: 1, reason: 'seq_gap' } });
    expect(verifyExport(l, { allowPartial: true })).toMatchObject({ ok: true, count: 3, headSeq: 5 });
  });
});

/** The Python verifier in docs/audit.md, run as written on a real export (an auditor's tool). */
describe('the documented Python verifier', () => {
  const docs = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../../docs/audit.md'), 'utf8');
  const script = /This Python 3 script checks an export[\s\S]*?```python\n([\s\S]*?)```/.exec(docs)?.[1];
  const dir = mkdtempSync(join(tmpdir(), 'hp-pyverify-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('accepts an export with awkward text and numbers, and rejects an edited or duplicated-key line', async () => {
    expect(script).toBeDefined();
    const store = await openStore({ url: ':memory:' });
    const data = [
      { text: 'naïve ✓ 😀 日本語', esc: 'tab\there "q" back\\slash\nline\u0001\u2028', lone: 'x\ud800y' },
      { n: [-0.5, 1.25, 0.00001, 1e-7, 1.5e-7, 123456789.123, 1e21, 2.5e22, -3e-10, 0.1 + 0.2, 100, -0] },
      { nested: { z: null, a: [true, false, { k: 1 }] } },
    ];
    await store.db.transaction().execute((tx) => appendEvents(tx, store.dialect, data.map((d, i) => ({ type: 'test.event', actor: `u${i}`, at: 1_700_000_000_000 + i, data: d }))));
    let out = '';
    await exportEvents(store.db, 'jsonl', (c) => void (out += c));
    await store.close();
    const py = join(dir, 'verify.py');
    writeFileSync(py, script as string);
    const run = (text: string) => {
      writeFileSync(join(dir, 'e.jsonl'), text);
      return spawnSync('python3', [py, join(dir, 'e.jsonl')], { encoding: 'utf8' });
    };
    const ok = run(out);
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toMatch(/^ok: 3 events, head [0-9a-f]{64}\n$/);
    expect(run(out.replace('"actor":"u1"', '"actor":"u9"')).stderr).toMatch(/line 2: event 2 does not match its hash/);
    expect(run(out.replace('{"actor":"u1"', '{"actor":"mallory","actor":"u1"')).stderr).toMatch(/line 2: event 2 does not match its hash/);
    expect(run(out.replace('{"actor":"u1",', '{"actor":"u1","approvedBy":"bob",')).stderr).toMatch(/line 2: not exactly the fields of an audit event/);
  });
});
