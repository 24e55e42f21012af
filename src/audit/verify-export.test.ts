import { describe, expect, it } from 'vitest';
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
