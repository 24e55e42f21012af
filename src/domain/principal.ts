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
  /**
   * Workloads only: which job this is (a hash of its verified token's issuer, subject and
   * identity claims). Many jobs share one workload name and user row; requests and grants are
   * bound to the job that made them. Undefined for people.
   */
  readonly holderBinding?: string | undefined;
}

/**
 * Whether `p` owns a request or grant recorded for `userId` under `binding`: the same user and,
 * for a workload, the same job (a person's rows have no binding, and a person has none).
 */
export function isHolder(p: Principal, owner: { readonly userId: string; readonly binding: string | null }): boolean {
  return owner.userId === p.id && owner.binding === (p.holderBinding ?? null);
}

/** For audit events: which job of a workload acted (its token's subject and ref); nothing for people. */
export function workloadJob(p: Principal): { workloadSubject?: string | null; workloadRef?: string | null } {
  if (p.kind !== 'workload') return {};
  return { workloadSubject: p.attributes.sub ?? null, workloadRef: p.attributes.ref ?? null };
}
