import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type {
  AuthorizedSession,
  AuthorizeInput,
  AuthorizeResult,
  GatewayAuditEvent,
  GatewayAuditSink,
  GatewayAuthority,
} from '../../src/gateway/authority.js';
import { PostgresGateway, type PostgresGatewayOptions } from '../../src/gateway/postgres/server.js';
import { mintGatewayToken, verifyGatewayToken } from '../../src/gateway/tokens.js';
import { startPgTarget, type PgTarget } from './pg-target.js';

/**
 * An in-memory GatewayAuthority: a test double of our own contract (the real one lives in the
 * core). It follows the contract's rules: HMAC token, single use, grant status and window,
 * resource and owner checks.
 */
export class TestAuthority implements GatewayAuthority {
  readonly key = randomBytes(32);
  readonly grants = new Map<string, AuthorizedSession & { status: 'active' | 'revoked' | 'scheduled' }>();
  readonly usedNonces = new Set<string>();

  addGrant(g: Omit<AuthorizedSession, 'grantId'> & { grantId?: string; status?: 'active' | 'revoked' | 'scheduled' }): string {
    const grantId = g.grantId ?? `grt_${randomBytes(8).toString('hex')}`;
    this.grants.set(grantId, { ...g, grantId, status: g.status ?? 'active' });
    return grantId;
  }

  token(grantId: string, ttlMs?: number, reusable = false): string {
    return mintGatewayToken(this.key, { grantId, now: new Date(), reusable, ...(ttlMs !== undefined ? { ttlMs } : {}) }).token;
  }

  setExpiry(grantId: string, expiresAt: Date): void {
    const g = this.grants.get(grantId);
    if (g) this.grants.set(grantId, { ...g, expiresAt });
  }

  revoke(grantId: string): void {
    const g = this.grants.get(grantId);
    if (g) this.grants.set(grantId, { ...g, status: 'revoked' });
  }

  async authorize(input: AuthorizeInput): Promise<AuthorizeResult> {
    const v = verifyGatewayToken(this.key, input.token, new Date());
    if (!v.ok) {
      return v.code === 'expired'
        ? { ok: false, code: 'expired', message: 'the gateway token has expired; get a new one with hallpass connect' }
        : { ok: false, code: 'bad_token', message: 'invalid gateway token' };
    }
    if (!v.reusable) {
      if (this.usedNonces.has(v.nonce)) return { ok: false, code: 'replayed', message: 'this gateway token was already used' };
      this.usedNonces.add(v.nonce);
    }
    const g = this.grants.get(v.grantId);
    if (!g) return { ok: false, code: 'bad_token', message: 'invalid gateway token' };
    if (g.status === 'revoked') return { ok: false, code: 'revoked', message: `your grant for ${g.resource} was revoked` };
    if (g.status === 'scheduled') return { ok: false, code: 'not_active', message: `your grant for ${g.resource} is not active yet` };
    if (g.expiresAt.getTime() <= Date.now()) return { ok: false, code: 'expired', message: `your grant for ${g.resource} has expired` };
    if (g.resource !== input.resource) return { ok: false, code: 'wrong_resource', message: `this token is for ${g.resource}, not ${input.resource}` };
    if (g.userName !== input.user) return { ok: false, code: 'not_owner', message: `this grant belongs to another user, not ${input.user}` };
    const { status: _status, ...session } = g;
    return { ok: true, session };
  }
}

/** Collects audit events; can be told to fail to exercise retries. */
export class MemoryAuditSink implements GatewayAuditSink {
  readonly events: GatewayAuditEvent[] = [];
  failNext = 0;
  async record(events: readonly GatewayAuditEvent[]): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('sink unavailable');
    }
    this.events.push(...events);
  }
  ofType(type: string): GatewayAuditEvent[] {
    return this.events.filter((e) => e.type === type);
  }
}

