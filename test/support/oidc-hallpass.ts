import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IdentityConfig } from '../../src/auth/config.js';
import { issueToken } from '../../src/auth/tokens.js';
import type { Clock } from '../../src/domain/clock.js';
import { startHallpass, type Hallpass, type HallpassExtension } from '../../src/server/app.js';
import { getUserByName } from '../../src/store/users.js';
import type { PgTarget } from './pg-target.js';

export interface ApiResult {
  status: number;
  body: any;
  headers: Headers;
}

/** A hallpass started with an identity config (SSO, workloads, MFA), for identity and security tests. */
export interface IdentityHallpass {
  readonly h: Hallpass;
  readonly adminToken: string;
  /** A fresh API token for a user (not cached: each test decides what it stamps). */
  token(user: string): Promise<string>;
  call(method: string, path: string, opts?: { token?: string; body?: unknown; headers?: Record<string, string> }): Promise<ApiResult>;
  audit(type: string): Promise<Array<{ actor: string; data: Record<string, unknown> }>>;
  close(): Promise<void>;
}

export async function startIdentityHallpass(o: {
  target: PgTarget; policy: string; identity?: IdentityConfig; clock?: Clock; publicUrl?: string; databaseUrl?: string; trustedProxies?: string[];
  /** e.g. the gateway (gatewayExtension). */
  extensions?: HallpassExtension[];
}): Promise<IdentityHallpass> {
  const dataDir = mkdtempSync(join(tmpdir(), 'hp-id-'));
  const policyFile = join(dataDir, 'policy.yaml');
  writeFileSync(policyFile, o.policy);
  const adminToken = `hp_tok_${randomBytes(32).toString('hex').slice(0, 43)}`;
  const h = await startHallpass({
    dataDir, policyFile, databaseUrl: o.databaseUrl, listen: { host: '127.0.0.1', port: 0 }, publicUrl: o.publicUrl, trustedProxies: o.trustedProxies,
    env: { TEST_TARGET_ADMIN_PASSWORD: o.target.adminPassword, HALLPASS_ADMIN_TOKEN: adminToken },
    clock: o.clock, schedulerPollMs: 200, schedulerTimers: o.clock ? false : undefined, reconcileIntervalMs: 3_600_000, watchPolicy: false,
    log: () => {}, identity: o.identity,
  }, { extensions: o.extensions });
  return {
    h, adminToken,
    async token(user) {
      const row = await getUserByName(h.deps.store.db, user);
      if (!row) throw new Error(`no user ${user}`);
      return (await issueToken(h.deps.store.db, { userId: row.id, name: 'login', now: h.deps.clock.now() })).token;
    },
    async call(method, path, c = {}) {
      const res = await fetch(`${h.url}${path}`, {
        method, redirect: 'manual',
        headers: {
          ...(c.token ? { authorization: `Bearer ${c.token}` } : {}),
          ...(c.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...c.headers,
        },
        body: c.body === undefined ? undefined : JSON.stringify(c.body),
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      return { status: res.status, body, headers: res.headers };
    },
    async audit(type) {
      const rows = await h.deps.store.db.selectFrom('audit_events').select(['actor', 'data']).where('type', '=', type).orderBy('seq').execute();
      return rows.map((r) => ({ actor: r.actor, data: JSON.parse(r.data) as Record<string, unknown> }));
    },
    async close() {
      await h.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
