import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueToken } from '../../src/auth/tokens.js';
import type { Clock } from '../../src/domain/clock.js';
import { startHallpass, type Hallpass, type StartOptions } from '../../src/server/app.js';
import { getUserByName, toPrincipal } from '../../src/store/users.js';
import type { Principal } from '../../src/domain/principal.js';
import type { PgTarget } from './pg-target.js';

export const TEST_USERS = ['alice', 'dave', 'bob', 'carol', 'olga'] as const;

/**
 * The `connection:` block of a policy resource on `target` (at 4 spaces, as under `- name:`);
 * `extra` are more connection lines (at 6 spaces) before the admin credential.
 */
export function targetConnectionYaml(target: PgTarget, extra = '', at: { host?: string; port?: number } = {}): string {
  return `    connection:
      host: ${JSON.stringify(at.host ?? target.host)}
      port: ${at.port ?? target.port}
      database: ${target.database}
${extra}      admin: { user: ${target.adminUser}, password: { env: TEST_TARGET_ADMIN_PASSWORD } }
`;
}

/** A policy for lifecycle tests: one PostgreSQL resource, read auto, write 1 approval, admin 2. */
export function testPolicy(target: PgTarget, opts: { pendingTtl?: string; extra?: string } = {}): string {
  return `
settings: { pendingTtl: ${opts.pendingTtl ?? '10m'} }
groups: [{ name: engineers }, { name: sre }, { name: oncall }]
users:
  - { name: alice, groups: [engineers] }
  - { name: dave, groups: [engineers] }
  - { name: bob, groups: [sre] }
  - { name: carol, groups: [sre, engineers] }
  - { name: olga, groups: [oncall] }
resources:
  - name: app-db
    kind: postgres
    labels: { env: prod }
${targetConnectionYaml(target)}    roles:
      read: { readOnly: true, privileges: { memberOf: [pg_read_all_data] } }
      write: { privileges: { memberOf: [pg_read_all_data, pg_write_all_data] } }
      owner: { privileges: { memberOf: [pg_read_all_data, pg_write_all_data] } }
rules:
  - name: engineers-read
    who: { groups: [engineers] }
    resources: { names: [app-db] }
    roles: [read]
    duration: { default: 5m, max: 1h }
    approval: auto
    reason: { required: true }
  - name: engineers-write
    who: { groups: [engineers] }
    resources: { names: [app-db] }
    roles: [write]
    duration: { default: 30m, max: 2h }
    approval: { approvals: 1, from: [sre] }
    reason: { required: true }
  - name: engineers-owner
    who: { groups: [engineers] }
    resources: { names: [app-db] }
    roles: [owner]
    duration: { default: 30m, max: 2h }
    approval: { approvals: 2, from: [sre] }
    reason: { required: true, ticketPattern: '^OPS-[0-9]+$' }
breakGlass: { groups: [oncall], maxDuration: 1h }
${opts.extra ?? ''}`;
}

export interface TestHallpass {
  readonly h: Hallpass;
  readonly dataDir: string;
  readonly policyPath: string;
  readonly adminToken: string;
  /** An API token for a policy user. */
  token(user: string): Promise<string>;
  principal(user: string): Promise<Principal>;
  /** fetch against the API with a bearer token; returns status and parsed JSON. */
  api(token: string | undefined, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

export interface StartTestOptions {
  target: PgTarget;
  policy?: string;
  clock?: Clock;
  databaseUrl?: string;
  dataDir?: string;
  instanceId?: string;
  schedulerPollMs?: number;
  /** false with a manual clock: due work runs only on t.h.scheduler.tick(). */
  schedulerTimers?: boolean;
  reconcileIntervalMs?: number;
  leaseMs?: number;
  masterKey?: string;
  /** HALLPASS_PREVIOUS_MASTER_KEYS (a rotation). */
  previousMasterKeys?: string;
  start?: StartOptions;
}

export async function startTestHallpass(o: StartTestOptions): Promise<TestHallpass> {
  const dataDir = o.dataDir ?? mkdtempSync(join(tmpdir(), 'hp-test-'));
  const policyPath = join(dataDir, 'policy.yaml');
  if (o.policy !== undefined || !existsSync(policyPath)) writeFileSync(policyPath, o.policy ?? testPolicy(o.target));
  const adminToken = `hp_tok_${randomBytes(32).toString('hex').slice(0, 43)}`;
  const h = await startHallpass({
    dataDir,
    policyFile: policyPath,
    databaseUrl: o.databaseUrl,
    listen: { host: '127.0.0.1', port: 0 },
    env: {
      TEST_TARGET_ADMIN_PASSWORD: o.target.adminPassword,
      HALLPASS_ADMIN_TOKEN: adminToken,
      ...(o.masterKey ? { HALLPASS_MASTER_KEY: o.masterKey } : {}),
      ...(o.previousMasterKeys ? { HALLPASS_PREVIOUS_MASTER_KEYS: o.previousMasterKeys } : {}),
    },
    instanceId: o.instanceId,
    clock: o.clock,
    schedulerPollMs: o.schedulerPollMs ?? 200,
    schedulerTimers: o.schedulerTimers,
    reconcileIntervalMs: o.reconcileIntervalMs ?? 3_600_000,
    leaseMs: o.leaseMs,
    watchPolicy: false,
    log: () => {},
  }, o.start);
  const tokens = new Map<string, { token: string; id: string }>();
  return {
    h, dataDir, policyPath, adminToken,
    async token(user) {
      const cached = tokens.get(user);
      // A user removed from the policy has their tokens revoked: one issued since is needed then.
      if (cached && (await h.deps.store.db.selectFrom('api_tokens').select('revoked_at').where('id', '=', cached.id).executeTakeFirst())?.revoked_at === null) {
        return cached.token;
      }
      const row = await getUserByName(h.deps.store.db, user);
      if (!row) throw new Error(`no user ${user}`);
      const t = await issueToken(h.deps.store.db, { userId: row.id, name: 'login', now: Date.now() });
      tokens.set(user, { token: t.token, id: t.id });
      return t.token;
    },
    async principal(user) {
      const row = await getUserByName(h.deps.store.db, user);
      if (!row) throw new Error(`no user ${user}`);
      return toPrincipal(row);
    },
    async api(token, method, path, body) {
      const res = await fetch(`${h.url}${path}`, {
        method,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      return { status: res.status, body: parsed };
    },
    async close() {
      await h.close();
      if (!o.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
