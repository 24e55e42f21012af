import type { SecretRef } from '../providers/provider.js';
import type { Principal } from '../domain/principal.js';

/** A loaded, validated policy. Immutable; a new file gives a new Policy with a new version. */
export interface Policy {
  /** sha256 (hex) of the file's bytes: recorded on every request decided under it. */
  readonly version: string;
  readonly source: string; // file path it came from
  readonly resources: ReadonlyMap<string, ResourceDef>;
  readonly users: ReadonlyMap<string, UserDef>;
  readonly groups: ReadonlyMap<string, GroupDef>;
  readonly rules: readonly RuleDef[];
  readonly breakGlass: BreakGlassDef | undefined;
  readonly settings: PolicySettings;
}

export interface PolicySettings {
  /** Default seconds a pending request waits for approval before it expires. */
  readonly pendingTtlSeconds: number;
}

export interface ResourceDef {
  readonly name: string;
  readonly kind: string;
  readonly description?: string | undefined;
  readonly labels: Readonly<Record<string, string>>;
  /** Kind-specific, validated by the provider's connectionSchema. */
  readonly connection: unknown;
  /** How the kind's gateway treats sessions on this resource. */
  readonly gateway: ResourceGatewaySettings;
  readonly roles: ReadonlyMap<string, RoleDef>;
}

export interface ResourceGatewaySettings {
  /** Store Bind parameter values in gateway statement audit events (default false: they may hold PII). */
  readonly storeParameters: boolean;
}

export interface RoleDef {
  readonly name: string;
  readonly description?: string | undefined;
  /** Kind-specific, validated by the provider's privilegesSchema. */
  readonly privileges: unknown;
  /** Gateway guardrails (statement classes denied for this role). */
  readonly guardrails?: readonly string[] | undefined;
  /** Read-only at the target where the kind supports it (default_transaction_read_only). */
  readonly readOnly: boolean;
}

export interface UserDef {
  readonly name: string;
  readonly email?: string | undefined;
  /** `scrypt$N$r$p$salt$hash` (see src/auth/password.ts); absent for SSO-only users. */
  readonly passwordHash?: string | undefined;
  readonly groups: readonly string[];
  readonly admin: boolean;
  readonly attributes: Readonly<Record<string, string>>;
}

export interface GroupDef {
  readonly name: string;
  readonly description?: string | undefined;
}

export type Approval =
  | { readonly kind: 'auto' }
  | { readonly kind: 'approvals'; readonly count: number; readonly from: readonly string[] };

export interface MfaRequirement {
  readonly request: boolean;
  readonly approve: boolean;
  readonly connect: boolean;
  readonly freshnessSeconds: number;
}

export interface RuleDef {
  readonly name: string;
  /** 1-based line of the rule in the policy file, for messages. */
  readonly line: number;
  readonly who: { readonly users: readonly string[]; readonly groups: readonly string[]; readonly workloads: readonly string[] };
  readonly resources: { readonly names: readonly string[]; readonly labels: Readonly<Record<string, string>> };
  readonly roles: readonly string[];
  readonly defaultDurationSeconds: number;
  readonly maxDurationSeconds: number;
  readonly approval: Approval;
  /** CEL source, compiled at load. */
  readonly when?: string | undefined;
  readonly reasonRequired: boolean;
  readonly ticketPattern?: string | undefined;
  readonly pendingTtlSeconds: number;
  readonly mfa: MfaRequirement;
}

export interface BreakGlassDef {
  readonly groups: readonly string[];
  readonly maxDurationSeconds: number;
}

/** What the evaluator is asked. */
export interface DecisionInput {
  readonly principal: Principal;
  readonly resource: string;
  readonly role: string;
  /** Requested duration in seconds; undefined = the rule's default. */
  readonly durationSeconds?: number | undefined;
  readonly reason?: string | undefined;
  readonly ticket?: string | undefined;
  readonly breakGlass?: boolean | undefined;
  readonly now: Date;
  /**
   * Set when the request extends a grant the requester holds: its current window (start to
   * end, in seconds). The window after the extension (this plus the duration) must fit the max.
   */
  readonly extending?: { readonly windowSeconds: number } | undefined;
}

/** The evaluator's answer: a value, never an exception for a "no". */
export type Decision =
  | {
      readonly kind: 'auto_approved';
      readonly rule: string;
      readonly durationSeconds: number;
      readonly mfa: MfaRequirement;
    }
  | {
      readonly kind: 'needs_approval';
      readonly rule: string;
      readonly durationSeconds: number;
      readonly approvals: number;
      readonly approverGroups: readonly string[];
      readonly pendingTtlSeconds: number;
      readonly mfa: MfaRequirement;
    }
  | {
      readonly kind: 'break_glass';
      readonly durationSeconds: number;
    }
  | { readonly kind: 'denied'; readonly reasons: readonly string[] };

export type { SecretRef };
