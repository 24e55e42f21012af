import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { MANAGED_PREFIX, type ConnectionInfo, type SecretResolver } from '../provider.js';

/** Test-only resolver with the production semantics: env var or file, never inline. */
export const resolveSecret: SecretResolver = (ref) => {
  if ('env' in ref) {
    const v = process.env[ref.env];
    if (v === undefined) throw new Error(`environment variable ${ref.env} is not set`);
    return v;
  }
  return readFileSync(ref.file, 'utf8').trim();
};

/** The slice of test/support/pg-target's PgTarget used here (src/ must not import from test/). */
export interface TargetAddress {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly adminUser: string;
  readonly adminPassword: string;
}

/** The connection block a policy file would hold for this target, with the admin password in a fresh env var. */
export function connectionFor(target: TargetAddress): { connection: Record<string, unknown>; envVar: string } {
  const envVar = `HP_TEST_PG_ADMIN_${randomBytes(4).toString('hex').toUpperCase()}`;
  process.env[envVar] = target.adminPassword;
  return {
    envVar,
    connection: { host: target.host, port: target.port, database: target.database, sslmode: 'disable', admin: { user: target.adminUser, password: { env: envVar } } },
  };
}

export const newPrincipal = (tag = 't') => `${MANAGED_PREFIX}${tag}_${randomBytes(6).toString('hex')}`;
export const newSecret = () => randomBytes(18).toString('base64url');
export const inAnHour = () => new Date(Date.now() + 3_600_000);

/** Connects as the principal; the caller ends the client. */
export async function connectAs(info: ConnectionInfo, database?: string): Promise<pg.Client> {
  const c = new pg.Client({ host: info.host, port: info.port, user: info.user, password: info.password, database: database ?? info.database });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** True when a login with the DSN works; false when the server refuses the credential (SQLSTATE 28xxx). */
export async function canLogin(info: ConnectionInfo): Promise<boolean> {
  const c = new pg.Client({ connectionString: info.dsn });
  c.on('error', () => {});
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' && err.code.startsWith('28')) return false;
    throw err;
  } finally {
    await c.end().catch(() => {});
  }
}
