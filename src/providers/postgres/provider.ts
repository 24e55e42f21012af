import { MANAGED_PREFIX, ProviderError, type ConnectionInfo, type Provider, type ProviderFactory, type ProvisionSpec, type SecretResolver } from '../provider.js';
import { connectionSchema, parseConnection, parsePrivileges, privilegesSchema, type PostgresConnection } from './config.js';
import { adminConnections, exec, inTransaction, type Notice } from './connection.js';
import { toProviderError } from './errors.js';
import { revokeRoles } from './revoke.js';
import * as sql from './sql.js';
import { GUARDRAILS } from '../../gateway/postgres/guardrail-names.js';

/** Owner of objects that revoked principals created, unless the connection names another. */
export const DEFAULT_ORPHAN_OWNER = 'hallpass_orphans';

/** hallpass-generated names only: the prefix, then safe characters, within PostgreSQL's 63 bytes. */
const PRINCIPAL = new RegExp(`^${MANAGED_PREFIX}[A-Za-z0-9_]{1,${63 - MANAGED_PREFIX.length}}$`);
/** Printable ASCII: SASLprep leaves it unchanged, so the client-side SCRAM verifier matches what clients send. */
const SECRET = /^[\x20-\x7e]{1,1024}$/;

function checkPrincipal(name: string): string {
  if (!PRINCIPAL.test(name)) {
    throw new ProviderError(`postgres: refusing principal ${JSON.stringify(name.slice(0, 80))}: not a hallpass-managed name (${MANAGED_PREFIX}[A-Za-z0-9_]+)`, false);
  }
  return name;
}

function checkDate(d: Date): Date {
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw new ProviderError('postgres: validUntil is not a valid date', false);
  return d;
}

export interface PostgresProvider extends Provider {
  readonly kind: 'postgres';
  readonly connection: PostgresConnection;
}

/**
 * A Provider for one PostgreSQL cluster in direct-credential mode: each grant becomes a LOGIN
 * role `hp_...` with a password and VALID UNTIL, removed (sessions terminated first) on revoke.
 * The admin password comes from `secrets` (env var or file), read per new connection.
 */
