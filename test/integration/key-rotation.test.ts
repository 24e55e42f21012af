import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inTx } from '../../src/access/context.js';
import { totpAt } from '../../src/auth/totp.js';
import { envelopeKey, secretBoxFor } from '../../src/secrets/index.js';
import { startTestHallpass, type TestHallpass } from '../support/hallpass.js';
import { startPgTarget, type PgTarget } from '../support/pg-target.js';

/**
 * A master key rotation (docs/secrets.md): the server restarted with a new key and the old one in
 * HALLPASS_PREVIOUS_MASTER_KEYS keeps every secret it had (grant credentials, TOTP secrets, SQL
 * sealed in the audit log) and its audit chain's seal, re-seals the stored secrets under the new
 * key, and needs the old key no longer for them. Without the old key the same restart loses them.
 */
describe('master key rotation', () => {
  let target: PgTarget;
  const dirs: string[] = [];
  beforeAll(async () => {
    target = await startPgTarget();
  });
  afterAll(async () => {
    await target?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const keyA = randomBytes(32).toString('hex');
  const keyB = randomBytes(32).toString('base64');
  const TOTP_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

  /** A server on `dataDir` with a grant for alice, her TOTP enrolment and a sealed SQL span, under keyA. */
  async function seeded(): Promise<{ dataDir: string; grantId: string; password: string; aliceId: string; sealedSeq: number }> {
    const dataDir = mkdtempSync(join(tmpdir(), 'hp-rotate-'));
    dirs.push(dataDir);
    const t = await startTestHallpass({ target, dataDir, masterKey: keyA });
    try {
      const alice = await t.token('alice');
      const r = await t.api(alice, 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '30m', reason: 'rotation test' });
      expect(r.status).toBe(201);
      const grantId = r.body.grant.id as string;
      const creds = await t.api(alice, 'GET', `/api/v1/grants/${grantId}/credentials`);
      expect(creds.status).toBe(200);
      const aliceId = (await t.principal('alice')).id;
      // Enrolled as src/auth/mfa.ts enrols (sealed for `totp:<user id>`), confirmed.
      await t.h.deps.store.db.insertInto('mfa_totp').values({
        user_id: aliceId, secret_enc: t.h.deps.sealer.seal(TOTP_SECRET, `totp:${aliceId}`), created_at: Date.now(), confirmed_at: Date.now(), last_step: null,
      }).execute();
      // A statement whose password the audit log seals (redact.ts), as the gateway records one.
      await inTx(t.h.deps, async (_tx, audit) => {
        audit({ type: 'gateway.query', actor: 'alice', at: Date.now(), grantId, data: { sql: "alter role app password 'rotate-me-0123'" } });
      });
      const [ev] = (await t.api(t.adminToken, 'GET', '/api/v1/audit?type=gateway.query')).body.events as Array<{ seq: number; data: { sql: string } }>;
      expect(ev!.data.sql).not.toContain('rotate-me-0123');
      return { dataDir, grantId, password: creds.body.password as string, aliceId, sealedSeq: ev!.seq };
    } finally {
      await t.close();
    }
  }

  async function restart(dataDir: string, masterKey: string, previousMasterKeys?: string): Promise<TestHallpass> {
    return startTestHallpass({ target, dataDir, masterKey, ...(previousMasterKeys ? { previousMasterKeys } : {}) });
  }

  async function typed(t: TestHallpass, type: string): Promise<Array<{ seq: number; data: Record<string, unknown> }>> {
    return (await t.api(t.adminToken, 'GET', `/api/v1/audit?type=${type}`)).body.events;
  }

  it('keeps and re-seals every secret, records the rotation on the chain, and then needs the old key no longer', async () => {
    const s = await seeded();
    const newId = envelopeKey(Buffer.from(keyB, 'base64')).id;
    // A row whose envelope is no envelope at all: counted, left as it is, and no reason not to start.
    const raw = new Database(join(s.dataDir, 'hallpass.db'));
    raw.exec(`create temp table broken as select * from grants; update broken set id = 'grt_broken', principal = 'hp_broken', secret_enc = 'not-an-envelope';
      insert into grants select * from broken`);
    raw.close();

    const t2 = await restart(s.dataDir, keyB, keyA);
    try {
      const alice = await t2.token('alice');
      expect((await t2.api(alice, 'GET', `/api/v1/grants/${s.grantId}/credentials`)).body.password).toBe(s.password);
      const db = t2.h.deps.store.db;
      const grant = await db.selectFrom('grants').select('secret_enc').where('id', '=', s.grantId).executeTakeFirstOrThrow();
      const totp = await db.selectFrom('mfa_totp').select('secret_enc').where('user_id', '=', s.aliceId).executeTakeFirstOrThrow();
      // Re-sealed under the new key: it alone opens them now.
      const onlyB = secretBoxFor(Buffer.from(keyB, 'base64'));
      expect(onlyB.open(grant.secret_enc, s.grantId)).toBe(s.password);
      expect(onlyB.open(totp.secret_enc, `totp:${s.aliceId}`)).toBe(TOTP_SECRET);
      expect((await typed(t2, 'secrets.resealed')).map((e) => [e.data.what, e.data.count, e.data.sealedBy]))
        .toEqual(expect.arrayContaining([['grants', 1, newId], ['totp', 1, newId]]));
      expect((await db.selectFrom('grants').select('secret_enc').where('id', '=', 'grt_broken').executeTakeFirstOrThrow()).secret_enc).toBe('not-an-envelope');
      // The chain's head, sealed by the old key, is genuine: a rotation on the record, no alarm.
      expect(await typed(t2, 'audit.head_unsealed')).toEqual([]);
      expect(await typed(t2, 'audit.head_key_rotated')).toHaveLength(1);
      expect((await t2.api(t2.adminToken, 'GET', '/api/v1/audit/verify')).body).toMatchObject({ ok: true });
      // SQL sealed under the old key still opens with the audited reveal.
      const rev = await t2.api(t2.adminToken, 'POST', `/api/v1/audit/${s.sealedSeq}/reveal`, { reason: 'rotation check' });
      expect(rev.status).toBe(200);
      expect(rev.body).toMatchObject({ opened: 1, failed: 0 });
      expect(rev.body.event.data.sql).toContain('rotate-me-0123');
    } finally {
      await t2.close();
    }

    // The old key dropped: what was re-sealed needs it no longer.
    const t3 = await restart(s.dataDir, keyB);
    try {
      const alice = await t3.token('alice');
      expect((await t3.api(alice, 'GET', `/api/v1/grants/${s.grantId}/credentials`)).body.password).toBe(s.password);
      const step = await t3.api(alice, 'POST', '/api/v1/auth/mfa/verify', { code: await totpAt(TOTP_SECRET, Date.now()) });
      expect(step.status, JSON.stringify(step.body)).toBe(200);
      expect((await t3.api(t3.adminToken, 'GET', '/api/v1/audit/verify')).body).toMatchObject({ ok: true });
      expect(await typed(t3, 'audit.head_key_rotated')).toHaveLength(1);
      expect(await typed(t3, 'audit.head_unsealed')).toEqual([]);
      // The audit log is append-only: its old spans stay under the old key, which opening them takes.
      expect((await t3.api(t3.adminToken, 'POST', `/api/v1/audit/${s.sealedSeq}/reveal`, { reason: 'rotation check' })).body).toMatchObject({ opened: 0, failed: 1 });
    } finally {
      await t3.close();
    }
  });

  it('without the old key the same restart cannot open the credentials and raises the head alarm (what the previous keys prevent)', async () => {
    const s = await seeded();
    const t = await restart(s.dataDir, keyB);
    try {
      const creds = await t.api(await t.token('alice'), 'GET', `/api/v1/grants/${s.grantId}/credentials`);
      expect(creds.status).toBeGreaterThanOrEqual(400);
      expect(JSON.stringify(creds.body)).not.toContain(s.password);
      const alarms = await typed(t, 'audit.head_unsealed');
      expect(alarms.map((e) => e.data.seal)).toEqual(['invalid']);
    } finally {
      await t.close();
    }
  });
});
