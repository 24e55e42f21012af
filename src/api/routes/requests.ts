import type { Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { approveRequest, cancelRequest, createRequest, denyRequest } from '../../access/requests.js';
import { AppError, badRequest, notFound } from '../../domain/errors.js';
import { parseDuration } from '../../domain/duration.js';
import { isHolder } from '../../domain/principal.js';
import { getRequest, listRequests, type RequestRow } from '../../store/requests.js';
import type { RequestStatusCol } from '../../store/schema.js';
import { principalOf } from '../auth.js';
import type { ApiContext } from '../context.js';
import {
  ApproveBody, CreateRequestBody, DenyBody, ErrorBody, IdParams, ListRequestsQuery, RequestOutcomeView,
} from '../schemas.js';
import { grantView, requestView, requestViews } from '../views.js';
import { Type } from '@sinclair/typebox';

export function durationOrThrow(text: string | undefined, field: string): number | undefined {
  if (text === undefined) return undefined;
  const s = parseDuration(text);
  if (s === undefined) throw badRequest(`${field} ${JSON.stringify(text)} is not a duration (use e.g. 30m, 1h, 2d)`);
  return s;
}

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };

export function requestRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { deps } = ctx;
  const db = deps.store.db;
  const outcome = async (o: { request: RequestRow; grant?: Parameters<typeof grantView>[1] | undefined }) => ({
    request: await requestView(db, o.request),
    ...(o.grant ? { grant: await grantView(db, o.grant) } : {}),
  });

  app.post('/api/v1/requests', {
    schema: { tags: ['requests'], summary: 'Request access', body: CreateRequestBody, response: { 201: RequestOutcomeView, ...errors } },
  }, async (req, reply) => {
    const body = req.body as Static<typeof CreateRequestBody>;
    const principal = principalOf(req);
    const o = await createRequest(deps, principal, {
      resource: body.resource, role: body.role, durationSeconds: durationOrThrow(body.duration, 'duration'),
      reason: body.reason, ticket: body.ticket, startAt: body.startAt ? new Date(body.startAt) : undefined, breakGlass: body.breakGlass,
    });
    if (o.request.status === 'denied') {
      const view = await requestView(db, o.request);
      throw new AppError('policy_denied', `denied by policy: ${view.denialReasons.join('; ')}`, { requestId: o.request.id, reasons: view.denialReasons });
    }
    return reply.status(201).send(await outcome(o));
  });

  app.get('/api/v1/requests', {
    schema: { tags: ['requests'], summary: 'List requests: yours, and pending ones you may approve', querystring: ListRequestsQuery },
  }, async (req) => {
    const q = req.query as Static<typeof ListRequestsQuery>;
    const p = principalOf(req);
    const limit = q.limit ?? 100;
    const status = q.status as RequestStatusCol | undefined;
    let rows: RequestRow[];
    if (q.scope === 'all' && !p.isAdmin) throw new AppError('forbidden', 'scope=all is for admins');
    if (q.scope === 'all') {
      rows = await listRequests(db, { status, limit });
    } else {
      const mine = await listRequests(db, { requesterId: p.id, holderBinding: p.holderBinding ?? null, status, limit });
      const toDecide = q.scope === 'mine' || (q.status && q.status !== 'pending') ? [] :
        (await listRequests(db, { status: 'pending', limit: 1000 })).filter((r) =>
          r.requester_id !== p.id && (JSON.parse(r.approver_groups) as string[]).some((g) => p.groups.includes(g)));
      rows = [...mine, ...toDecide].sort((a, b) => b.created_at - a.created_at).slice(0, limit);
    }
    return { requests: await requestViews(db, rows) };
  });

  app.get('/api/v1/requests/:id', { schema: { tags: ['requests'], params: IdParams('req') } }, async (req) => {
    const { id } = req.params as { id: string };
    const p = principalOf(req);
    const row = await getRequest(db, id);
    const visible = row && (p.isAdmin || isHolder(p, { userId: row.requester_id, binding: row.holder_binding }) ||
      (JSON.parse(row.approver_groups) as string[]).some((g) => p.groups.includes(g)));
    if (!row || !visible) throw notFound(`no request ${id}`);
    return requestView(db, row);
  });

  app.post('/api/v1/requests/:id/approve', {
    schema: { tags: ['requests'], params: IdParams('req'), body: Type.Optional(ApproveBody), response: { 200: RequestOutcomeView, ...errors } },
  }, async (req) => {
    const { id } = req.params as { id: string };
    const body = (req.body ?? {}) as Static<typeof ApproveBody>;
    return outcome(await approveRequest(deps, principalOf(req), id, {
      durationSeconds: durationOrThrow(body.duration, 'duration'), comment: body.comment,
    }));
  });

  app.post('/api/v1/requests/:id/deny', {
    schema: { tags: ['requests'], params: IdParams('req'), body: DenyBody, response: { ...errors } },
  }, async (req) => {
    const { id } = req.params as { id: string };
    const body = req.body as Static<typeof DenyBody>;
    return requestView(db, await denyRequest(deps, principalOf(req), id, body.reason));
  });

  app.post('/api/v1/requests/:id/cancel', {
    schema: { tags: ['requests'], params: IdParams('req'), response: { ...errors } },
  }, async (req) => {
    const { id } = req.params as { id: string };
    return requestView(db, await cancelRequest(deps, principalOf(req), id));
  });
}
