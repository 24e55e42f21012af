import type { AuditEventInput } from './types.js';

/** Where batched audit events go (see AuditBatcher); storeSink is the hash chain's. */
export interface AuditSink<E extends AuditEventInput = AuditEventInput> {
  /** Append events durably, in order. Called with batches; a rejection is retried (same batch). */
  record(events: readonly E[]): Promise<void>;
}
