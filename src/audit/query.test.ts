import Database from 'better-sqlite3';
import { Kysely, RawNode, SqliteDialect, type CompiledQuery, type KyselyPlugin } from 'kysely';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type StoreConnection } from '../store/db.js';
import type { DB } from '../store/schema.js';
import { exportEvents } from './export.js';
import { prefixUpperBound, queryEvents, type AuditQuery } from './query.js';
import { prepareEdgeEvent } from './append.js';
import { sqliteAppender } from './sqlite-append.js';
import { storeSink } from './store-sink.js';
import { createTestDatabase } from '../../test/support/services.js';

describe('prefixUpperBound', () => {
  it('is the prefix with its last code point incremented', () => {
    expect(prefixUpperBound('grant.')).toBe('grant/');
    expect(prefixUpperBound('a')).toBe('b');
    expect(prefixUpperBound('x\u{D7FF}')).toBe('x\u{E000}'); // past the surrogates
    expect(prefixUpperBound('x😀')).toBe('x😁');
    expect(prefixUpperBound('x\u{10FFFF}')).toBe('y');
    expect(prefixUpperBound('\u{10FFFF}\u{10FFFF}')).toBeNull();
    expect(prefixUpperBound('')).toBeNull();
  });
});

/**
 * The audit log grows by a row per gateway statement, so a filtered query that reads the whole
 * table gets slower every day. Each statement queryEvents and exportEvents run on SQLite is
 * checked with EXPLAIN QUERY PLAN: none may scan audit_events or sort it.
 */
