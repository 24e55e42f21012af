import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { analyseText, decide, GuardrailChecker, loadGuardrailParser, type Findings } from './guardrails.js';
import { ParsePool } from './parse-pool.js';
import * as ser from './serializer.js';
import { StatementTracker } from './tracker.js';

/** A statement the parser needs a good while for (a long select list: hundreds of ms). */
function slowStatement(): string {
  const parts: string[] = [];
  for (let i = 0, len = 0; len < 200 * 1024; i++) {
    const p = `coalesce(a${i}, (select max(b) from v${i} where c = ${i}))`;
    parts.push(p);
    len += p.length + 2;
  }
  return `select ${parts.join(', ')} from u`;
}

const pools: ParsePool[] = [];
const newPool = (timeoutMs?: number): ParsePool => {
  const p = new ParsePool(timeoutMs);
  pools.push(p);
  return p;
};
beforeAll(() => loadGuardrailParser());
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close();
});

describe('ParsePool: guardrail parsing on a thread of its own', () => {
  it('finds what the guardrails find on this thread, for statements of every kind', async () => {
    const pool = newPool();
    for (const sql of [
      'create table t(id int)',
      "do $$ begin execute 'drop table t'; end $$",
      'with x as (delete from t returning *) select * from x',
      'select 1; set role postgres',
      'select from',
    ]) {
      expect((await pool.findings(sql)).findings).toEqual(analyseText(sql));
    }
  });

  it('fails a parse over its time limit, and parses the next statement on a new thread', async () => {
    const pool = newPool(1);
    await expect(pool.findings(slowStatement())).rejects.toThrow(/checking it took over/);
    const slow = newPool(60_000); // the first statement of a new thread also loads the parser
    expect((await slow.findings('create table t(id int)')).findings.hits.has('ddl')).toBe(true);
    pool.pause(); // a short limit again, but the thread that timed out is gone: the next one answers
    const next = expect(pool.findings('truncate t')).rejects.toThrow(/closed/);
    expect(pool.waiting).toBe(1);
    await pool.close();
    await next;
  });

  it('takes turns between users: one user\'s many waiting statements delay another\'s by one, not by all', async () => {
    const pool = newPool();
    pool.pause();
    const order: string[] = [];
    const ask = (sql: string, owner: string, tag: string) => pool.findings(sql, undefined, owner).then(() => void order.push(tag));
    const asked = [
      ask('create table m1(id int)', 'usr_mallory', 'm1'),
      ask('create table m2(id int)', 'usr_mallory', 'm2'),
      ask('create table m3(id int)', 'usr_mallory', 'm3'),
      ask('drop table a1', 'usr_alice', 'a1'),
      ask('drop table a2', 'usr_alice', 'a2'),
    ];
    expect(pool.waiting).toBe(5);
    pool.resume();
    await Promise.all(asked);
    expect(order).toEqual(['m1', 'a1', 'm2', 'a2', 'm3']);
    expect(pool.waiting).toBe(0);
  });

  it('holds parses while paused, answers them in order once resumed, and fails what waits at close', async () => {
    const pool = newPool();
    pool.pause();
    const order: string[] = [];
    const a = pool.findings('create table a(id int)').then(() => void order.push('a'));
    const b = pool.findings('drop table a').then(() => void order.push('b'));
    expect(pool.waiting).toBe(2);
    pool.resume();
    await Promise.all([a, b]);
    expect(order).toEqual(['a', 'b']);
    pool.pause();
    const c = expect(pool.findings('truncate a')).rejects.toThrow(/closed/);
    await pool.close();
    await c;
    await expect(pool.findings('truncate a')).rejects.toThrow(/closed/);
  });
});

