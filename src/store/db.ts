import { CompiledQuery, Kysely, Migrator, PostgresDialect, SqliteDialect, SqliteDriver, type DatabaseConnection, type Dialect as KyselyDialect, type Transaction } from 'kysely';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError } from '../domain/errors.js';
import { migrations } from './migrations.js';
import type { DB } from './schema.js';

export type Dialect = 'sqlite' | 'postgres';
export type Tx = Transaction<DB>;
export type Executor = Kysely<DB> | Tx;

/** A connected, migrated state store. */
export interface StoreConnection {
  readonly db: Kysely<DB>;
  readonly dialect: Dialect;
  /**
   * The SQLite database under `db` (SQLite stores only), for hot paths that run cached prepared
   * statements. Use it only while holding `db.connection()`, so no Kysely transaction interleaves.
   */
  readonly sqlite?: SqliteHandle;
  /** Where it lives, with any password removed (for logs). */
  readonly description: string;
  close(): Promise<void>;
}

/** What the hot paths use of a better-sqlite3 database (described structurally). */
export interface SqliteHandle {
  prepare(sql: string): SqliteStatement;
  pragma(source: string): unknown;
  readonly inTransaction: boolean;
  /** The file (better-sqlite3's `name`), and whether it is in memory only. */
  readonly name: string;
  readonly memory: boolean;
}
export interface SqliteStatement {
  run(...params: unknown[]): unknown;
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

export interface OpenStoreOptions {
  /** postgres://... or a SQLite file path (":memory:" for tests). */
  readonly url: string;
  readonly poolSize?: number;
}

export async function openStore(opts: OpenStoreOptions): Promise<StoreConnection> {
  const isPg = /^postgres(ql)?:\/\//.test(opts.url);
  let db: Kysely<DB>;
  let description: string;
  let sqliteHandle: SqliteHandle | undefined;
  if (isPg) {
    const pg = await import('pg');
    const types = {
      // int8 (epoch ms, seq) fits in a double; return numbers, not strings.
      getTypeParser: (oid: number, format?: 'text' | 'binary') =>
        oid === 20 ? (v: string) => Number(v) : pg.default.types.getTypeParser(oid, format),
    };
    const pool = new pg.default.Pool({ connectionString: opts.url, max: opts.poolSize ?? 10, types });
    pool.on('error', () => {
      /* idle client errors surface on the next query */
    });
    // pg-pool listens for errors only on idle clients: a connection that drops while a query is
    // checked out would emit an unhandled 'error' and kill the process (review). The query itself
    // still fails with the error.
    pool.on('connect', (client) => client.on('error', () => {}));
    db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
    description = redactUrl(opts.url);
  } else {
    const { default: Database } = await import('better-sqlite3');
    if (opts.url !== ':memory:') mkdirSync(dirname(opts.url), { recursive: true });
    const sqlite = new Database(opts.url);
    configureSqlite(sqlite);
    db = new Kysely<DB>({ dialect: immediateSqliteDialect(sqlite) });
    sqliteHandle = sqlite;
    description = `sqlite:${opts.url}`;
  }
  const result = await new Migrator({ db, provider: migrations(isPg ? 'postgres' : 'sqlite') }).migrateToLatest();
  if (result.error) {
    await db.destroy();
    throw new ConfigError(`state store migration failed (${description}): ${String(result.error)}`);
  }
  return { db, dialect: isPg ? 'postgres' : 'sqlite', sqlite: sqliteHandle, description, close: () => db.destroy() };
}

/**
 * The settings every connection to a SQLite store uses (the server's, and the audit writer
 * thread's). WAL + synchronous=NORMAL: a committed transaction survives a process crash; the last
 * transactions may be lost on power loss. A writer waits up to 5 s for another connection's.
 */
export function configureSqlite(sqlite: SqliteHandle): void {
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
}

/**
 * Kysely's SQLite dialect, but transactions begin IMMEDIATE (take the write lock up front). With a
 * second connection writing the same file (the audit writer thread), a deferred transaction that
 * read first and then wrote would fail with SQLITE_BUSY at once, whatever the busy timeout.
 */
function immediateSqliteDialect(database: ConstructorParameters<typeof SqliteDriver>[0]['database']): KyselyDialect {
  const base = new SqliteDialect({ database });
  class ImmediateDriver extends SqliteDriver {
    override async beginTransaction(connection: DatabaseConnection): Promise<void> {
      await connection.executeQuery(CompiledQuery.raw('begin immediate'));
    }
  }
  return {
    createAdapter: () => base.createAdapter(),
    createDriver: () => new ImmediateDriver({ database }),
    createQueryCompiler: () => base.createQueryCompiler(),
    createIntrospector: (db) => base.createIntrospector(db),
  };
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable url>';
  }
}
