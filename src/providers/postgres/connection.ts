import { readFileSync } from 'node:fs';
import pg from 'pg';
import { ProviderError, type SecretResolver } from '../provider.js';
import type { PostgresConnection } from './config.js';
import { SecretUnavailableError } from './errors.js';
import type { Statement } from './sql.js';

/** The slice of a pg client the provider uses (pool clients and one-off clients alike). */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** Admin sessions to the target: a small pool for the resource's database, one-off clients for others. */
export interface AdminConnections {
  readonly pool: pg.Pool;
  /** The resource's database (the pool's). */
  readonly database: string;
  /** Runs fn on a session in `database` (the pool when it is the resource's database). */
  withDatabase<T>(database: string, fn: (c: Queryable) => Promise<T>): Promise<T>;
  /** The admin password last read (so errors can be scrubbed of it); undefined until first use. */
  lastAdminPassword(): string | undefined;
  end(): Promise<void>;
}

/** libpq's sslmode (and sslrootcert) as pg TLS options. */
export function sslFor(mode: PostgresConnection['sslmode'], ca: string | undefined): pg.ClientConfig['ssl'] {
  if (mode !== 'require' && mode !== 'verify-full') return false;
  if (ca === undefined) return { rejectUnauthorized: mode === 'verify-full' };
  // require with a CA file is libpq's verify-ca: the chain is checked, the host name is not.
  return mode === 'verify-full' ? { ca, rejectUnauthorized: true } : { ca, rejectUnauthorized: true, checkServerIdentity: () => undefined };
}

/** The sslrootcert file's text. Unreadable is a configuration fault, like a missing admin password: not retried. */
function readCa(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ProviderError(`postgres: cannot read sslrootcert ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, false);
  }
}

export function adminConnections(conn: PostgresConnection, secrets: SecretResolver, poolSize = 4): AdminConnections {
  let lastPassword: string | undefined;
  // Read on every new connection, so a rotated secret file is picked up without a restart.
  const password = (): string => {
    try {
      lastPassword = secrets(conn.admin.password);
    } catch (err) {
      const where = 'env' in conn.admin.password ? `env ${conn.admin.password.env}` : `file ${conn.admin.password.file}`;
      throw new SecretUnavailableError(`admin password unavailable (${where}): ${err instanceof Error ? err.message : String(err)}`);
    }
    return lastPassword;
  };
  // The CA file is read when the first admin connection is made (not when the provider is
  // created: that must not fail), and kept for the pool's life.
  let ca: string | undefined;
  const ssl = (): pg.ClientConfig['ssl'] => {
    if (conn.sslrootcert !== undefined && (conn.sslmode === 'require' || conn.sslmode === 'verify-full')) ca ??= readCa(conn.sslrootcert);
    return sslFor(conn.sslmode, ca);
  };
  const config = (database: string): pg.ClientConfig => ({
    host: conn.host,
    port: conn.port,
    database,
    user: conn.admin.user,
    password,
    ssl: ssl(),
    application_name: 'hallpass',
    connectionTimeoutMillis: 5_000,
    statement_timeout: 30_000,
    // REASSIGN OWNED takes ACCESS EXCLUSIVE locks; fail (retryably) rather than queue forever.
    lock_timeout: 10_000,
    // sql.ts quotes literals for this setting; never depend on the server default.
    options: '-c standard_conforming_strings=on',
  });
  let pool: pg.Pool | undefined;
  const getPool = (): pg.Pool => {
    if (pool) return pool;
    pool = new pg.Pool({ ...config(conn.database), max: poolSize, idleTimeoutMillis: 10_000 });
    // A target that goes away must surface as a failed call, never as an unhandled 'error' event.
    pool.on('error', () => {});
    pool.on('connect', (client) => client.on('error', () => {}));
    return pool;
  };
  return {
    /** Made on first use (so an unreadable sslrootcert fails that call, not the provider's creation). */
    get pool() {
      return getPool();
    },
    database: conn.database,
    async withDatabase(database, fn) {
      if (database === conn.database) return fn(getPool());
      const client = new pg.Client(config(database));
      client.on('error', () => {});
      await client.connect();
      try {
        return await fn(client);
      } finally {
        await client.end().catch(() => {});
      }
    },
    lastAdminPassword: () => lastPassword,
    end: async () => {
      await pool?.end();
    },
  };
}

/** A server NOTICE/WARNING, described structurally (pg-protocol's NoticeMessage). */
export interface Notice {
  readonly code?: string | undefined;
  readonly message?: string | undefined;
}

/**
 * Runs fn inside BEGIN/COMMIT on one pooled session; rolls back (or discards a broken session)
 * on error. fn sees the notices the server sent so far (a GRANT without grant option is only a
 * WARNING, which fn may turn into a failure before the commit).
 */
export async function inTransaction<T>(pool: pg.Pool, fn: (c: Queryable, notices: readonly Notice[]) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  const notices: Notice[] = [];
  const onNotice = (n: Notice) => notices.push(n);
  client.on('notice', onNotice);
  try {
    await client.query('BEGIN');
    const out = await fn(client, notices);
    await client.query('COMMIT');
    client.removeListener('notice', onNotice);
    client.release();
    return out;
  } catch (err) {
    client.removeListener('notice', onNotice);
    const rolledBack = await client.query('ROLLBACK').then(
      () => true,
      () => false,
    );
    client.release(rolledBack ? undefined : true);
    throw err;
  }
}

/** Sends a built Statement with its bind parameters. */
export const exec = <R extends pg.QueryResultRow = pg.QueryResultRow>(c: Queryable, s: Statement): Promise<pg.QueryResult<R>> =>
  c.query<R>(s.text, s.values === undefined ? undefined : [...s.values]);
