import { Type, type Static } from '@sinclair/typebox';
import { MAX_REASON_LENGTH, MAX_TICKET_LENGTH, UNSAFE_TEXT_CHAR, VISIBLE_CHAR } from '../policy/names.js';

/**
 * The HTTP contract. These schemas validate every request at the edge AND produce
 * /openapi.json: there is no second, hand-written description to drift.
 */
const Name = Type.String({ pattern: '^[a-z][a-z0-9_-]{0,62}$', description: 'resource / role name' });
const Id = (prefix: string) => Type.String({ pattern: `^${prefix}_[0-9a-z]{16}$` });
const Duration = Type.String({ pattern: '^(?:\\d+d)?(?:\\d+h)?(?:\\d+m)?(?:\\d+s)?$', minLength: 2, maxLength: 32, description: 'e.g. 30m, 1h, 1h30m, 2d' });
// Free text: no UNSAFE_TEXT_CHAR (controls, tabs and newlines included, bidi marks,
// invisible characters), which could make a reason or comment read differently in a terminal or a
// review (as checkReason in src/policy/names.ts); and something visible in it.
const Text = (max: number) => Type.String({
  minLength: 1, maxLength: max, pattern: `^(?=[\\s\\S]*${VISIBLE_CHAR})(?:(?!${UNSAFE_TEXT_CHAR})[\\s\\S])*$`,
  description: 'must be visible text without control characters, line breaks, tabs, or bidirectional and invisible marks',
});
// RFC 3339 allows a leap second (:60), which JavaScript's Date cannot hold: refused, not an invalid time.
const Time = Type.String({ format: 'date-time', pattern: '^\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}:[0-5]\\d', description: 'must be an RFC 3339 time (seconds 00-59)' });
// Tickets are ids (OPS-123): printable ASCII, no spaces (as src/policy/names.ts checkTicket).
const Ticket = Type.String({ minLength: 1, maxLength: MAX_TICKET_LENGTH, pattern: '^[!-~]+$' });
const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

export const ErrorBody = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String(), details: Type.Optional(Type.Record(Type.String(), Type.Unknown())) }),
}, { $id: 'Error' });

export const IdParams = (prefix: string) => Type.Object({ id: Id(prefix) }, { additionalProperties: false });

export const CreateRequestBody = Type.Object({
  resource: Name,
  role: Name,
  duration: Type.Optional(Duration),
  reason: Text(MAX_REASON_LENGTH),
  ticket: Type.Optional(Ticket),
  startAt: Type.Optional(Time),
  breakGlass: Type.Optional(Type.Boolean()),
}, { additionalProperties: false });
export type CreateRequestBody = Static<typeof CreateRequestBody>;

export const ApproveBody = Type.Object({
  duration: Type.Optional(Duration),
  comment: Type.Optional(Text(MAX_REASON_LENGTH)),
}, { additionalProperties: false });
export const DenyBody = Type.Object({ reason: Text(MAX_REASON_LENGTH) }, { additionalProperties: false });
export const ExtendBody = Type.Object({
  by: Duration, reason: Text(MAX_REASON_LENGTH), ticket: Type.Optional(Ticket),
}, { additionalProperties: false });
export const RevokeBody = Type.Object({ reason: Type.Optional(Text(MAX_REASON_LENGTH)) }, { additionalProperties: false });
export const CloseReviewBody = Type.Object({ note: Text(MAX_REASON_LENGTH) }, { additionalProperties: false });
export const LoginBody = Type.Object({
  // No control characters: a name is echoed into the audit log and from there to terminals.
  username: Type.String({ minLength: 1, maxLength: 64, pattern: '^[^\\u0000-\\u001f\\u007f-\\u009f]+$' }),
  password: Type.String({ minLength: 1, maxLength: 1024 }),
  totp: Type.Optional(Type.String({ minLength: 6, maxLength: 32, description: 'a 6-digit TOTP code or a recovery code (each works once)' })),
}, { additionalProperties: false });

export const ApprovalView = Type.Object({
  approver: Type.String(), at: Time, duration: Nullable(Type.String()), comment: Nullable(Type.String()),
});

export const RequestView = Type.Object({
  id: Type.String(),
  requester: Type.String(),
  resource: Type.String(),
  role: Type.String(),
  duration: Type.String(),
  durationSeconds: Type.Integer(),
  reason: Type.String(),
  ticket: Nullable(Type.String()),
  startAt: Nullable(Time),
  status: Type.Union(['pending', 'approved', 'denied', 'cancelled', 'expired'].map((s) => Type.Literal(s))),
  kind: Type.Union(['new', 'extension', 'break_glass'].map((s) => Type.Literal(s))),
  extendsGrantId: Nullable(Type.String()),
  rule: Nullable(Type.String()),
  policyVersion: Type.String(),
  approvalsRequired: Type.Integer(),
  approverGroups: Type.Array(Type.String()),
  approvals: Type.Array(ApprovalView),
  pendingExpiresAt: Nullable(Time),
  decidedAt: Nullable(Time),
  decisionNote: Nullable(Type.String()),
  denialReasons: Type.Array(Type.String()),
  grantId: Nullable(Type.String()),
  createdAt: Time,
}, { $id: 'Request' });