export function createPostgresProvider(
  connection: unknown,
  secrets: SecretResolver,
  opts: { poolSize?: number; deployment?: string | undefined; earlierDeployments?: readonly string[] | undefined } = {},
): PostgresProvider {
  const marker = opts.deployment;
  const conn = parseConnection(connection);
  const orphan = conn.orphanOwner ?? DEFAULT_ORPHAN_OWNER;
  const conns = adminConnections(conn, secrets, opts.poolSize);
  let closed: Promise<void> | undefined;

  /** Runs an operation, turning every failure into a ProviderError with these secrets removed. */
  async function guarded<T>(op: string, extraSecrets: readonly string[], fn: () => Promise<T>): Promise<T> {
    if (closed) throw new ProviderError(`postgres ${op}: provider is closed`, false);
    try {
      return await fn();
    } catch (err) {
      throw toProviderError(op, err, [conns.lastAdminPassword(), ...extraSecrets]);
    }
  }

  return {
    kind: 'postgres',
    connection: conn,

    async provision(spec: ProvisionSpec) {
      const role = checkPrincipal(spec.principal);
      if (!SECRET.test(spec.secret)) throw new ProviderError('postgres provision: secret must be 1-1024 printable ASCII characters', false);
      const privileges = parsePrivileges(spec.privileges);
      if (privileges.memberOf?.includes(orphan)) throw new ProviderError(`postgres provision: memberOf must not name the orphan owner ${orphan}`, false);
      const validUntil = checkDate(spec.validUntil);
      const verifier = await sql.scramVerifier(spec.secret);
      const roleSpec: sql.RoleSpec = { name: role, verifier, validUntil, connectionLimit: privileges.connectionLimit ?? -1 };
      const readOnly = spec.readOnly === true || privileges.readOnly === true;
      const grantsFor = (extra: readonly string[]) => [
        ...extra.map((g) => sql.revokeMembership(g, role)),
        ...[...(privileges.memberOf ?? [])].map((g) => sql.grantMembership(g, role)),
        ...(privileges.grants ?? []).flatMap((g) => sql.grantStatements(g, role)),
        sql.setReadOnly(role, readOnly),
      ];
      const refusedGrants = (notices: readonly Notice[]) => {
        // 01007/01006: the admin lacks the grant option (or ADMIN OPTION), so PostgreSQL only warned.
        const refused = notices.filter((n) => n.code === '01007' || n.code === '01006');
        if (refused.length > 0) {
          throw new ProviderError(`postgres provision: the admin may not grant this: ${refused.map((n) => n.message).join('; ')}`, false);
        }
      };
      await guarded('provision', [spec.secret, verifier], () =>
        inTransaction(conns.pool, async (c, notices) => {
          // Fast path, one round trip: a fresh principal (the usual case). The lock, CREATE and
          // every GRANT go as one simple-query string inside the surrounding transaction.
          const mark = marker === undefined ? [] : [sql.commentOnRole(role, marker)];
          const fresh = await c.query([sql.lockCatalogForTransaction(), 'SAVEPOINT hp_create', sql.createRole(roleSpec), ...mark, ...grantsFor([])].join(';\n'))
            .then(() => true, async (err: unknown) => {
              // 42710 duplicate_object: it exists (a retried activation): converge it below.
              if (typeof err === 'object' && err !== null && 'code' in err && err.code === '42710') {
                await c.query('ROLLBACK TO SAVEPOINT hp_create');
                return false;
              }
              throw err;
            });
          if (!fresh) {
            const wanted = new Set(privileges.memberOf ?? []);
            const extra = (await exec<{ rolname: string }>(c, sql.currentMemberships(role))).rows.map((r) => r.rolname).filter((g) => !wanted.has(g));
            // One round trip, inside the surrounding transaction.
            await c.query([sql.alterRoleToSpec(roleSpec), ...mark, ...grantsFor(extra)].join(';\n'));
          }
          refusedGrants(notices);
        }),
      );
    },

    async extend(principal, validUntil) {
      const role = checkPrincipal(principal);
      const statement = sql.alterValidUntil(role, checkDate(validUntil));
      await guarded('extend', [], async () => {
        try {
          await inTransaction(conns.pool, async (c) => {
            await c.query(sql.lockCatalogForTransaction());
            await c.query(statement);
          });
        } catch (err) {
          if (typeof err === 'object' && err !== null && 'code' in err && err.code === '42704') {
            throw new ProviderError(`postgres extend: principal ${role} does not exist`, false);
          }
          throw err;
        }
      });
    },

    async revoke(principals) {
      const roles = [...new Set(principals.map(checkPrincipal))];
      if (roles.length === 0) return;
      try {
        await guarded('revoke', [], () => revokeRoles(conns, roles, orphan));
      } catch (err) {
        // One role's objects must not keep every other role of the batch on the target: one by
        // one, then report the ones still there (a review's grant-option chain failed whole batches).
        if (roles.length === 1 || (err instanceof ProviderError && err.retryable)) throw err;
        const failed: string[] = [];
        let first: unknown;
        for (const role of roles) {
          await guarded('revoke', [], () => revokeRoles(conns, [role], orphan)).catch((e: unknown) => {
            failed.push(role);
            first ??= e;
          });
        }
        if (failed.length === 0) return;
        const e = first instanceof ProviderError ? first : toProviderError('revoke', first, [conns.lastAdminPassword()]);
        throw new ProviderError(e.message, e.retryable, failed);
      }
    },

    async listManagedPrincipals() {
      return guarded('listManagedPrincipals', [], async () => (await exec<{ rolname: string }>(conns.pool, sql.listManaged(marker, opts.earlierDeployments))).rows.map((r) => r.rolname));
    },

    async check() {
      try {
        const r = await guarded('check', [], () =>
          conns.pool.query<{ version: string; rolsuper: boolean; rolcreaterole: boolean }>(
            `SELECT current_setting('server_version') AS version, rolsuper, rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user`,
          ),
        );
        const row = r.rows[0];
        if (!row) return { ok: false, error: 'postgres check: admin role not found in pg_roles' };
        if (!row.rolsuper && !row.rolcreaterole) return { ok: false, error: `postgres check: admin ${conn.admin.user} has neither CREATEROLE nor SUPERUSER` };
        return { ok: true, detail: `PostgreSQL ${row.version} as ${conn.admin.user}${row.rolsuper ? ' (superuser)' : ' (createrole)'}` };
      } catch (err) {
        return { ok: false, error: err instanceof Error ? err.message : String(err) };
      }
    },

    connectionInfo(principal, secret): ConnectionInfo {
      return postgresConnectionInfo(conn, principal, secret);
    },

    close() {
      closed ??= conns.end();
      return closed;
    },
  };
}

/** Connection details for a principal; the DSN is accepted by psql and libpq-based clients. */
export function postgresConnectionInfo(conn: PostgresConnection, user: string, password: string): ConnectionInfo {
  const host = conn.host.includes(':') && !conn.host.startsWith('[') ? `[${conn.host}]` : conn.host;
  const query = conn.sslmode ? `?sslmode=${conn.sslmode}` : '';
  const dsn = `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${conn.port}/${encodeURIComponent(conn.database)}${query}`;
  const env: Record<string, string> = {
    PGHOST: conn.host,
    PGPORT: String(conn.port),
    PGDATABASE: conn.database,
    PGUSER: user,
    PGPASSWORD: password,
  };
  if (conn.sslmode) env.PGSSLMODE = conn.sslmode;
  // sslrootcert is a path on the hallpass host: it goes to the gateway, not into the DSN a client gets.
  const tls = conn.sslmode === 'require' || conn.sslmode === 'verify-full' ? { mode: conn.sslmode, caFile: conn.sslrootcert } : undefined;
  return { kind: 'postgres', host: conn.host, port: conn.port, database: conn.database, user, password, dsn, env, ...(tls ? { tls } : {}) };
}

export const postgresProviderFactory: ProviderFactory = {
  kind: 'postgres',
  connectionSchema,
  privilegesSchema,
  guardrails: Object.keys(GUARDRAILS),
  create: (resource, secrets, opts) => createPostgresProvider(resource.connection, secrets, { deployment: opts?.deployment, earlierDeployments: opts?.earlierDeployments }),
};
