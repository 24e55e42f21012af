import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { resolve, join } from 'node:path';
import type { IdentityConfig } from '../auth/config.js';
import type { Clock } from '../domain/clock.js';

export interface GatewayListenConfig {
  readonly host: string;
  readonly port: number;
  /** Refuse clients that do not negotiate TLS (default true outside the demo). */
  readonly requireTls: boolean;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  /** The CA that issued certFile, handed to clients (sslrootcert); default: certFile itself (self-signed). */
  readonly caFile?: string | undefined;
}

export interface HallpassConfig {
  readonly dataDir: string;
  readonly policyFile: string;
  /** postgres://... to share state between instances; default SQLite in dataDir. */
  readonly databaseUrl?: string | undefined;
  readonly listen: { readonly host: string; readonly port: number };
  /** Where clients reach the API (printed in tours, used in links). */
  readonly publicUrl?: string | undefined;
  /**
   * Addresses or CIDR ranges of the reverse proxies in front of the API: from these, the client's
   * address is read from X-Forwarded-For (throttles and audit events use it). Default none.
   */
  readonly trustedProxies?: readonly string[] | undefined;
  readonly gateway?: GatewayListenConfig | undefined;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly instanceId?: string | undefined;
  readonly clock?: Clock | undefined;
  readonly schedulerPollMs?: number | undefined;
  /** false: no timers; due work runs only when scheduler.tick() is called (manual-clock tests). */
  readonly schedulerTimers?: boolean | undefined;
  readonly reconcileIntervalMs?: number | undefined;
  readonly leaseMs?: number | undefined;
  /** Poll the policy file for changes (default true). */
  readonly watchPolicy?: boolean | undefined;
  readonly log?: ((line: string) => void) | undefined;
  /** SSO, workload identity, MFA and session settings (docs/identity.md). */
  readonly identity?: IdentityConfig | undefined;
}

export const DEFAULT_API_PORT = 8470;
export const DEFAULT_GATEWAY_PORT = 15432;

/** A stable id for this instance: the same after a restart, different per host and data dir. */
export function defaultInstanceId(dataDir: string): string {
  const h = createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 8);
  return `${hostname()}:${h}`;
}

export function storeUrl(config: Pick<HallpassConfig, 'databaseUrl' | 'dataDir'>): string {
  return config.databaseUrl ?? join(config.dataDir, 'hallpass.db');
}
