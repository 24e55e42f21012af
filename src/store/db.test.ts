import Database from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { chainRows, extendsSpan, prepareEvent } from '../audit/append.js';
import { queryEvents } from '../audit/query.js';
import { verifyChain } from '../audit/verify.js';
import { openStore } from './db.js';
import { migrations } from './migrations.js';
import type { DB } from './schema.js';
import { createTestDatabase } from '../../test/support/services.js';

describe('openStore', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups) await c();
  });

  it('migrates SQLite and PostgreSQL to the same tables', async () => {
    const pgdb = await createTestDatabase();
    cleanups.push(pgdb.drop);
    for (const url of [':memory:', pgdb.url]) {
      const store = await openStore({ url });
      const head = await store.db.selectFrom('audit_head').selectAll().executeTakeFirstOrThrow();
      expect(head.seq).toBe(0);
      // migrating twice is a no-op
      await store.close();
      const again = await openStore({ url: url === ':memory:' ? ':memory:' : url });
      await again.close();
    }
  });

  it('keeps a log written before 0003 findable by grant, and still verifiable', async () => {
    const pgdb = await createTestDatabase();
    cleanups.push(pgdb.drop);
    const dir = mkdtempSync(join(tmpdir(), 'hp-migrate-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'old.sqlite');
    for (const [dialect, url] of [['sqlite', file], ['postgres', pgdb.url]] as const) {
      // A store as 0002 left it, with a chain already written (as the appenders of then wrote it).
      const old = new Kysely<DB>({
        dialect: dialect === 'sqlite' ? new SqliteDialect({ database: new Database(file) }) : new PostgresDialect({ pool: new pg.Pool({ connectionString: url }) }),
      });
      const migrated = await new Migrator({ db: old, provider: migrations(dialect) }).migrateTo('0002_identity');
      expect(migrated.error).toBeUndefined();
      // grt_sparse: one event in 300, so its events are more than 256 apart and get a span each.
      // At the boundary, as the appenders decide it (extendsSpan): grt_gap256 has exactly 256
      // other events between its two (one span), grt_gap257 exactly 257 (two spans).
      const boundary: Record<number, string> = { 20: 'grt_gap256', 277: 'grt_gap256', 30: 'grt_gap257', 288: 'grt_gap257' };
      const grantOf = (i: number): string => boundary[i] ?? (i % 300 === 7 ? 'grt_sparse' : `grt_${i % 3}`);
      const events = Array.from({ length: 600 }, (_, i) => prepareEvent({ type: 'gateway.execute', actor: 'u', at: 1_700_000_000_000 + i, grantId: grantOf(i), data: { i } }));
      const rows = chainRows({ seq: 0, hash: '0'.repeat(64) }, events);
      for (let i = 0; i < rows.length; i += 100) await old.insertInto('audit_events').values(rows.slice(i, i + 100)).execute();
      const last = rows[rows.length - 1] as (typeof rows)[number];
      await old.updateTable('audit_head').set({ seq: last.seq, hash: last.hash }).where('id', '=', 1).execute();
      await old.destroy();

      const store = await openStore({ url });
      try {
        const got = await queryEvents(store.db, { grantId: 'grt_1', limit: 1000 });
        expect(got.map((e) => e.seq)).toEqual(rows.filter((r) => r.grant_id === 'grt_1').map((r) => r.seq));
        expect((await queryEvents(store.db, { grantId: 'grt_sparse', limit: 10 })).map((e) => e.seq)).toEqual([8, 308]);
        const spans = await store.db.selectFrom('audit_grant_spans').select(['grant_id', 'first_seq', 'last_seq']).orderBy('grant_id').orderBy('first_seq').execute();
        expect(spans.filter((sp) => sp.grant_id === 'grt_sparse').map((sp) => [Number(sp.first_seq), Number(sp.last_seq)])).toEqual([[8, 8], [308, 308]]);
        expect(spans.filter((sp) => sp.grant_id === 'grt_1')).toHaveLength(1);
        const spansOf = (g: string) => spans.filter((sp) => sp.grant_id === g).map((sp) => [Number(sp.first_seq), Number(sp.last_seq)]);
        expect(spansOf('grt_gap256')).toEqual([[21, 278]]);
        expect(extendsSpan(21, { first: 278 })).toBe(true);
        expect(spansOf('grt_gap257')).toEqual([[31, 31], [289, 289]]);
        expect(extendsSpan(31, { first: 289 })).toBe(false);
        for (const g of ['grt_gap256', 'grt_gap257']) expect((await queryEvents(store.db, { grantId: g, limit: 10 })).map((e) => e.seq)).toEqual(rows.filter((r) => r.grant_id === g).map((r) => r.seq));
        expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 600 });
      } finally {
        await store.close();
      }
    }
  });
});

