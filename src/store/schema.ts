import type { Generated } from 'kysely';

/**
 * The state store's tables, shared by both dialects (SQLite and PostgreSQL).
 * Conventions: times are epoch milliseconds (INTEGER / BIGINT), JSON is stored as TEXT,
 * ids are prefixed random strings (req_..., grt_...).
 */
export interface DB {
  users: UsersTable;
  api_tokens: ApiTokensTable;
  requests: RequestsTable;
  approvals: ApprovalsTable;
  grants: GrantsTable;
  reviews: ReviewsTable;
  audit_events: AuditEventsTable;
  audit_head: AuditHeadTable;
  audit_grant_spans: AuditGrantSpansTable;
  policy_versions: PolicyVersionsTable;
  meta: MetaTable;
  used_nonces: UsedNoncesTable;
  mfa_totp: MfaTotpTable;
  mfa_recovery_codes: MfaRecoveryCodesTable;
  token_mfa: TokenMfaTable;
  web_sessions: WebSessionsTable;
  oidc_logins: OidcLoginsTable;
  cli_login_codes: CliLoginCodesTable;
  refresh_tokens: RefreshTokensTable;
  workload_tokens_seen: WorkloadTokensSeenTable;
}

export interface UsersTable {
  id: string;
  name: string; // unique
  kind: 'user' | 'workload';
  email: string | null;
  password_hash: string | null;
  groups: string; // JSON string[]
  attributes: string; // JSON Record<string,string>
  is_admin: number; // 0/1
  source: 'policy' | 'bootstrap' | 'oidc' | 'workload';
  disabled: number; // 0/1
  created_at: number;
  updated_at: number;
  /** 0005: SSO users: the provider identity (iss, sub) the account belongs to; null for others. */
  sso_issuer: string | null;
  sso_subject: string | null;
}

export interface ApiTokensTable {
  id: string;
  user_id: string;
  /** sha256 hex of the token; the token itself is never stored. */
  token_hash: string;
  name: string;
  created_at: number;
  expires_at: number | null;
  last_used_at: number | null;
  revoked_at: number | null;
}

export type RequestStatusCol = 'pending' | 'approved' | 'denied' | 'cancelled' | 'expired';

export interface RequestsTable {
  id: string;
  requester_id: string;
  resource: string;
  role: string;
  duration_s: number;
  reason: string;
  ticket: string | null;
  start_at: number | null;
  status: RequestStatusCol;
  /** 'new' | 'extension' (of grant extends_grant_id) | 'break_glass' */
  kind: 'new' | 'extension' | 'break_glass';
  extends_grant_id: string | null;
  decision: string; // JSON Decision
  rule: string | null;
  policy_version: string;
  approvals_required: number;
  approver_groups: string; // JSON string[]
  pending_expires_at: number | null;
  decided_at: number | null;
  decided_by: string | null;
  decision_note: string | null;
  grant_id: string | null;
  created_at: number;
  updated_at: number;
  /** 0004: a workload request's job (Principal.holderBinding); null for people. */
  holder_binding: string | null;
}

export interface ApprovalsTable {
  request_id: string;
  approver_id: string; // (request_id, approver_id) is the primary key: one vote per approver
  duration_s: number | null; // shortened duration, if the approver asked for one
  comment: string | null;
  at: number;
}

export type GrantStatusCol =
  | 'scheduled'
  | 'activating'
  | 'active'
  | 'revoking'
  | 'revoke_failed'
  | 'expired'
  | 'revoked';