export const GrantView = Type.Object({
  id: Type.String(),
  requestId: Type.String(),
  user: Type.String(),
  resource: Type.String(),
  role: Type.String(),
  status: Type.Union(['scheduled', 'activating', 'active', 'revoking', 'revoke_failed', 'expired', 'revoked'].map((s) => Type.Literal(s))),
  principal: Type.String({ description: 'the login name on the target' }),
  startsAt: Nullable(Time),
  expiresAt: Nullable(Time),
  endedAt: Nullable(Time),
  endReason: Nullable(Type.String()),
  revokeAttempts: Type.Integer(),
  lastError: Nullable(Type.String()),
  createdAt: Time,
}, { $id: 'Grant' });

export const RequestOutcomeView = Type.Object({ request: Type.Ref('Request'), grant: Type.Optional(Type.Ref('Grant')) });

export const CredentialsView = Type.Object({
  grantId: Type.String(), kind: Type.String(), host: Type.String(), port: Type.Integer(), database: Type.Optional(Type.String()),
  user: Type.String(), password: Type.String(), dsn: Type.String(), env: Type.Record(Type.String(), Type.String()),
  expiresAt: Time, viaGateway: Type.Boolean(),
  caPem: Type.Optional(Type.String({
    description: 'gateway only: PEM of the CA (or self-signed certificate) to verify the gateway with; save it and connect with sslmode=verify-full sslrootcert=FILE (dsn and env say verify-full but cannot name a file on your machine)',
  })),
});

export const CredentialsQuery = Type.Object({
  via: Type.Optional(Type.Union([Type.Literal('direct'), Type.Literal('gateway')])),
  reusable: Type.Optional(Type.Boolean({ description: 'gateway only: a token several connections may use until it expires (pools, pgbench -C); default single-use' })),
}, { additionalProperties: false });

export const ListRequestsQuery = Type.Object({
  status: Type.Optional(Type.Union(['pending', 'approved', 'denied', 'cancelled', 'expired'].map((s) => Type.Literal(s)))),
  scope: Type.Optional(Type.Union([Type.Literal('mine'), Type.Literal('all')])),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
}, { additionalProperties: false });

export const ListGrantsQuery = Type.Object({
  active: Type.Optional(Type.Boolean()),
  scope: Type.Optional(Type.Union([Type.Literal('mine'), Type.Literal('all')])),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
}, { additionalProperties: false });

export const AuditQueryString = Type.Object({
  since: Type.Optional(Time),
  until: Type.Optional(Time),
  type: Type.Optional(Type.String({ pattern: '^[a-z_.*]{1,64}$' })),
  grant: Type.Optional(Id('grt')),
  request: Type.Optional(Id('req')),
  afterSeq: Type.Optional(Type.Integer({ minimum: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 5000 })),
}, { additionalProperties: false });

export const AuditExportQuery = Type.Object({
  format: Type.Union([Type.Literal('jsonl'), Type.Literal('csv')]),
  since: Type.Optional(Time),
  until: Type.Optional(Time),
  type: Type.Optional(Type.String({ pattern: '^[a-z_.*]{1,64}$' })),
  grant: Type.Optional(Id('grt')),
  request: Type.Optional(Id('req')),
}, { additionalProperties: false });

/** `checkpoint=SEQ:HASH`: a head recorded earlier (audit verify printed it); the log must still hold it. */
export const AuditVerifyQuery = Type.Object({
  checkpoint: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,15}:[0-9a-f]{64}$' })),
}, { additionalProperties: false });

/** `POST /audit/{seq}/reveal`: which event, and why its sealed SQL secrets must be opened (audited). */
export const AuditRevealParams = Type.Object({ seq: Type.String({ pattern: '^[1-9][0-9]{0,15}$' }) }, { additionalProperties: false });
export const AuditRevealBody = Type.Object({ reason: Text(MAX_REASON_LENGTH) }, { additionalProperties: false });

export const AuditEventView = Type.Object({
  seq: Type.Integer(), at: Time, type: Type.String(), actor: Type.String(), requestId: Nullable(Type.String()),
  grantId: Nullable(Type.String()), data: Type.Record(Type.String(), Type.Unknown()), prevHash: Type.String(), hash: Type.String(),
});

export const ResourceView = Type.Object({
  name: Type.String(), kind: Type.String(), description: Nullable(Type.String()), labels: Type.Record(Type.String(), Type.String()),
  roles: Type.Array(Type.Object({ name: Type.String(), description: Nullable(Type.String()), readOnly: Type.Boolean() })),
});

export const MeView = Type.Object({
  id: Type.String(), name: Type.String(), kind: Type.String(), email: Nullable(Type.String()), groups: Type.Array(Type.String()), isAdmin: Type.Boolean(),
});

export const ReviewView = Type.Object({
  id: Type.String(), kind: Type.String(), requestId: Type.String(), grantId: Nullable(Type.String()), status: Type.String(),
  openedAt: Time, closedAt: Nullable(Time), closedBy: Nullable(Type.String()), note: Nullable(Type.String()),
});
