import type { Static } from '@sinclair/typebox';
import type {
  AuditEventView, CredentialsView, GrantView, MeView, RequestView, ResourceView, ReviewView,
} from '../api/schemas.js';

/** The API's response shapes, derived from the schemas that produce them (types only: no server code is loaded). */
export type Request = Static<typeof RequestView>;
export type Grant = Static<typeof GrantView>;
export type Credentials = Static<typeof CredentialsView>;
export type AuditEvent = Static<typeof AuditEventView>;
export type Resource = Static<typeof ResourceView>;
export type Me = Static<typeof MeView>;
export type Review = Static<typeof ReviewView>;
export interface RequestOutcome {
  request: Request;
  grant?: Grant;
}
export type VerifyOutcome =
  | { ok: true; count: number; headSeq: number; headHash: string }
  | { ok: false; count: number; firstBad: { seq: number; reason: string }; message: string };