export interface GatewayFixture {
  readonly target: PgTarget;
  readonly authority: TestAuthority;
  readonly sink: MemoryAuditSink;
  readonly gateway: PostgresGateway;
  readonly port: number;
  /** PEM file of the gateway's self-signed certificate (sslrootcert for verify-full). */
  readonly caFile: string;
  readonly ca: string;
  /** Credentials of target roles made for the tests. */
  readonly roles: { rw: TargetRole; ro: TargetRole };
  grant(opts?: Partial<Omit<AuthorizedSession, 'grantId' | 'upstream'>> & { role?: string; upstream?: Partial<AuthorizedSession['upstream']>; status?: 'active' | 'revoked' | 'scheduled' }): string;
  /** A node-postgres client through the gateway with a fresh token for `grantId` (TLS, CA verified). */
  client(grantId: string, opts?: { user?: string; database?: string }): pg.Client;
  /** psql/pgbench environment for a fresh token of `grantId`. */
  env(grantId: string, opts?: { sslmode?: string; user?: string; reusable?: boolean }): NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export interface TargetRole {
  readonly user: string;
  readonly password: string;
}

export const TEST_USER = 'alice';

/** A real scram target, two roles on it, a gateway with a generated self-signed certificate. */
export async function startGatewayFixture(opts: Partial<PostgresGatewayOptions> = {}): Promise<GatewayFixture> {
  const target = await startPgTarget({ database: 'app' });
  const admin = await target.admin();
  const roles = {
    rw: { user: 'hp_rw', password: randomBytes(12).toString('base64url') },
    ro: { user: 'hp_ro', password: randomBytes(12).toString('base64url') },
  };
  await admin.query(`create role ${roles.rw.user} login password '${roles.rw.password}'`);
  await admin.query(`create role ${roles.ro.user} login password '${roles.ro.password}'`);
  await admin.query('create table items (id int primary key, name text)');
  await admin.query("insert into items select g, 'item ' || g from generate_series(1, 100) g");
  await admin.query(`grant all on items to ${roles.rw.user}`);
  await admin.query(`grant select on items to ${roles.ro.user}`);
  await admin.query(`grant create on schema public to ${roles.rw.user}`);
  await admin.end();
  const dir = mkdtempSync(join(tmpdir(), 'hp-gw-'));
  const authority = new TestAuthority();
  const sink = new MemoryAuditSink();
  const gateway = new PostgresGateway({ authority, audit: sink, port: 0, tls: { selfSignedDir: dir }, ...opts });
  const { port } = await gateway.start();
  const caFile = join(dir, 'gateway-cert.pem');
  const ca = readFileSync(caFile, 'utf8');
  writeFileSync(join(dir, 'ca.pem'), ca);
  const fixture: GatewayFixture = {
    target,
    authority,
    sink,
    gateway,
    port,
    caFile,
    ca,
    roles,
    grant(g = {}) {
      const role = g.role ?? 'write';
      const cred = role === 'read' ? roles.ro : roles.rw;
      return authority.addGrant({
        userId: 'usr_alice',
        userName: TEST_USER,
        resource: 'app',
        expiresAt: new Date(Date.now() + 3_600_000),
        guardrails: [],
        readOnly: role === 'read',
        storeParameters: false,
        ...g,
        role,
        upstream: { host: target.host, port: target.port, database: 'app', user: cred.user, password: cred.password, ...g.upstream },
      });
    },
    client(grantId, o = {}) {
      return new pg.Client({
        host: 'localhost',
        port,
        user: o.user ?? TEST_USER,
        database: o.database ?? 'app',
        password: authority.token(grantId),
        ssl: { ca, servername: 'localhost' },
      });
    },
    env(grantId, o = {}) {
      return {
        ...process.env,
        PGHOST: 'localhost',
        PGPORT: String(port),
        PGUSER: o.user ?? TEST_USER,
        PGDATABASE: 'app',
        PGPASSWORD: authority.token(grantId, undefined, o.reusable ?? false),
        PGSSLMODE: o.sslmode ?? 'verify-full',
        PGSSLROOTCERT: caFile,
        PGCONNECT_TIMEOUT: '10',
      };
    },
    async stop() {
      try {
        await gateway.close();
      } finally {
        await target.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  return fixture;
}

/** A gateway fixture and an admin connection to its target (to look at what statements did there). */
export async function startGatewayFixtureWithAdmin(opts: Partial<PostgresGatewayOptions> = {}): Promise<{ fx: GatewayFixture; admin: pg.Client; stop(): Promise<void> }> {
  const fx = await startGatewayFixture(opts);
  const admin = await fx.target.admin();
  return {
    fx,
    admin,
    async stop() {
      await admin.end();
      await fx.stop();
    },
  };
}

/** Lets a role log in with md5 (the helper's target is scram-only): an hba line ahead of the rest. */
export async function allowMd5(target: PgTarget, user: string, password: string): Promise<void> {
  const admin = await target.admin();
  try {
    await admin.query("set password_encryption = 'md5'");
    await admin.query(`create role ${user} login password '${password}'`);
    await admin.query(`grant select on items to ${user}`);
    const hba = (await admin.query<{ hba_file: string }>('show hba_file')).rows[0]?.hba_file;
    if (!hba) throw new Error('no hba_file');
    writeFileSync(hba, `host all ${user} 127.0.0.1/32 md5\n${readFileSync(hba, 'utf8')}`);
    await admin.query('select pg_reload_conf()');
  } finally {
    await admin.end();
  }
}