export interface GrantsTable {
  id: string;
  request_id: string;
  user_id: string;
  resource: string;
  role: string;
  status: GrantStatusCol;
  /** The target principal (hp_...), chosen and recorded before it is created on the target. */
  principal: string;
  /** Encrypted secret (versioned envelope), recorded before it is set on the target. */
  secret_enc: string;
  duration_s: number;
  starts_at: number | null; // set at activation (or the scheduled start)
  expires_at: number | null;
  /** Why access ends/ended: 'expired' | 'revoked'; set when revocation starts. */
  end_reason: 'expired' | 'revoked' | null;
  ended_at: number | null;
  revoke_attempts: number;
  last_error: string | null;
  /** When the scheduler should next look at this grant (activation, expiry, retry). */
  due_at: number | null;
  /** Lease for claimed due work: which instance holds it and until when. */
  lease_owner: string | null;
  lease_until: number | null;
  created_at: number;
  updated_at: number;
  /** 0004: the job of a workload holding it, copied from its request; null for people. */
  holder_binding: string | null;
  /** 0007: since when the store's end has moved (an extension) and the target was not yet told. */
  target_pending_at: number | null;
}

export interface ReviewsTable {
  id: string;
  kind: 'break_glass';
  request_id: string;
  grant_id: string | null;
  status: 'open' | 'closed';
  opened_at: number;
  closed_at: number | null;
  closed_by: string | null;
  note: string | null;
}

export interface AuditEventsTable {
  seq: number; // 1, 2, 3 ... no gaps
  at: number;
  type: string;
  actor: string; // principal id/name, or 'system'
  request_id: string | null;
  grant_id: string | null;
  data: string; // canonical JSON, never a secret
  prev_hash: string;
  hash: string;
}

/** One row (id = 1): the chain's last seq and hash, updated in the same transaction. */
export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
  /** The head's seal (audit/head-seal.ts); null before the first sealed append. */
  seal: string | null;
}

/**
 * Where a grant's audit events are: every event with that grant_id has a seq within one of its
 * spans (which may hold other events too). Maintained by the appenders, one row per grant per
 * appended batch at most; not part of the hash chain (like an index, it only finds events).
 */
export interface AuditGrantSpansTable {
  grant_id: string;
  first_seq: number;
  last_seq: number;
}

export interface PolicyVersionsTable {
  version: string;
  source: string;
  loaded_at: number;
}

export interface UsedNoncesTable {
  nonce: string;
  expires_at: number;
}

export interface MetaTable {
  key: string;
  value: string;
}

// --- 0002_identity ---

export interface MfaTotpTable {
  user_id: string;
  /** Base32 TOTP secret sealed with the SecretBox (aad `totp:<user_id>`). */
  secret_enc: string;
  created_at: number;
  /** Null until the user proves the authenticator works with a first code. */
  confirmed_at: number | null;
  /** RFC 6238 time step of the last accepted code: codes at or before it are refused (no replay). */
  last_step: number | null;
}

export interface MfaRecoveryCodesTable {
  /** sha256 hex of the normalized code. */
  code_hash: string;
  user_id: string;
  created_at: number;
  used_at: number | null;
}

export interface TokenMfaTable {
  token_id: string;
  mfa_at: number;
}

export interface WebSessionsTable {
  id: string;
  user_id: string;
  /** sha256 hex of the cookie value. */
  session_hash: string;
  created_at: number;
  last_seen_at: number;
  /** Absolute end of the session. */
  expires_at: number;
  revoked_at: number | null;
  mfa_at: number | null;
}

export interface OidcLoginsTable {
  /** sha256 hex of the `state` sent to the provider. */
  state_hash: string;
  nonce: string;
  /** PKCE code verifier, sealed (aad `oidc:<state_hash>`). */
  verifier_enc: string;
  mode: 'web' | 'cli';
  /** CLI logins: the loopback URL to hand the result to (null: show a code to paste). */
  cli_redirect: string | null;
  /** CLI logins: base64url sha256 of the CLI's own verifier. */
  cli_challenge: string | null;
  created_at: number;
  expires_at: number;
  consumed_at: number | null;
}

export interface CliLoginCodesTable {
  code_hash: string;
  user_id: string;
  challenge: string;
  expires_at: number;
  used_at: number | null;
}

export interface RefreshTokensTable {
  id: string;
  user_id: string;
  token_hash: string;
  /** The access token issued with it (revoked with it). */
  access_token_id: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  revoked_at: number | null;
}

export interface WorkloadTokensSeenTable {
  token_hash: string;
  expires_at: number;
}

export type AuditEventRow = AuditEventsTable;
export type { Generated };
