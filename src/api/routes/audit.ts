import type { Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { PassThrough } from 'node:stream';
import { inTx } from '../../access/context.js';
import { auditSealKeyInUse, exportEvents, notedHeads, parseCheckpoint, previousAuditSealKeys, queryEvents, revealSealed, verifyChain } from '../../audit/index.js';
import { AppError, badRequest } from '../../domain/errors.js';
import { checkReason } from '../../policy/names.js';
import { requireAdmin } from '../auth.js';
import type { ApiContext } from '../context.js';
import { AuditExportQuery, AuditQueryString, AuditRevealBody, AuditRevealParams, AuditVerifyQuery } from '../schemas.js';

/** How recent an enrolled admin's MFA must be to reveal sealed text (as for new recovery codes). */
const REVEAL_MFA_FRESH_MS = 5 * 60_000;

const ms = (t: string | undefined) => (t === undefined ? undefined : new Date(t).getTime());

/** The audit log is for admins (and auditors, who are admins with read-only intent). */
export function auditRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const db = ctx.deps.store.db;

  app.get('/api/v1/audit', { schema: { tags: ['audit'], querystring: AuditQueryString } }, async (req) => {
    requireAdmin(req);
    const q = req.query as Static<typeof AuditQueryString>;
    const typeFilter = q.type?.endsWith('*') ? { typePrefix: q.type.slice(0, -1) } : q.type ? { type: q.type } : {};
    const events = await queryEvents(db, {
      since: ms(q.since), until: ms(q.until), ...typeFilter, grantId: q.grant, requestId: q.request,
      afterSeq: q.afterSeq, limit: q.limit ?? 100,
    });
    return { events: events.map((e) => ({ ...e, at: new Date(e.at).toISOString() })) };
  });

  app.get('/api/v1/audit/verify', { schema: { tags: ['audit'], querystring: AuditVerifyQuery } }, async (req) => {
    requireAdmin(req);
    const { checkpoint } = req.query as Static<typeof AuditVerifyQuery>;
    // The newest heads this server wrote must still be there, as written (head-seal.ts).
    const written = notedHeads();
    if (checkpoint === undefined) return verifyChain(db, { written });
    const cp = parseCheckpoint(checkpoint);
    if (!cp) throw badRequest('checkpoint must be SEQ:HASH (a positive seq, the 64 hex digits of its hash)');
    return verifyChain(db, { checkpoint: cp, written });
  });

  // Secrets found in audited SQL are sealed, not blanked (src/audit/seal.ts): opening them is a
  // person's act (an admin, with a fresh MFA code when enrolled) with a stated reason, on the record
  // before anything is shown.
  app.post('/api/v1/audit/:seq/reveal', { schema: { tags: ['audit'], params: AuditRevealParams, body: AuditRevealBody } }, async (req) => {
    const p = requireAdmin(req);
    if (p.kind !== 'user') throw new AppError('forbidden', 'only a person can reveal sealed audit text');
    const seq = Number((req.params as Static<typeof AuditRevealParams>).seq);
    if (!Number.isSafeInteger(seq)) throw badRequest('seq is too large');
    const { reason } = req.body as Static<typeof AuditRevealBody>;
    const bad = checkReason(reason);
    if (bad) throw badRequest(bad);
    const now = ctx.deps.clock.now();
    const enrolled = await db.selectFrom('mfa_totp').select('user_id').where('user_id', '=', p.id).where('confirmed_at', 'is not', null).executeTakeFirst();
    if (enrolled && (p.mfaAt === undefined || now.getTime() - p.mfaAt > REVEAL_MFA_FRESH_MS)) {
      throw new AppError('mfa_required', 'send a fresh MFA code (X-Hallpass-MFA) to reveal sealed audit text', { freshnessSeconds: REVEAL_MFA_FRESH_MS / 1000 });
    }
    const key = auditSealKeyInUse();
    if (!key) throw new AppError('bad_request', 'this server has no audit seal key');
    const [event] = await queryEvents(db, { afterSeq: seq - 1, limit: 1 });
    if (event === undefined || event.seq !== seq) throw new AppError('not_found', `no audit event ${seq}`);
    // Spans sealed before a master key rotation open with the previous keys the server was given.
    const r = revealSealed(event.data, key, previousAuditSealKeys());
    await inTx(ctx.deps, async (_tx, audit) => {
      audit({
        type: 'audit.revealed', actor: p.name, at: now, grantId: event.grantId ?? undefined, requestId: event.requestId ?? undefined,
        data: { seq, reason, opened: r.opened, failed: r.failed, mfa: enrolled !== undefined, clientAddress: req.ip },
      });
    });
    return { event: { ...event, at: new Date(event.at).toISOString(), data: r.value }, opened: r.opened, failed: r.failed };
  });

  app.get('/api/v1/audit/export', { schema: { tags: ['audit'], querystring: AuditExportQuery } }, async (req, reply) => {
    requireAdmin(req);
    const q = req.query as Static<typeof AuditExportQuery>;
    const typeFilter = q.type?.endsWith('*') ? { typePrefix: q.type.slice(0, -1) } : q.type ? { type: q.type } : {};
    const out = new PassThrough();
    void reply.header('content-type', q.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson').send(out);
    try {
      await exportEvents(db, q.format, async (chunk) => {
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', r));
      }, { since: ms(q.since), until: ms(q.until), ...typeFilter, grantId: q.grant, requestId: q.request });
    } finally {
      out.end();
    }
    return reply;
  });
}
