import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { inTx } from '../../access/context.js';
import { requireConnectMfa } from '../../auth/connect-mfa.js';
import { holdsGrant, readGrant, revokeGrant } from '../../access/grants.js';
import { createRequest } from '../../access/requests.js';
import { AppError, conflict } from '../../domain/errors.js';
import { workloadJob } from '../../domain/principal.js';
import type { ConnectionInfo } from '../../providers/provider.js';
import { listGrants } from '../../store/grants.js';
import { principalOf } from '../auth.js';
import type { ApiContext } from '../context.js';
import { CredentialsQuery, CredentialsView, ErrorBody, ExtendBody, IdParams, ListGrantsQuery, RequestOutcomeView, RevokeBody } from '../schemas.js';
import { grantView, grantViews, requestView } from '../views.js';
import { durationOrThrow } from './requests.js';

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };

export function grantRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { deps } = ctx;
  const db = deps.store.db;

  app.get('/api/v1/grants', { schema: { tags: ['grants'], querystring: ListGrantsQuery } }, async (req) => {
    const q = req.query as Static<typeof ListGrantsQuery>;
    const p = principalOf(req);
    if (q.scope === 'all' && !p.isAdmin) throw new AppError('forbidden', 'scope=all is for admins');
    const rows = await listGrants(db, {
      userId: q.scope === 'all' ? undefined : p.id,
      holderBinding: q.scope === 'all' ? undefined : p.holderBinding ?? null,
      statuses: q.active ? ['scheduled', 'activating', 'active', 'revoking', 'revoke_failed'] : undefined,
      limit: q.limit ?? 100,
    });
    return { grants: await grantViews(db, rows) };
  });

  app.get('/api/v1/grants/:id', { schema: { tags: ['grants'], params: IdParams('grt') } }, async (req) => {
    const { id } = req.params as { id: string };
    return grantView(db, await readGrant(deps, principalOf(req), id));
  });

  app.post('/api/v1/grants/:id/revoke', {
    schema: { tags: ['grants'], params: IdParams('grt'), body: Type.Optional(RevokeBody), response: { ...errors } },
  }, async (req) => {
    const { id } = req.params as { id: string };
    const body = (req.body ?? {}) as Static<typeof RevokeBody>;
    return grantView(db, await revokeGrant(deps, principalOf(req), id, body.reason));
  });

  // An extension is a request for the same resource and role, decided by policy like any other.
  app.post('/api/v1/grants/:id/extend', {
    schema: { tags: ['grants'], params: IdParams('grt'), body: ExtendBody, response: { 201: RequestOutcomeView, ...errors } },
  }, async (req, reply) => {
    const { id } = req.params as { id: string };
    const body = req.body as Static<typeof ExtendBody>;
    const p = principalOf(req);
    const grant = await readGrant(deps, p, id);
    if (!holdsGrant(p, grant)) throw new AppError('forbidden', 'only the holder of a grant can ask to extend it');
    if (grant.status !== 'active') throw conflict(`grant ${id} is ${grant.status}: only an active grant can be extended`);
    const o = await createRequest(deps, p, {
      resource: grant.resource, role: grant.role, durationSeconds: durationOrThrow(body.by, 'by'), reason: body.reason, ticket: body.ticket,
    });
    if (o.request.status === 'denied') {
      const view = await requestView(db, o.request);
      throw new AppError('policy_denied', `denied by policy: ${view.denialReasons.join('; ')}`, { requestId: o.request.id, reasons: view.denialReasons });
    }
    return reply.status(201).send({ request: await requestView(db, o.request), ...(o.grant ? { grant: await grantView(db, o.grant) } : {}) });
  });

  /** The holder's credentials (only the holder: admins manage grants, they do not borrow them). */
  app.get('/api/v1/grants/:id/credentials', {
    schema: { tags: ['grants'], params: IdParams('grt'), querystring: CredentialsQuery, response: { 200: CredentialsView, ...errors } },
  }, async (req) => {
    const { id } = req.params as { id: string };
    const { via, reusable } = req.query as Static<typeof CredentialsQuery>;
    const p = principalOf(req);
    const grant = await readGrant(deps, p, id);
    if (!holdsGrant(p, grant)) throw new AppError('forbidden', 'credentials are shown only to the grant holder');
    if (grant.status !== 'active' || grant.expires_at === null) throw conflict(`grant ${id} is ${grant.status}: no credentials`);
    await requireConnectMfa(deps, p, grant.request_id);
    const viaGateway = via === 'gateway';
    let info: ConnectionInfo & { caPem?: string };
    if (viaGateway) {
      if (!ctx.gateway) throw new AppError('bad_request', 'the gateway is not enabled on this server');
      info = ctx.gateway.connectionFor(grant, p, { reusable: reusable === true });
    } else {
      const provider = deps.providers.get(grant.resource);
      if (!provider) throw new AppError('target_unavailable', `resource ${grant.resource} is not in the policy`);
      info = provider.connectionInfo(grant.principal, deps.sealer.open(grant.secret_enc, grant.id));
    }
    await inTx(deps, async (_tx, audit) => {
      audit({ type: 'grant.credentials_issued', actor: p.name, grantId: grant.id, requestId: grant.request_id, at: deps.clock.now(),
        data: { resource: grant.resource, viaGateway, reusable: reusable === true, clientAddress: req.ip, ...workloadJob(p) } });
    });
    return {
      grantId: grant.id, kind: info.kind, host: info.host, port: info.port, ...(info.database ? { database: info.database } : {}),
      user: info.user, password: info.password, dsn: info.dsn, env: { ...info.env }, expiresAt: new Date(grant.expires_at).toISOString(), viaGateway,
      ...(info.caPem !== undefined ? { caPem: info.caPem } : {}),
    };
  });
}
