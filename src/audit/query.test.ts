import Database from 'better-sqlite3';
import { Kysely, SqliteDialect, type CompiledQuery } from 'kysely';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type StoreConnection } from '../store/db.js';
import type { DB } from '../store/schema.js';
import { exportEvents } from './export.js';
import { prefixUpperBound, queryEvents, type AuditQuery } from './query.js';
import { storeSink } from './store-sink.js';

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
    { requestId: 'req_1' },
    { type: 'grant.activated' }, { type: 'gateway.execute', afterSeq: 1500 }, { type: 'gateway.statement', since: T0 + 2000 },
    { typePrefix: 'gateway.' }, { typePrefix: 'grant.' }, { typePrefix: 'gateway.', since: T0 + 100, until: T0 + 200 },
    { since: T0 + 2900 }, { until: T0 + 100 }, { since: T0 + 1000, until: T0 + 1100 }, { since: T0 + 10 ** 9 },
    { afterSeq: 2000 },
  ];

  it('for every filter, in a query and in an export', async () => {
    for (const q of cases) {
      const got = await queryEvents(traced, { ...q, limit: 50 });
      await exportEvents(traced, 'jsonl', () => {}, q);
      const bad = plans().filter((p) => /^SCAN audit_events|TEMP B-TREE/.test(p));
      expect(bad, JSON.stringify(q)).toEqual([]);
      expect(got.length, JSON.stringify(q)).toBeLessThanOrEqual(50);
    }
  });

  it('the checker itself sees a scan (a grant filter without the spans)', async () => {
    await traced.selectFrom('audit_events').selectAll().where('grant_id', '=', 'grt_1').orderBy('seq').limit(10).execute();
    expect(plans().filter((p) => p.startsWith('SCAN audit_events'))).toHaveLength(1);
  });
});
