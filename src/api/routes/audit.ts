import type { Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { PassThrough } from 'node:stream';
import { exportEvents, parseCheckpoint, queryEvents, verifyChain } from '../../audit/index.js';
import { badRequest } from '../../domain/errors.js';
import { requireAdmin } from '../auth.js';
import type { ApiContext } from '../context.js';
import { AuditExportQuery, AuditQueryString, AuditVerifyQuery } from '../schemas.js';

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
    if (checkpoint === undefined) return verifyChain(db);
    const cp = parseCheckpoint(checkpoint);
    if (!cp) throw badRequest('checkpoint must be SEQ:HASH (a positive seq, the 64 hex digits of its hash)');
    return verifyChain(db, { checkpoint: cp });
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
