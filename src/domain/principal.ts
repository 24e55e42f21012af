/** Who is acting: a person (local or SSO) or a workload (e.g. a CI job with an OIDC token). */
export interface Principal {
  readonly id: string;
  readonly kind: 'user' | 'workload';
  /** Login name (users) or a stable workload name. */
  readonly name: string;
  readonly email?: string | undefined;
  readonly groups: readonly string[];
  readonly isAdmin: boolean;
  /** Extra attributes conditions may look at (SSO claims, workload claims, department...). */
  readonly attributes: Readonly<Record<string, string>>;
  /** When this principal last passed an MFA check in this session, if ever (epoch ms). */
  readonly mfaAt?: number | undefined;
}
