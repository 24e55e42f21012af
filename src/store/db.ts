import { Kysely, Migrator, PostgresDialect, SqliteDialect, type Transaction } from 'kysely';
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
  readonly inTransaction: boolean;
}
export interface SqliteStatement {
  run(...params: unknown[]): unknown;
  get(...params: unknown[]): unknown;
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
    db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
    description = redactUrl(opts.url);
  } else {
    const { default: Database } = await import('better-sqlite3');
    if (opts.url !== ':memory:') mkdirSync(dirname(opts.url), { recursive: true });
    const sqlite = new Database(opts.url);
    sqlite.pragma('journal_mode = WAL');
    // WAL + synchronous=NORMAL: a committed transaction survives a process crash; the last
    // transactions may be lost on power loss. Stated in docs/operations.md.
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    db = new Kysely<DB>({ dialect: new SqliteDialect({ database: sqlite }) });
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

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable url>';
  }
}