describe('GuardrailChecker with a parser thread', () => {
  it('parses a new statement on the thread (once for every caller), then decides it from the cache', async () => {
    const pool = newPool();
    const checker = new GuardrailChecker(10, pool);
    const sql = 'create table t(id int)';
    expect(checker.needsParse(sql, ['ddl'], false)).toBe(true);
    // Roles with nothing to check, and plain selects, never need one.
    expect(checker.needsParse(sql, [], false)).toBe(false);
    expect(checker.needsParse('select * from t where id = $1', ['ddl'], false)).toBe(false);
    pool.pause();
    const first = checker.prepare(sql);
    const second = checker.prepare(sql);
    expect(pool.waiting).toBe(1);
    pool.resume();
    expect((await first).ms).toBeGreaterThan(0);
    expect(await second).toEqual({ ms: 0 }); // it shared the first caller's parse
    expect(checker.needsParse(sql, ['ddl'], false)).toBe(false);
    const before = checker.parseMs;
    expect(checker.check(sql, ['ddl'], false)).toMatchObject({ allowed: false, guardrail: 'ddl' });
    expect(checker.parseMs).toBe(before); // nothing parsed on this thread
  });

  it('a failed parse denies the checks that waited for it (every caller sharing it), charges its time, and caches nothing (review)', async () => {
    const pool = newPool(1);
    const checker = new GuardrailChecker(10, pool);
    const sql = slowStatement();
    const [a, b] = await Promise.all([checker.prepare(sql), checker.prepare(sql)]);
    expect(a.ms).toBeGreaterThan(0); // the time the failed parse took, for the session's share
    expect(a.failed?.unparsable).toMatch(/checking it took over/);
    expect(b).toEqual({ ms: 0, failed: a.failed });
    expect(decide(a.failed as Findings, ['ddl'], false)).toMatchObject({ allowed: false, guardrail: 'unparsable' });
    // A parser that failed once does not deny the text for good.
    expect(checker.needsParse(sql, ['ddl'], false)).toBe(true);
  });

  it('skips a parse nobody waits for any more (its sessions ended)', async () => {
    const pool = newPool();
    const checker = new GuardrailChecker(10, pool);
    pool.pause();
    let alive = true;
    const p = checker.prepare('create table gone(id int)', () => alive);
    alive = false;
    pool.resume();
    expect((await p).failed?.unparsable).toMatch(/nobody waits/);
    expect(pool.waiting).toBe(0);
  });
});

describe("StatementTracker's check gate", () => {
  const policy = { resource: 'app', role: 'write', guardrails: ['ddl'], readOnly: false, storeParameters: false };
  const held = () => {
    let release!: () => void;
    const parsed = new Promise<void>((r) => (release = r));
    const parser = { findings: async (sql: string) => (await parsed, { findings: analyseText(sql), ms: 400 }) };
    return { checker: new GuardrailChecker(10, parser), release };
  };

  it('sends nothing, and audits nothing, of what waited for a check once the grant has ended (review)', async () => {
    const { checker, release } = held();
    const emitted: string[] = [];
    let live = true;
    let released = 0;
    const t = new StatementTracker('gws_c', policy, checker, (type) => void emitted.push(type), undefined, {
      mayRelay: () => live,
      released: () => void released++,
      failed: () => {},
    });
    expect(t.fromClient(0x51, ser.query('create table x(id int)'))).toHaveLength(0);
    expect(t.fromClient(0x51, ser.query('select 1'))).toHaveLength(0); // behind it
    const checking = t.checking();
    expect(checking).toBeInstanceOf(Promise);
    live = false; // the grant ends while the statement is being checked
    release();
    await checking;
    expect(t.takeForUpstream()).toEqual([]);
    expect(released).toBe(0);
    t.flush();
    expect(emitted).toEqual([]);
  });

  it('releases what waited, in order, with the decision applied, and charges the parse to the session', async () => {
    const { checker, release } = held();
    let released = 0;
    const t = new StatementTracker('gws_d', policy, checker, () => {}, undefined, { mayRelay: () => true, released: () => void released++, failed: () => {} });
    t.fromClient(0x51, ser.query('create table x(id int)'));
    t.fromClient(0x51, ser.query('select 2'));
    const checking = t.checking();
    release();
    await checking;
    expect(released).toBe(1);
    const out = t.takeForUpstream().map((b) => b.toString('latin1'));
    expect(out).toHaveLength(2);
    expect(out[0]).toContain('hallpass: statement denied'); // the DDL, replaced by one that fails upstream
    expect(out[1]).toContain('select 2');
    expect(t.checking()).toBeUndefined();
    // 400 ms of the parser thread against a 250 ms burst: the session is not read for a while.
    expect(t.parseBackoffMs()).toBeGreaterThan(0);
  });
});