describe('audit queries on SQLite read only what they return', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hp-auditq-'));
  const file = join(dir, 'state.sqlite');
  const T0 = Date.UTC(2026, 0, 1);
  let store: StoreConnection;
  let raw: Database.Database;
  let traced: Kysely<DB>;
  const statements: CompiledQuery[] = [];

  beforeAll(async () => {
    store = await openStore({ url: file });
    const sink = storeSink(store);
    for (let b = 0; b < 30; b++) {
      await sink.record(Array.from({ length: 100 }, (_, k) => {
        const i = b * 100 + k;
        const type = i % 97 === 0 ? 'grant.activated' : i % 89 === 0 ? 'request.created' : i % 2 ? 'gateway.execute' : 'gateway.statement';
        return { type, actor: 'u', at: T0 + i - (i % 7), data: { i }, ...(type === 'request.created' ? { requestId: `req_${i % 3}` } : { grantId: `grt_${i % 5}` }) };
      }));
    }
    raw = new Database(file, { readonly: true });
    traced = new Kysely<DB>({ dialect: new SqliteDialect({ database: new Database(file, { readonly: true }) }), log: (e) => void statements.push(e.query) });
  });
  afterAll(async () => {
    await traced.destroy();
    raw.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const plans = (): string[] => statements.splice(0).flatMap((q) =>
    (raw.prepare(`explain query plan ${q.sql}`).all(...(q.parameters as unknown[])) as Array<{ detail: string }>).map((r) => `${r.detail}  <- ${q.sql}`));

  const cases: Array<Omit<AuditQuery, 'limit'>> = [
    { grantId: 'grt_1' }, { grantId: 'grt_none' }, { grantId: 'grt_2', since: T0 + 1000, until: T0 + 1500 }, { grantId: 'grt_3', typePrefix: 'gateway.' },
    { requestId: 'req_1' }, { requestId: 'req_1', type: 'gateway.execute' }, { requestId: 'req_2', typePrefix: 'request.' },
    { requestId: 'req_1', since: T0 + 100, until: T0 + 2000 },
    { type: 'grant.activated' }, { type: 'gateway.execute', afterSeq: 1500 }, { type: 'gateway.statement', since: T0 + 2000 },
    { typePrefix: 'gateway.' }, { typePrefix: 'grant.' }, { typePrefix: 'gateway.', since: T0 + 100, until: T0 + 200 },
    { since: T0 + 2900 }, { until: T0 + 100 }, { since: T0 + 1000, until: T0 + 1100 }, { since: T0 + 10 ** 9 },
    { afterSeq: 2000 },
  ];

  it('for every filter, in a query and in an export', async () => {
    for (const q of cases) {
      const got = await queryEvents(traced, { ...q, limit: 50 });
      await exportEvents(traced, 'jsonl', () => {}, q);
      const ran = plans();
      expect(ran.filter((p) => /^SCAN audit_events|TEMP B-TREE/.test(p)), JSON.stringify(q)).toEqual([]);
      // Gateway events carry no request: a request's few events come from its own index.
      if (q.requestId) expect(ran.filter((p) => p.includes('audit_events') && !p.includes('audit_request') && !p.includes('audit_head')), JSON.stringify(q)).toEqual([]);
      expect(got.length, JSON.stringify(q)).toBeLessThanOrEqual(50);
    }
  });

  it('the checker itself sees a scan (a grant filter without the spans)', async () => {
    await traced.selectFrom('audit_events').selectAll().where('grant_id', '=', 'grt_1').orderBy('seq').limit(10).execute();
    expect(plans().filter((p) => p.startsWith('SCAN audit_events'))).toHaveLength(1);
  });
});

/**
 * A query made of several statements (a family read type by type, a grant read span by span)
 * while the writer appends between them: each must return exactly what the log held when the
 * query started, so a reader paging on with afterSeq misses nothing.
 */
describe('audit queries of several statements, with appends between them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hp-auditq-race-'));
  const file = join(dir, 'state.sqlite');
  let store: StoreConnection;
  let writer: Database.Database;
  let between: (() => void) | undefined;
  let reader: Kysely<DB>;
  const ev = (type: string, grantId?: string) => ({ type, actor: 'u', at: Date.UTC(2026, 0, 1), data: {}, ...(grantId ? { grantId } : {}) });

  beforeAll(async () => {
    store = await openStore({ url: file });
    writer = new Database(file);
    // After each statement the reader runs, `between` (once) appends through another connection,
    // as the audit writer thread does.
    reader = new Kysely<DB>({ dialect: new SqliteDialect({ database: new Database(file) }), log: () => {
      const f = between;
      between = undefined;
      f?.();
    } });
  });
  afterAll(async () => {
    await reader.destroy();
    writer.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const appendNow = (events: ReturnType<typeof ev>[]) => sqliteAppender(writer)(events.map(prepareEdgeEvent));
  const seqsOf = async (q: AuditQuery) => (await queryEvents(reader, q)).map((e) => e.seq);

  it('a family returns every event up to the head it started from, none after', async () => {
    await storeSink(store).record([ev('gateway.execute'), ev('gateway.statement')]);
    const head = Number((await store.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq);
    let statements = 0;
    const arm = (): void => {
      between = () => {
        if (++statements === 5) appendNow([ev('gateway.execute'), ev('gateway.statement')]); // after the first per-type read
        else arm();
      };
    };
    arm();
    const got = await seqsOf({ typePrefix: 'gateway.', afterSeq: head - 2, limit: 100 });
    expect(statements).toBe(5);
    expect(got).toEqual([head - 1, head]);
    expect(await seqsOf({ typePrefix: 'gateway.', afterSeq: head, limit: 100 })).toEqual([head + 1, head + 2]);
  });

  it('a grant read span page by span page returns each event once, in order', async () => {
    // 256 spans, a full page: each event is more than SPAN_MERGE_GAP from the last.
    for (let i = 0; i < 255; i++) appendNow([ev('gateway.execute', 'grt_paged'), ...Array.from({ length: 257 }, () => ev('gateway.execute', 'grt_other'))]);
    appendNow([ev('gateway.execute', 'grt_paged')]); // the last span ends the log
    const before = (await store.db.selectFrom('audit_events').select('seq').where('grant_id', '=', 'grt_paged').orderBy('seq').execute()).map((r) => Number(r.seq));
    let statements = 0;
    const arm = (): void => {
      between = () => {
        if (++statements === 258) appendNow([ev('gateway.execute', 'grt_paged')]); // extends the last span: head, span page, 256 spans read
        else arm();
      };
    };
    arm();
    const got = await seqsOf({ grantId: 'grt_paged', limit: 10_000 });
    expect(statements).toBe(258);
    expect(got).toEqual(before);
    const after = (await store.db.selectFrom('audit_events').select('seq').where('grant_id', '=', 'grt_paged').orderBy('seq').execute()).map((r) => Number(r.seq));
    expect(await seqsOf({ grantId: 'grt_paged', limit: 10_000 })).toEqual(after);
  });
});

/**
 * The same property on PostgreSQL, whose family query finds its types differently (among all
 * types, every page): an append after *any* statement of the query changes nothing it returns.
 * The appends go through a second pool, awaited between the reader's statements by a plugin.
 */
describe('audit queries on PostgreSQL, with appends between their statements', () => {
  let pgdb: { url: string; drop: () => Promise<void> };
  let store: StoreConnection;
  let reader: Kysely<DB>;
  let between: (() => Promise<void>) | undefined;
  let statements = 0;
  const ev = (type: string, grantId?: string) => ({ type, actor: 'u', at: Date.UTC(2026, 0, 1), data: {}, ...(grantId ? { grantId } : {}) });
  /** Runs `f` after the reader's k-th statement from now (once). */
  const after = (k: number, f: () => Promise<void>): void => {
    statements = 0;
    between = async () => {
      if (++statements === k) await f();
    };
  };

  beforeAll(async () => {
    pgdb = await createTestDatabase();
    store = await openStore({ url: pgdb.url });
    const plugin: KyselyPlugin = {
      transformQuery: (args) => args.node,
      transformResult: async (args) => {
        await between?.();
        return args.result;
      },
    };
    reader = store.db.withPlugin(plugin); // the store's pool: appends take another of its connections
  });
  afterAll(async () => {
    await store.close();
    await pgdb.drop();
  });

  const append = (events: ReturnType<typeof ev>[]) => storeSink(store).record(events);
  const headSeq = async () => Number((await store.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq);
  const seqsOf = async (q: AuditQuery) => (await queryEvents(reader, q)).map((e) => e.seq);

  it('a family: an append after any one statement of the query is not returned, and nothing is skipped', async () => {
    await append([ev('gateway.execute'), ev('gateway.statement'), ev('grant.activated'), ev('gateway.cancel')]);
    between = undefined;
    statements = 0;
    between = async () => void ++statements;
    const from = (await headSeq()) - 4;
    await seqsOf({ typePrefix: 'gateway.', afterSeq: from, limit: 100 });
    const total = statements;
    expect(total).toBeGreaterThan(2);
    for (let k = 1; k <= total; k++) {
      const start = await headSeq();
      await append([ev('gateway.execute'), ev('grant.activated'), ev('gateway.statement')]);
      const before = start + 3;
      const expected = (await store.db.selectFrom('audit_events').select('seq').where('type', 'like', 'gateway.%').where('seq', '>', start - 3).where('seq', '<=', before).orderBy('seq').execute()).map((r) => Number(r.seq));
      after(k, () => append([ev('gateway.execute'), ev('gateway.statement')]));
      expect(await seqsOf({ typePrefix: 'gateway.', afterSeq: start - 3, limit: 100 }), `append after statement ${k}`).toEqual(expected);
      between = undefined;
    }
  });

  it('a grant read span page by span page returns each event once, in order', async () => {
    for (let i = 0; i < 255; i++) await append([ev('gateway.execute', 'grt_paged'), ...Array.from({ length: 257 }, () => ev('gateway.execute', 'grt_other'))]);
    await append([ev('gateway.execute', 'grt_paged')]);
    const seqs = async () => (await store.db.selectFrom('audit_events').select('seq').where('grant_id', '=', 'grt_paged').orderBy('seq').execute()).map((r) => Number(r.seq));
    between = async () => void ++statements;
    statements = 0;
    expect(await seqsOf({ grantId: 'grt_paged', limit: 10_000 })).toEqual(await seqs());
    const total = statements;
    expect(total).toBeGreaterThan(256);
    // After the head, after the span page, in the middle, and after the last span's read (where
    // the earlier code returned the extended span's new event too).
    for (const k of [1, 2, 3, 130, total - 1, total]) {
      const expected = await seqs();
      after(k, () => append([ev('gateway.execute', 'grt_paged')])); // extends the last span
      expect(await seqsOf({ grantId: 'grt_paged', limit: 10_000 }), `append after statement ${k}`).toEqual(expected);
      between = undefined;
    }
    expect(await seqsOf({ grantId: 'grt_paged', limit: 10_000 })).toEqual(await seqs());
  });
});

/**
 * A window estimated above NARROW_MAX_ESTIMATE events is left to the grant or type index. The
 * log here is sparse (seqs 100,000 apart, as if the events between were another grant's), so a
 * few rows make the estimate large; answers must still be exactly the brute-force ones.
 */
describe('audit queries with a window too wide to narrow first', () => {
  const T0 = Date.UTC(2026, 0, 1);
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it.each(['sqlite', 'postgres'] as const)('on %s', async (kind) => {
    let url: string;
    if (kind === 'sqlite') {
      const dir = mkdtempSync(join(tmpdir(), 'hp-auditq-wide-'));
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
      url = join(dir, 'state.sqlite');
    } else {
      const pgdb = await createTestDatabase();
      cleanups.push(pgdb.drop);
      url = pgdb.url;
    }
    const store = await openStore({ url });
    cleanups.push(() => store.close());
    const rows = Array.from({ length: 12 }, (_, i) => ({
      seq: 1 + i * 100_000, at: T0 + i * 1000, type: i % 3 === 0 ? 'grant.activated' : 'gateway.execute', actor: 'u',
      request_id: null, grant_id: i % 2 === 0 ? 'grt_wide' : 'grt_other', data: '{}', prev_hash: '0'.repeat(64), hash: '0'.repeat(64),
    }));
    await store.db.insertInto('audit_events').values(rows).execute();
    await store.db.insertInto('audit_grant_spans').values(rows.map((r) => ({ grant_id: r.grant_id, first_seq: r.seq, last_seq: r.seq }))).execute();
    await store.db.updateTable('audit_head').set({ seq: rows[rows.length - 1]?.seq ?? 0 }).where('id', '=', 1).execute();
    // The raw statements the query ran (windowSeqRange's are raw), to see which path it took.
    const ran: string[] = [];
    const logged = store.db.withPlugin({
      transformQuery: (a) => {
        if (RawNode.is(a.node)) ran.push(a.node.sqlFragments.join('?'));
        return a.node;
      },
      transformResult: async (a) => a.result,
    });
    const expected = (pick: (r: (typeof rows)[number]) => boolean) => rows.filter(pick).map((r) => r.seq);
    const cases: Array<[Omit<AuditQuery, 'limit'>, (r: (typeof rows)[number]) => boolean]> = [
      [{ grantId: 'grt_wide', since: T0 + 1500, until: T0 + 9500 }, (r) => r.grant_id === 'grt_wide' && r.at >= T0 + 1500 && r.at < T0 + 9500],
      [{ type: 'gateway.execute', since: T0 + 500 }, (r) => r.type === 'gateway.execute' && r.at >= T0 + 500],
      [{ typePrefix: 'grant.', until: T0 + 10_000 }, (r) => r.type.startsWith('grant.') && r.at < T0 + 10_000],
    ];
    for (const [q, pick] of cases) {
      ran.length = 0;
      expect((await queryEvents(logged, { ...q, limit: 100 })).map((e) => e.seq), JSON.stringify(q)).toEqual(expected(pick));
      expect(ran.filter((s) => s.includes('min(seq + 0)')), JSON.stringify(q)).toEqual([]);
      expect((await queryEvents(store.db, { ...q, limit: 2 })).map((e) => e.seq)).toEqual(expected(pick).slice(0, 2));
    }
    // A window of two neighbouring events is narrowed first (the path the cases above avoid).
    ran.length = 0;
    expect((await queryEvents(logged, { grantId: 'grt_wide', since: T0 + 2000, until: T0 + 2500, limit: 10 })).map((e) => e.seq)).toEqual([200_001]);
    expect(ran.filter((s) => s.includes('min(seq + 0)'))).toHaveLength(1);
  });
});
