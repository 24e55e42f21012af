import { sql } from 'kysely';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { inTx, type AccessDeps } from '../access/context.js';
import { openStore, type StoreConnection } from '../store/db.js';
import { appendEvents } from './append.js';
import { AuditBatcher } from './batcher.js';
import { chainHash } from './chain.js';
import { exportEvents } from './export.js';
import { notedSlots, sealHead, setAuditHeadKey } from './head-seal.js';

/** The newest head this process's main-thread writers noted. */
const notedHead = () => notedSlots().main;
import { queryEvents } from './query.js';
import { storeSink } from './store-sink.js';
import type { AuditEventInput } from './types.js';
import { verifyChain } from './verify.js';
import { verifyExport } from './verify-export.js';

export interface AuditTarget {
  readonly name: 'sqlite' | 'postgres';
  /** A fresh, migrated, empty store URL for one test. */
  newUrl(): Promise<string>;
  cleanup(): Promise<void>;
}

const T0 = Date.UTC(2026, 0, 1, 12);

export function ev(i: number, extra: Partial<AuditEventInput> = {}): AuditEventInput {
  return { type: i % 2 ? 'grant.activated' : 'request.created', actor: `u${i}`, at: T0 + i, data: { i }, ...extra };
}

/** The audit suite every store dialect must pass. */
export function auditConformance(target: AuditTarget): void {
  describe(`audit log on ${target.name}`, () => {
    let store: StoreConnection;
    const stores: StoreConnection[] = [];
    const open = async (url?: string) => {
      const s = await openStore({ url: url ?? (await target.newUrl()) });
      stores.push(s);
      return s;
    };
    const append = (events: AuditEventInput[], s = store) =>
      s.db.transaction().execute((tx) => appendEvents(tx, s.dialect, events));
    const seed = (n: number) => append(Array.from({ length: n }, (_, i) => ev(i + 1)));

    beforeEach(async () => {
      store = await open();
    });
    afterAll(async () => {
      for (const s of stores) await s.close();
      await target.cleanup();
    });

    it('appends a linked chain and verifies it, page by page', async () => {
      const first = await seed(3);
      const more = await append([ev(4, { requestId: 'req_1', grantId: 'grt_1' }), ev(5)]);
      expect(first.map((r) => r.seq)).toEqual([1, 2, 3]);
      expect(more[0]?.prev_hash).toBe(first[2]?.hash);
      expect(await verifyChain(store.db, { pageSize: 2 })).toEqual({ ok: true, count: 5, headSeq: 5, headHash: more[1]?.hash });
    });

    it('verifies an empty log', async () => {
      expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 0, headSeq: 0 });
    });

    it('rolls the events back with the caller transaction', async () => {
      await seed(2);
      await expect(
        store.db.transaction().execute(async (tx) => {
          await appendEvents(tx, store.dialect, [ev(3)]);
          throw new Error('state change failed');
        }),
      ).rejects.toThrow('state change failed');
      expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 2, headSeq: 2 });
      expect((await append([ev(3)]))[0]?.seq).toBe(3);
    });

    it('stores redacted data: secrets never reach the log', async () => {
      await append([ev(1, { data: { user: 'ann', password: 'hunter2', nested: { apiKey: 'k', list: [{ Token: 't' }] } } })]);
      const rows = await store.db.selectFrom('audit_events').select('data').execute();
      expect(rows[0]?.data).toBe('{"nested":{"apiKey":"[redacted]","list":[{"Token":"[redacted]"}]},"password":"[redacted]","user":"ann"}');
      expect(await verifyChain(store.db)).toMatchObject({ ok: true });
    });

    it('keeps scalar fields storable: a lone surrogate becomes U+FFFD, a token given as a user name is masked', async () => {
      // A user name sliced inside a surrogate pair (as refusals of long names do) once broke every later verify.
      const cut = `${'x'.repeat(63)}\u{1F600}`.slice(0, 64);
      await append([ev(1, { actor: cut }), ev(2, { actor: `hp_tok_${'a1'.repeat(21)}b` })]);
      const rows = await store.db.selectFrom('audit_events').select('actor').orderBy('seq').execute();
      expect(rows.map((r) => r.actor)).toEqual([`${'x'.repeat(63)}\uFFFD`, '[redacted]']);
      expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 2 });
    });

    describe('detects tampering and names the first bad event', () => {
      beforeEach(async () => {
        await seed(5);
      });

      it('edited event -> hash_mismatch', async () => {
        await store.db.updateTable('audit_events').set({ actor: 'mallory' }).where('seq', '=', 3).execute();
        expect(await verifyChain(store.db, { pageSize: 2 })).toMatchObject({ ok: false, count: 2, firstBad: { seq: 3, reason: 'hash_mismatch' } });
      });

      it('edited data column -> hash_mismatch', async () => {
        await store.db.updateTable('audit_events').set({ data: '{"i":99}' }).where('seq', '=', 2).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq: 2, reason: 'hash_mismatch' } });
      });

      it('deleted event -> seq_gap', async () => {
        await store.db.deleteFrom('audit_events').where('seq', '=', 3).execute();
        const r = await verifyChain(store.db);
        expect(r).toMatchObject({ ok: false, count: 2, firstBad: { seq: 3, reason: 'seq_gap' } });
      });

      it('deleted event with later events renumbered -> hash_mismatch at the first renumbered', async () => {
        await store.db.deleteFrom('audit_events').where('seq', '=', 3).execute();
        await store.db.updateTable('audit_events').set((eb) => ({ seq: sql<number>`${eb.ref('seq')} - 1` })).where('seq', '>', 3).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq: 3, reason: 'hash_mismatch' } });
      });

      it('inserted event (later ones shifted up) -> detected at the inserted seq', async () => {
        await shiftUpFrom(3);
        await store.db
          .insertInto('audit_events')
          .values({ seq: 3, at: T0, type: 'grant.revoked', actor: 'mallory', request_id: null, grant_id: null, data: '{}', prev_hash: '0', hash: '0' })
          .execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq: 3, reason: 'hash_mismatch' } });
      });

      it('inserted event with a forged valid hash -> the next event no longer fits', async () => {
        await shiftUpFrom(3);
        const prev = await store.db.selectFrom('audit_events').select('hash').where('seq', '=', 2).executeTakeFirstOrThrow();
        const forged = { seq: 3, at: T0, type: 'x', actor: 'mallory', requestId: null, grantId: null, dataJson: '{}' };
        await store.db
          .insertInto('audit_events')
          .values({ seq: 3, at: T0, type: 'x', actor: 'mallory', request_id: null, grant_id: null, data: '{}', prev_hash: prev.hash, hash: chainHash(prev.hash, forged) })
          .execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, count: 3, firstBad: { seq: 4, reason: 'hash_mismatch' } });
      });

      it('relinked event (prev_hash edited, own hash recomputed) -> prev_hash_mismatch', async () => {
        const row = await store.db.selectFrom('audit_events').selectAll().where('seq', '=', 4).executeTakeFirstOrThrow();
        const fake = 'f'.repeat(64);
        const hash = chainHash(fake, { seq: 4, at: row.at, type: row.type, actor: row.actor, requestId: row.request_id, grantId: row.grant_id, dataJson: row.data });
        await store.db.updateTable('audit_events').set({ prev_hash: fake, hash }).where('seq', '=', 4).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq: 4, reason: 'prev_hash_mismatch' } });
      });

      it('reordered pair (seq values swapped) -> hash_mismatch at the earlier seq', async () => {
        await store.db.updateTable('audit_events').set({ seq: -1 }).where('seq', '=', 2).execute();
        await store.db.updateTable('audit_events').set({ seq: 2 }).where('seq', '=', 3).execute();
        await store.db.updateTable('audit_events').set({ seq: 3 }).where('seq', '=', -1).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, count: 1, firstBad: { seq: 2, reason: 'hash_mismatch' } });
      });

      it('truncated tail -> truncated at the first missing seq', async () => {
        await store.db.deleteFrom('audit_events').where('seq', '>=', 4).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, count: 3, firstBad: { seq: 4, reason: 'truncated' } });
      });

      it('event appended behind the head -> head_mismatch', async () => {
        const last = await store.db.selectFrom('audit_events').select('hash').where('seq', '=', 5).executeTakeFirstOrThrow();
        const f = { seq: 6, at: T0, type: 'x', actor: 'mallory', requestId: null, grantId: null, dataJson: '{}' };
        await store.db
          .insertInto('audit_events')
          .values({ seq: 6, at: T0, type: 'x', actor: 'mallory', request_id: null, grant_id: null, data: '{}', prev_hash: last.hash, hash: chainHash(last.hash, f) })
          .execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, count: 6, firstBad: { seq: 6, reason: 'head_mismatch' } });
      });

      it('row planted below seq 1 -> seq_out_of_range, and no query shows it', async () => {
        const forged = { seq: 0, at: T0, type: 'request.approved', actor: 'ciso', request_id: 'req_forged', grant_id: null, data: '{}', prev_hash: '0'.repeat(64), hash: '0'.repeat(64) };
        await store.db.insertInto('audit_events').values(forged).execute();
        await store.db.insertInto('audit_events').values({ ...forged, seq: -7 }).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, count: 0, firstBad: { seq: -7, reason: 'seq_out_of_range' } });
        for (const q of [{}, { requestId: 'req_forged' }, { type: 'request.approved' }, { typePrefix: 'request.' }, { since: T0 - 1 }]) {
          expect((await queryEvents(store.db, { ...q, limit: 100 })).map((e) => e.seq).filter((s) => s < 1), JSON.stringify(q)).toEqual([]);
        }
      });

      it('a span stretched over the grant\'s later spans -> span_invalid', async () => {
        await store.db.deleteFrom('audit_events').execute();
        await store.db.updateTable('audit_head').set({ seq: 0, hash: '0'.repeat(64) }).where('id', '=', 1).execute();
        // Three bursts of one grant, far enough apart for a span each.
        for (let b = 0; b < 3; b++) await append([ev(1, { grantId: 'grt_s' }), ...Array.from({ length: 300 }, (_, i) => ev(i + 2))]);
        expect(await verifyChain(store.db)).toMatchObject({ ok: true });
        const first = await store.db.selectFrom('audit_grant_spans').select(['first_seq', 'last_seq']).where('grant_id', '=', 'grt_s').orderBy('first_seq').executeTakeFirstOrThrow();
        await store.db.updateTable('audit_grant_spans').set({ last_seq: 10_000 }).where('grant_id', '=', 'grt_s').where('first_seq', '=', first.first_seq).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { reason: 'span_invalid' } });
        await store.db.updateTable('audit_grant_spans').set({ last_seq: first.last_seq }).where('grant_id', '=', 'grt_s').where('first_seq', '=', first.first_seq).execute();
        await store.db.insertInto('audit_grant_spans').values({ grant_id: 'grt_s', first_seq: 5, last_seq: 3 }).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq: 5, reason: 'span_invalid' } });
      });

      it('edited head -> head_mismatch', async () => {
        await store.db.updateTable('audit_head').set({ hash: 'a'.repeat(64) }).where('id', '=', 1).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq: 5, reason: 'head_mismatch' } });
      });

      async function shiftUpFrom(seq: number) {
        await store.db.updateTable('audit_events').set((eb) => ({ seq: sql<number>`${eb.ref('seq')} + 1000` })).where('seq', '>=', seq).execute();
        await store.db.updateTable('audit_events').set((eb) => ({ seq: sql<number>`${eb.ref('seq')} - 999` })).where('seq', '>=', 1000).execute();
      }
    });

    it('serializes concurrent appending transactions into one chain without duplicate seq', async () => {
      const url = await target.newUrl();
      // On PostgreSQL, two separate connections = two hallpass instances sharing the database.
      // On SQLite, one process shares one connection; the driver serializes the transactions.
      const a = await open(url);
      const b = target.name === 'postgres' ? await open(url) : a;
      await Promise.all(
        Array.from({ length: 40 }, (_, i) => append([ev(i * 3), ev(i * 3 + 1), ev(i * 3 + 2)], i % 2 ? a : b)),
      );
      expect(await verifyChain(a.db)).toMatchObject({ ok: true, count: 120, headSeq: 120 });
      const seqs = (await a.db.selectFrom('audit_events').select('seq').orderBy('seq').execute()).map((r) => r.seq);
      expect(seqs).toEqual(Array.from({ length: 120 }, (_, i) => i + 1));
    });

    it('queries by time, type, type prefix, subject and seq', async () => {
      await append([
        ev(1, { type: 'request.created', requestId: 'req_1' }),
        ev(2, { type: 'grant.activated', grantId: 'grt_1', requestId: 'req_1' }),
        ev(3, { type: 'grant_x', grantId: 'grt_2' }),
        ev(4, { type: 'grant.expired', grantId: 'grt_1' }),
      ]);
      const seqs = async (q: Parameters<typeof queryEvents>[1]) => (await queryEvents(store.db, q)).map((e) => e.seq);
      expect(await seqs({ limit: 10, typePrefix: 'grant.' })).toEqual([2, 4]);
      expect(await seqs({ limit: 10, typePrefix: 'grant_' })).toEqual([3]);
      expect(await seqs({ limit: 10, type: 'request.created' })).toEqual([1]);
      expect(await seqs({ limit: 10, grantId: 'grt_1' })).toEqual([2, 4]);
      expect(await seqs({ limit: 10, requestId: 'req_1' })).toEqual([1, 2]);
      expect(await seqs({ limit: 10, since: T0 + 2, until: new Date(T0 + 4) })).toEqual([2, 3]);
      expect(await seqs({ limit: 2, afterSeq: 1 })).toEqual([2, 3]);
      const [e] = await queryEvents(store.db, { limit: 1, afterSeq: 1 });
      expect(e).toMatchObject({ seq: 2, at: T0 + 2, type: 'grant.activated', actor: 'u2', requestId: 'req_1', grantId: 'grt_1', data: { i: 2 } });
    });

    describe('finds exactly what a scan of the whole log finds', () => {
      // A log shaped like the gateway's: grants busy and rare, batches of every size through both
      // appenders, request events, type families that share a prefix (and one that differs only
      // in case), and `at` out of seq order by up to 30 ms.
      const grants = ['grt_dense', 'grt_rare', 'grt_mid', 'grt_burst'];
      const types = ['gateway.execute', 'gateway.statement', 'gateway.session.start', 'grant.activated', 'grant.expired', 'Grant.upper', 'grant_x'];
      let all: Array<{ seq: number; at: number; type: string; grantId: string | null; requestId: string | null }>;

      beforeEach(async () => {
        let rnd = 7;
        const next = (n: number) => ((rnd = (rnd * 1103515245 + 12345) % 2 ** 31), rnd % n);
        const sink = storeSink(store);
        let i = 0;
        for (let b = 0; b < 24; b++) {
          const size = [1, 3, 40, 300, 7, 129][b % 6] as number;
          const batch: AuditEventInput[] = [];
          for (let k = 0; k < size; k++, i++) {
            // grt_rare appears once in 350 events (gaps wider than SPAN_MERGE_GAP), grt_burst only in batches 10-12.
            const r = next(400);
            const grantId = i % 350 === 175 ? 'grt_rare' : b >= 10 && b <= 12 && r < 200 ? 'grt_burst' : r < 300 ? 'grt_dense' : r < 390 ? 'grt_mid' : undefined;
            batch.push({
              type: types[next(types.length)] as string, actor: 'u', at: T0 + i * 10 + next(61) - 30, data: { i },
              ...(grantId ? { grantId } : {}), ...(next(50) === 0 ? { requestId: `req_${next(3)}` } : {}),
            });
          }
          if (b % 2) await sink.record(batch);
          else await append(batch);
        }
        const rows = await store.db.selectFrom('audit_events').select(['seq', 'at', 'type', 'grant_id', 'request_id']).orderBy('seq').execute();
        all = rows.map((r) => ({ seq: Number(r.seq), at: Number(r.at), type: r.type, grantId: r.grant_id, requestId: r.request_id }));
        expect(all.some((e) => e.grantId === 'grt_rare')).toBe(true);
      });

      type Q = Omit<Parameters<typeof queryEvents>[1], 'limit'>;
      const expected = (q: Q) => all.filter((e) =>
        (q.grantId === undefined || e.grantId === q.grantId) && (q.requestId === undefined || e.requestId === q.requestId) &&
        (q.type === undefined || e.type === q.type) && (q.typePrefix === undefined || e.type.startsWith(q.typePrefix)) &&
        (q.since === undefined || e.at >= Number(q.since)) && (q.until === undefined || e.at < Number(q.until)) &&
        (q.afterSeq === undefined || e.seq > q.afterSeq) && (q.atMostSeq === undefined || e.seq <= q.atMostSeq)).map((e) => e.seq);
      /** Every match, read a page of `page` at a time through afterSeq. */
      const paged = async (q: Q, page: number) => {
        const out: number[] = [];
        for (;;) {
          const got = (await queryEvents(store.db, { ...q, afterSeq: out.at(-1) ?? q.afterSeq, limit: page })).map((e) => e.seq);
          out.push(...got);
          if (got.length < page) return out;
        }
      };
      const mid = T0 + 12_000;
      const cases: Q[] = [
        ...grants.map((grantId) => ({ grantId })), { grantId: 'grt_none' },
        { grantId: 'grt_dense', since: mid, until: mid + 3000 }, { grantId: 'grt_mid', typePrefix: 'gateway.' }, { grantId: 'grt_dense', afterSeq: 500, atMostSeq: 900 },
        { requestId: 'req_1' }, { requestId: 'req_1', type: 'grant.expired' },
        { type: 'grant.expired' }, { type: 'gateway.execute', afterSeq: 1000 },
        { typePrefix: 'grant.' }, { typePrefix: 'gateway.' }, { typePrefix: 'g' }, { typePrefix: 'Grant.' }, { typePrefix: 'grant_' }, { typePrefix: 'nothing.' },
        { typePrefix: 'grant.', since: mid, until: mid + 5000 },
        { since: mid }, { until: mid }, { since: mid, until: mid + 1 }, { since: mid, until: mid + 2000 }, { since: mid + 10 ** 9 },
        { since: mid, until: mid + 4000, afterSeq: 1300 }, { since: mid, type: 'gateway.statement' },
      ];

      it('in every filter, a page at a time or all at once', async () => {
        for (const q of cases) {
          const want = expected(q);
          expect((await queryEvents(store.db, { ...q, limit: 10_000 })).map((e) => e.seq), JSON.stringify(q)).toEqual(want);
          expect(await paged(q, 7), JSON.stringify(q)).toEqual(want);
          expect((await queryEvents(store.db, { ...q, limit: 3 })).map((e) => e.seq), JSON.stringify(q)).toEqual(want.slice(0, 3));
        }
      });

      it('in exports of a window, a grant and a family', async () => {
        for (const q of [{ since: mid, until: mid + 3000 }, { grantId: 'grt_rare' }, { typePrefix: 'gateway.', since: mid }] as Q[]) {
          let text = '';
          const n = await exportEvents(store.db, 'jsonl', (chunk) => void (text += chunk), q);
          const seqs = text.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { seq: number }).seq);
          expect(seqs, JSON.stringify(q)).toEqual(expected(q));
          expect(n).toBe(seqs.length);
        }
      });

      it('verify passes with the spans the appenders keep, and names the first event a tampered span hides', async () => {
        expect(await verifyChain(store.db, { pageSize: 500 })).toMatchObject({ ok: true, count: all.length });
        const rare = all.filter((e) => e.grantId === 'grt_rare').map((e) => e.seq);
        await sql`delete from audit_grant_spans where grant_id = 'grt_rare' and first_seq = ${rare[1]}`.execute(store.db);
        expect(await verifyChain(store.db, { pageSize: 500 })).toMatchObject({ ok: false, count: (rare[1] as number) - 1, firstBad: { seq: rare[1], reason: 'span_missing' } });
        expect((await queryEvents(store.db, { grantId: 'grt_rare', limit: 100 })).map((e) => e.seq)).not.toContain(rare[1]);
        // A span cut short hides its last event.
        const dense = all.filter((e) => e.grantId === 'grt_dense').map((e) => e.seq);
        const lastDense = dense[dense.length - 1] as number;
        await sql`update audit_grant_spans set last_seq = last_seq - 1 where grant_id = 'grt_dense' and last_seq = ${lastDense}`.execute(store.db);
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq: rare[1], reason: 'span_missing' } });
        await sql`insert into audit_grant_spans (grant_id, first_seq, last_seq) values ('grt_rare', ${rare[1]}, ${rare[1]})`.execute(store.db);
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq: lastDense, reason: 'span_missing' } });
      });

      it('keeps a grant to few spans: one per burst, not one per event', async () => {
        const spans = async (g: string) => Number((await store.db.selectFrom('audit_grant_spans').select((eb) => eb.fn.countAll<number>().as('n')).where('grant_id', '=', g).executeTakeFirstOrThrow()).n);
        expect(await spans('grt_dense')).toBeLessThanOrEqual(2);
        expect(await spans('grt_burst')).toBe(1);
        expect(await spans('grt_rare')).toBeGreaterThan(1);
      });
    });

    it('exports JSONL that verifies offline, and catches an edited export', async () => {
      await seed(2500);
      let out = '';
      const n = await exportEvents(store.db, 'jsonl', (c) => {
        out += c;
      });
      expect(n).toBe(2500);
      const lines = out.split('\n');
      const head = await store.db.selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirstOrThrow();
      expect(verifyExport(lines, { expectedHead: head })).toEqual({ ok: true, count: 2500, headSeq: 2500, headHash: head.hash });
      const edited = lines.map((l, i) => (i === 1233 ? l.replace('"actor":"u1234"', '"actor":"u9"') : l));
      expect(verifyExport(edited)).toMatchObject({ ok: false, firstBad: { seq: 1234, reason: 'hash_mismatch' } });
      expect(verifyExport(lines.slice(0, 2000), { expectedHead: head })).toMatchObject({ ok: false, firstBad: { seq: 2001, reason: 'truncated' } });
      // A checkpoint taken earlier (event 2000) holds in the longer export; one never reached does not.
      const at2000 = JSON.parse(lines[1999] as string) as { hash: string };
      expect(verifyExport(lines, { checkpoint: { seq: 2000, hash: at2000.hash } })).toMatchObject({ ok: true, count: 2500 });
      expect(verifyExport(lines, { checkpoint: { seq: 2000, hash: head.hash } })).toMatchObject({ ok: false, firstBad: { seq: 2000, reason: 'checkpoint_mismatch' } });
      expect(verifyExport(lines.slice(0, 1500), { checkpoint: { seq: 2000, hash: at2000.hash } })).toMatchObject({ ok: false, firstBad: { seq: 1501, reason: 'truncated' } });
      // A partial export must still show the checkpoint: start before it, or right after it.
      expect(verifyExport(lines.slice(1000), { allowPartial: true, checkpoint: { seq: 2000, hash: at2000.hash } })).toMatchObject({ ok: true });
      expect(verifyExport(lines.slice(2000), { allowPartial: true, checkpoint: { seq: 2000, hash: at2000.hash } })).toMatchObject({ ok: true });
      expect(verifyExport(lines.slice(2000), { allowPartial: true, checkpoint: { seq: 2000, hash: head.hash } })).toMatchObject({ ok: false, firstBad: { seq: 2000, reason: 'checkpoint_mismatch' } });
      expect(verifyExport(lines.slice(2100), { allowPartial: true, checkpoint: { seq: 2000, hash: at2000.hash } })).toMatchObject({ ok: false, firstBad: { seq: 2000, reason: 'truncated' } });
      // A duplicate key shows a reader one actor and JSON.parse (hence the hash) another: not an event line.
      const dup = lines.map((l, i) => (i === 9 ? l.replace('{"actor":"u10"', '{"actor":"mallory","actor":"u10"') : l));
      expect(dup[9]).toContain('"actor":"mallory"');
      expect(verifyExport(dup)).toMatchObject({ ok: false, firstBad: { seq: 10, reason: 'malformed' } });
    });

    it('a checkpoint kept elsewhere catches a log rewritten from some event on, head included', async () => {
      await seed(6);
      const at4 = await store.db.selectFrom('audit_events').select(['seq', 'hash']).where('seq', '=', 4).executeTakeFirstOrThrow();
      // Whoever can write the database rewrites events 3.. into a chain that verifies on its own.
      await store.db.deleteFrom('audit_events').where('seq', '>=', 3).execute();
      const two = await store.db.selectFrom('audit_events').select('hash').where('seq', '=', 2).executeTakeFirstOrThrow();
      await store.db.updateTable('audit_head').set({ seq: 2, hash: two.hash }).where('id', '=', 1).execute();
      await append([ev(3), ev(4, { actor: 'someone-else' }), ev(5), ev(6)]);
      expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 6 });
      expect(await verifyChain(store.db, { checkpoint: { seq: 4, hash: at4.hash } })).toMatchObject({ ok: false, firstBad: { seq: 4, reason: 'checkpoint_mismatch' } });
      const now4 = await store.db.selectFrom('audit_events').select('hash').where('seq', '=', 4).executeTakeFirstOrThrow();
      expect(await verifyChain(store.db, { checkpoint: { seq: 4, hash: now4.hash } })).toMatchObject({ ok: true, count: 6 });
      expect(await verifyChain(store.db, { checkpoint: { seq: 7, hash: now4.hash } })).toMatchObject({ ok: false, firstBad: { seq: 7, reason: 'truncated' } });
    });

    it('exports CSV with a header and filters, quoting and neutralising formulas', async () => {
      await append([ev(1, { type: 'query', actor: '=2+3', data: { sql: 'select 1, "a"' } }), ev(2, { type: 'other' })]);
      const chunks: string[] = [];
      await exportEvents(store.db, 'csv', async (c) => void chunks.push(c), { type: 'query' });
      const [header, row, end, ...rest] = chunks.join('').split('\r\n');
      expect(header).toBe('seq,at,type,actor,request_id,grant_id,data,prev_hash,hash');
      expect(row?.startsWith(`1,2026-01-01T12:00:00.001Z,query,'=2+3,,,"{""sql"":""select 1, \\""a\\""""}",${'0'.repeat(64)},`)).toBe(true);
      expect(end).toBe('');
      expect(rest).toEqual([]);
    });

    it('AuditBatcher into storeSink batches into few transactions and loses nothing on drain', async () => {
      const sizes: number[] = [];
      const sink = storeSink(store);
      const counting = { record: (events: readonly AuditEventInput[]) => (sizes.push(events.length), sink.record(events)) };
      const idle = new AuditBatcher(counting, { maxDelayMs: 60_000, maxBatch: 1000, flushAt: 1000 });
      for (let i = 0; i < 250; i++) idle.add(ev(i));
      expect(idle.pending).toBe(250);
      await idle.drain();
      expect(sizes).toEqual([250]); // nothing was due before drain: one batch

      sizes.length = 0;
      const busy = new AuditBatcher(counting, { maxDelayMs: 0, maxBatch: 100 });
      for (let i = 250; i < 500; i++) busy.add(ev(i));
      await busy.drain();
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(250);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(100);
      expect(idle.pending + busy.pending).toBe(0);
      expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 500 });
      const ats = (await store.db.selectFrom('audit_events').select('at').orderBy('seq').execute()).map((r) => r.at);
      expect(ats).toEqual(Array.from({ length: 500 }, (_, i) => T0 + i));
    });

    it('storeSink commits a batch whole or not at all', async () => {
      await seed(2);
      // A row squatting on seq 5 makes the third event of the next batch fail its insert.
      await sql`insert into audit_events (seq, at, type, actor, data, prev_hash, hash) values (5, 0, 'x', 'x', '{}', 'x', 'x')`.execute(store.db);
      const sink = storeSink(store);
      await expect(sink.record([ev(3), ev(4), ev(5), ev(6)])).rejects.toThrow();
      const seqs = (await store.db.selectFrom('audit_events').select('seq').orderBy('seq').execute()).map((r) => Number(r.seq));
      expect(seqs).toEqual([1, 2, 5]);
      expect(Number((await store.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq)).toBe(2);
      await sql`delete from audit_events where seq = 5`.execute(store.db);
      await sink.record([ev(3), ev(4), ev(5), ev(6)]); // the connection is usable and the chain intact
      // and a state transaction on the same store still works after the failed batch
      await append([ev(7)]);
      expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 7 });
    });

    describe('the head seal (a server, holding the master key)', () => {
      beforeEach(() => setAuditHeadKey({ id: 'mtest', key: Buffer.alloc(32, 7) }));
      afterEach(() => setAuditHeadKey(undefined));

      /** Rewrites events from `from` on with `edit`, recomputing every hash and the head, as a database writer can. */
      async function rewriteFrom(from: number, edit: (data: string) => string) {
        const rows = await store.db.selectFrom('audit_events').selectAll().where('seq', '>=', from).orderBy('seq').execute();
        let prev = (await store.db.selectFrom('audit_events').select('hash').where('seq', '=', from - 1).executeTakeFirstOrThrow()).hash;
        for (const r of rows) {
          const data = r.seq === from ? edit(r.data) : r.data;
          const hash = chainHash(prev, { seq: r.seq, at: r.at, type: r.type, actor: r.actor, requestId: r.request_id, grantId: r.grant_id, dataJson: data });
          await store.db.updateTable('audit_events').set({ data, prev_hash: prev, hash }).where('seq', '=', r.seq).execute();
          prev = hash;
        }
        await store.db.updateTable('audit_head').set({ hash: prev }).where('id', '=', 1).execute();
      }

      it('a chain rewritten with its head fails as head_forged, or head_unsealed without a seal; the next append puts that on the record (review 2026-12-02)', async () => {
        await seed(6);
        expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 6 });
        await rewriteFrom(4, (d) => d.replace('4', '40'));
        // A consistent chain: only the seal, which needs the master key, gives it away.
        setAuditHeadKey(undefined);
        expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 6 });
        setAuditHeadKey({ id: 'mtest', key: Buffer.alloc(32, 7) });
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq: 6, reason: 'head_forged' } });
        await store.db.updateTable('audit_head').set({ seal: null }).where('id', '=', 1).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq: 6, reason: 'head_unsealed' } });
        // Auditing goes on, and what the appender found is on the record, sealed.
        await append([ev(7)]);
        expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 8 });
        const found = await queryEvents(store.db, { type: 'audit.head_unsealed', limit: 10 });
        expect(found.map((e) => [e.seq, e.data.seq, e.data.seal])).toEqual([[7, 6, 'missing']]);
        // A head sealed with another master key is no seal of ours.
        setAuditHeadKey({ id: 'mother', key: Buffer.alloc(32, 9) });
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq: 8, reason: 'head_forged' } });
      });

      it('after a master key rotation a head sealed by the previous key is genuine: verify passes, and the next append records the rotation, not an alarm', async () => {
        await seed(3);
        const rotated = () => setAuditHeadKey({ id: 'mnew', key: Buffer.alloc(32, 8) }, [{ id: 'mtest', key: Buffer.alloc(32, 7) }]);
        rotated();
        expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 3 });
        await append([ev(4)]);
        expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 5 });
        expect(await queryEvents(store.db, { type: 'audit.head_unsealed', limit: 5 })).toEqual([]);
        const found = await queryEvents(store.db, { type: 'audit.head_key_rotated', limit: 5 });
        expect(found.map((e) => [e.seq, e.data.seq, e.data.from, e.data.to])).toEqual([[4, 3, 'mtest', 'mnew']]);
        // Sealed by the new key from then on: no second record.
        await append([ev(5)]);
        expect(await queryEvents(store.db, { type: 'audit.head_key_rotated', limit: 5 })).toHaveLength(1);
        // The previous key's id on a seal it did not make is still a forgery, and so is any other key's.
        const head = await store.db.selectFrom('audit_head').select(['seq', 'seal']).executeTakeFirstOrThrow();
        await store.db.updateTable('audit_head').set({ seal: `mtest.${head.seal!.split('.')[1]}` }).where('id', '=', 1).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq: Number(head.seq), reason: 'head_forged' } });
        setAuditHeadKey({ id: 'mthird', key: Buffer.alloc(32, 6) }, [{ id: 'mtest', key: Buffer.alloc(32, 7) }]);
        await store.db.updateTable('audit_head').set({ seal: head.seal }).where('id', '=', 1).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq: Number(head.seq), reason: 'head_forged' } });
      });

      it('once the rotation is recorded, a head the old key seals again is a forgery, not a second rotation (review 2026-12-02)', async () => {
        await seed(3);
        const oldKey = { id: 'mtest', key: Buffer.alloc(32, 7) };
        setAuditHeadKey({ id: 'mnew', key: Buffer.alloc(32, 8) }, [oldKey]);
        await append([ev(4)]); // records the rotation, seals with the new key
        expect(await queryEvents(store.db, { type: 'audit.head_key_rotated', limit: 5 })).toHaveLength(1);
        // Whoever still holds the old key (kept to open old SQL) appends an event and seals the head with it.
        const last = await store.db.selectFrom('audit_events').select(['seq', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirstOrThrow();
        const seq = Number(last.seq) + 1;
        const at = 9_999;
        const data = '{"forged":true}';
        const hash = chainHash(last.hash, { seq, at, type: 'grant.revoked', actor: 'mallory', requestId: null, grantId: null, dataJson: data });
        await store.db.insertInto('audit_events').values({ seq, at, type: 'grant.revoked', actor: 'mallory', request_id: null, grant_id: null, data, prev_hash: last.hash, hash }).execute();
        setAuditHeadKey(oldKey);
        const seal = sealHead(seq, hash);
        setAuditHeadKey({ id: 'mnew', key: Buffer.alloc(32, 8) }, [oldKey]);
        await store.db.updateTable('audit_head').set({ seq, hash, seal }).where('id', '=', 1).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: false, firstBad: { seq, reason: 'head_forged' } });
        await append([ev(7)]);
        expect(await queryEvents(store.db, { type: 'audit.head_key_rotated', limit: 5 })).toHaveLength(1);
        const alarms = await queryEvents(store.db, { type: 'audit.head_unsealed', limit: 5 });
        expect(alarms.map((e) => [e.data.seq, e.data.seal])).toEqual([[seq, 'invalid']]);
        expect(String(alarms[0]?.data.message)).toMatch(/previous master key mtest after the rotation to mnew was recorded/);
      });

      it('a wipe of the whole log (head back to the start) or of its newest events is on the record at the next append (second review)', async () => {
        await storeSink(store).record([ev(1), ev(2), ev(3)]);
        expect(notedHead()?.seq).toBe(3);
        // Everything deleted, the head set back to the empty log: no key needed for that state.
        await store.db.deleteFrom('audit_grant_spans').execute();
        await store.db.deleteFrom('audit_events').execute();
        await store.db.updateTable('audit_head').set({ seq: 0, hash: '0'.repeat(64), seal: null }).where('id', '=', 1).execute();
        expect(await verifyChain(store.db, { written: notedHead() })).toMatchObject({ ok: false, firstBad: { reason: 'truncated' } });
        await storeSink(store).record([ev(4)]);
        const found = await queryEvents(store.db, { type: 'audit.rollback_detected', limit: 5 });
        expect(found.map((e) => [e.seq, e.data.seq, e.data.headSeq])).toEqual([[1, 3, 0]]);
        // Rewritten at the noted seq: the same.
        await storeSink(store).record([ev(5)]);
        const at = notedHead()!;
        await store.db.updateTable('audit_events').set({ hash: 'f'.repeat(64) }).where('seq', '=', at.seq).execute();
        await append([ev(6)]);
        expect((await queryEvents(store.db, { type: 'audit.rollback_detected', limit: 5 })).map((e) => e.data.seq)).toEqual([3, at.seq]);
      });

      it('a rollback to an older head with its genuine seal fails against the newest head this process wrote', async () => {
        await seed(3);
        const old = await store.db.selectFrom('audit_head').select(['seq', 'hash', 'seal']).executeTakeFirstOrThrow();
        await storeSink(store).record([ev(4), ev(5)]);
        const written = notedHead();
        expect(written?.seq).toBe(5);
        // A transaction that appended and then rolled back wrote nothing: it is not noted.
        await expect(store.db.transaction().execute(async (tx) => {
          await appendEvents(tx, store.dialect, [ev(6)]);
          throw new Error('the state change failed');
        })).rejects.toThrow('the state change failed');
        expect(notedHead()).toEqual(written);
        // State transactions (inTx) note the head once they have committed.
        await inTx({ store, appendAudit: appendEvents } as unknown as AccessDeps, async (_tx, audit) => audit(ev(6)));
        expect(notedHead()?.seq).toBe(6);
        await store.db.deleteFrom('audit_events').where('seq', '=', 6).execute();
        await store.db.updateTable('audit_head').set({ seq: written!.seq, hash: written!.hash }).where('id', '=', 1).execute();
        await store.db.deleteFrom('audit_events').where('seq', '>', 3).execute();
        await store.db.updateTable('audit_head').set({ seq: old.seq, hash: old.hash, seal: old.seal }).where('id', '=', 1).execute();
        expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 3 }); // indistinguishable without memory
        expect(await verifyChain(store.db, { written })).toMatchObject({ ok: false, firstBad: { seq: 4, reason: 'truncated' } });
        expect((await verifyChain(store.db, { written })) as { message: string }).toMatchObject({ message: expect.stringMatching(/before event 5, which this server wrote/) });
      });
    });

    it('AuditBatcher retries a failing storeSink batch whole and drops nothing; a timer flushes small batches', async () => {
      const sink = storeSink(store);
      let failures = 2;
      const errors: unknown[] = [];
      const flaky = { record: (events: readonly AuditEventInput[]) => (failures-- > 0 ? Promise.reject(new Error('store down')) : sink.record(events)) };
      const b = new AuditBatcher(flaky, { maxDelayMs: 5, maxBatch: 4, onError: (e) => errors.push(e) });
      for (let i = 1; i <= 10; i++) b.add(ev(i));
      await expect.poll(() => b.pending, { timeout: 5000 }).toBe(0); // the timer and the retries, no drain
      expect(errors).toHaveLength(2);
      await b.drain();
      expect(await verifyChain(store.db)).toMatchObject({ ok: true, count: 10 });
      const rows = await store.db.selectFrom('audit_events').select(['actor', 'at']).orderBy('seq').execute();
      expect(rows).toEqual(Array.from({ length: 10 }, (_, i) => ({ actor: `u${i + 1}`, at: T0 + i + 1 })));
    });
  });
}
