import type { Clock } from '../domain/clock.js';
import { noteAppended } from '../audit/head-seal.js';
import type { Policy } from '../policy/types.js';
import type { Provider } from '../providers/provider.js';
import type { Dialect, StoreConnection, Tx } from '../store/db.js';

/** One audit event as the access layer records it (the audit module hashes and chains it). */
export interface AuditEvent {
  type: string;
  actor: string;
  requestId?: string | undefined;
  grantId?: string | undefined;
  data?: Record<string, unknown> | undefined;
  at: Date | number;
}

/** Appends events inside the caller's transaction: the state change and its record commit together. */
/** Appends inside the caller's transaction; returns the rows (their seq and hash at least). */
export type AppendAudit = (tx: Tx, dialect: Dialect, events: AuditEvent[]) => Promise<ReadonlyArray<{ readonly seq: number; readonly hash: string; readonly type: string }>>;

/** Encrypts issued credentials at rest; `aad` binds a ciphertext to its grant. */
export interface SecretSealer {
  seal(plaintext: string, aad: string): string;
  open(envelope: string, aad: string): string;
}

/** Providers by resource name, built from the current policy. */
export interface ProviderLookup {
  get(resource: string): Provider | undefined;
}

/** What happened to a grant, for listeners such as the gateway (which cuts live sessions). */
export type GrantEvent =
  | { type: 'ended'; grantId: string; resource: string; reason: 'expired' | 'revoked'; at: number }
  | { type: 'extended'; grantId: string; resource: string; expiresAt: number };

export interface GrantEventBus {
  publish(ev: GrantEvent): Promise<void>;
  subscribe(fn: (ev: GrantEvent) => void): () => void;
  /** `fn` runs after the bus was cut off and is back: events sent meanwhile may have been missed. */
  onReconnect(fn: () => void): () => void;
}

export interface AccessMetrics {
  expiryLagSeconds(seconds: number): void;
  revokeFailure(resource: string): void;
  grantActivated(): void;
}

export interface AccessDeps {
  readonly store: StoreConnection;
  readonly clock: Clock;
  readonly policy: () => Policy;
  readonly providers: ProviderLookup;
  readonly sealer: SecretSealer;
  readonly appendAudit: AppendAudit;
  readonly events: GrantEventBus;
  readonly metrics: AccessMetrics;
  /** Stable per instance: the owner recorded on leased due work. */
  readonly instanceId: string;
  /** Called when new due work exists earlier than the scheduler may expect. */
  readonly wake: (dueAt: number) => void;
  /** How long a lease on due work lasts before another instance may take it over. */
  readonly leaseMs: number;
}

/** Runs `fn` in a transaction, with an `audit` helper bound to it. */
export async function inTx<T>(
  deps: AccessDeps,
  fn: (tx: Tx, audit: (...events: AuditEvent[]) => void) => Promise<T>,
): Promise<T> {
  let appended: ReadonlyArray<{ readonly seq: number; readonly hash: string; readonly type: string }> = [];
  const result = await deps.store.db.transaction().execute(async (tx) => {
    const pending: AuditEvent[] = [];
    const r = await fn(tx, (...events) => {
      pending.push(...events);
    });
    if (pending.length > 0) appended = await deps.appendAudit(tx, deps.store.dialect, pending);
    return r;
  });
  // Only a committed head is one this process wrote (a rolled-back one never was: head-seal.ts).
  noteAppended(appended);
  return result;
}
