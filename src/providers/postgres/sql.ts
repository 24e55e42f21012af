import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { MANAGED_PREFIX } from '../provider.js';
import { SCHEMA_PRIVILEGES, SEQUENCE_PRIVILEGES, TABLE_PRIVILEGES, type PostgresGrant, type Privilege } from './config.js';

/**
 * Pure builders for every statement the provider sends. Utility statements (CREATE/ALTER/DROP
 * ROLE, GRANT, REASSIGN OWNED) cannot take bind parameters in PostgreSQL, so identifiers are
 * double-quoted here and the only literals (a VALID UNTIL timestamp and a SCRAM verifier, never
 * a plaintext password) are quoted for standard_conforming_strings = on, which the provider's
 * connections force. Catalog queries take their values as bind parameters.
 */

/** A statement with optional bind parameters. */
export interface Statement {
  readonly text: string;
  readonly values?: readonly unknown[];
}

/** `"name"` with embedded quotes doubled. NUL cannot be represented, so it is refused. */
export function quoteIdent(name: string): string {
  if (name.length === 0 || name.includes('\0')) throw new TypeError('identifier must be non-empty and contain no NUL');
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * `'text'` with embedded quotes doubled, for standard_conforming_strings = on (backslash is an
 * ordinary character there). Never used with E'' syntax.
 */
export function quoteLiteral(text: string): string {
  if (text.includes('\0')) throw new TypeError('literal must contain no NUL');
  return `'${text.replaceAll("'", "''")}'`;
}

const pbkdf2Async = promisify(pbkdf2);

/**
 * The SCRAM-SHA-256 verifier PostgreSQL would store for this password (RFC 5802/7677, the
 * format of pg's scram_build_secret), computed here so the plaintext never reaches the server
 * or its statement log. PostgreSQL applies SASLprep, which is the identity on printable ASCII;
 * the provider only accepts secrets of printable ASCII so both sides hash the same bytes.
 */
export async function scramVerifier(password: string, salt: Buffer = randomBytes(16), iterations = 4096): Promise<string> {
  const salted = await pbkdf2Async(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

const timestamp = (d: Date): string => {
  if (Number.isNaN(d.getTime())) throw new TypeError('validUntil is not a valid date');
  return quoteLiteral(d.toISOString());
};

export interface RoleSpec {
  readonly name: string;
  /** A SCRAM verifier from scramVerifier(), not the plaintext. */
  readonly verifier: string;
  readonly validUntil: Date;
  /** -1 for no limit. */
  readonly connectionLimit: number;
}

// Only attributes a CREATEROLE (non-superuser) admin may set on ALTER; CREATE adds the NO* ones.
const roleOptions = (r: RoleSpec) =>
  `LOGIN INHERIT PASSWORD ${quoteLiteral(r.verifier)} VALID UNTIL ${timestamp(r.validUntil)} CONNECTION LIMIT ${Math.trunc(r.connectionLimit)}`;

export const createRole = (r: RoleSpec): string => `CREATE ROLE ${quoteIdent(r.name)} ${roleOptions(r)} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS`;
export const alterRoleToSpec = (r: RoleSpec): string => `ALTER ROLE ${quoteIdent(r.name)} ${roleOptions(r)}`;
export const alterValidUntil = (role: string, validUntil: Date): string => `ALTER ROLE ${quoteIdent(role)} VALID UNTIL ${timestamp(validUntil)}`;
export const setReadOnly = (role: string, readOnly: boolean): string =>
  readOnly
    ? `ALTER ROLE ${quoteIdent(role)} SET default_transaction_read_only = on`
    : `ALTER ROLE ${quoteIdent(role)} RESET default_transaction_read_only`;
export const grantMembership = (group: string, role: string): string => `GRANT ${quoteIdent(group)} TO ${quoteIdent(role)}`;
export const revokeMembership = (group: string, role: string): string => `REVOKE ${quoteIdent(group)} FROM ${quoteIdent(role)}`;
export const createOrphanOwner = (role: string): string => `CREATE ROLE ${quoteIdent(role)} NOLOGIN`;
export const noLogin = (role: string): string => `ALTER ROLE ${quoteIdent(role)} NOLOGIN`;
const roleList = (roles: readonly string[]): string => {
  if (roles.length === 0) throw new TypeError('role list must not be empty');
  return roles.map(quoteIdent).join(', ');
};
export const reassignOwned = (roles: readonly string[], to: string): string => `REASSIGN OWNED BY ${roleList(roles)} TO ${quoteIdent(to)}`;
export const dropOwned = (roles: readonly string[]): string => `DROP OWNED BY ${roleList(roles)}`;
export const dropRoles = (roles: readonly string[]): string => `DROP ROLE IF EXISTS ${roleList(roles)}`;

const only = <T extends string>(privs: readonly Privilege[], allowed: readonly T[]): T[] =>
  allowed.filter((p) => (privs as readonly string[]).includes(p));

/**
 * GRANT statements for one policy grant. USAGE on the schema is always granted with it: table
 * privileges are unusable without it. Each privilege goes only to object kinds it applies to.
 */
export function grantStatements(g: PostgresGrant, role: string): string[] {
  const to = quoteIdent(role);
  const schema = quoteIdent(g.on.schema);
  const out: string[] = [];
  const schemaPrivs = only(g.privileges, SCHEMA_PRIVILEGES);
  out.push(`GRANT ${[...new Set(['USAGE', ...schemaPrivs])].join(', ')} ON SCHEMA ${schema} TO ${to}`);
  const tablePrivs = only(g.privileges, TABLE_PRIVILEGES);
  if (g.on.tables !== undefined && tablePrivs.length > 0) {
    const target =
      g.on.tables === 'all' ? `ALL TABLES IN SCHEMA ${schema}` : `TABLE ${g.on.tables.map((t) => `${schema}.${quoteIdent(t)}`).join(', ')}`;
    out.push(`GRANT ${tablePrivs.join(', ')} ON ${target} TO ${to}`);
  }
  const seqPrivs = only(g.privileges, SEQUENCE_PRIVILEGES);
  if (g.on.sequences === 'all' && seqPrivs.length > 0) {
    out.push(`GRANT ${seqPrivs.join(', ')} ON ALL SEQUENCES IN SCHEMA ${schema} TO ${to}`);
  }
  return out;
}

/** `hp\_%`: the prefix for LIKE with its wildcards (`_`, `%`) and the escape (`\`) escaped. */
export const managedLikePattern = (prefix: string = MANAGED_PREFIX): string => `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/**
 * The managed roles (`hp_…`) this deployment may sweep: marked with its name (commentOnRole), or
 * unmarked (made before marks, or by hand: the prefix is reserved). Another deployment's marked
 * roles on a shared cluster are not ours (a review saw one deployment's reconciler drop roles it
 * did not make, 2026-12-02).
 */
export const listManaged = (marker?: string, earlier: readonly string[] = []): Statement => marker === undefined
  ? { text: `SELECT rolname FROM pg_catalog.pg_roles WHERE rolname LIKE $1 ESCAPE '\\' ORDER BY rolname`, values: [managedLikePattern()] }
  : {
    // `earlier`: the names this deployment had before (its name follows the master key, so a
    // rotation renames it; a review saw the roles made before one never swept again).
    text: `SELECT rolname FROM pg_catalog.pg_roles WHERE rolname LIKE $1 ESCAPE '\\'
             AND coalesce(pg_catalog.shobj_description(oid, 'pg_authid'), $2) = ANY($3::text[]) ORDER BY rolname`,
    values: [managedLikePattern(), marker, [marker, ...earlier]],
  };
/** Marks a role as made by this deployment (listManaged). */
export const commentOnRole = (role: string, marker: string): string => `COMMENT ON ROLE ${quoteIdent(role)} IS ${quoteLiteral(marker)}`;
export const existingRoles = (roles: readonly string[]): Statement => ({
  text: 'SELECT oid::int8::text AS oid, rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])',
  values: [roles],
});
export const roleExists = (role: string): Statement => ({
  text: 'SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1',
  values: [role],
});
export const currentMemberships = (role: string): Statement => ({
  text: `SELECT g.rolname FROM pg_catalog.pg_auth_members m
           JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
           JOIN pg_catalog.pg_roles r ON r.oid = m.member
          WHERE r.rolname = $1`,
  values: [role],
});
/**
 * One advisory lock serialises every catalog change hallpass makes through this database, across
 * all hallpass instances: PostgreSQL fails concurrent GRANT/REVOKE on one object with "tuple
 * concurrently updated", and two revokes of one role race on REASSIGN/DROP.
 */
const CATALOG_LOCK = `hashtext('hallpass:catalog')`;
export const lockCatalogForTransaction = (): string => `SELECT pg_advisory_xact_lock(${CATALOG_LOCK})`;
export const lockCatalog = (): string => `SELECT pg_advisory_lock(${CATALOG_LOCK})`;
export const unlockCatalog = (): string => `SELECT pg_advisory_unlock(${CATALOG_LOCK})`;
/** Signals every backend of these roles (by oid, so it still finds them after DROP ROLE); n = how many. */
export const terminateBackends = (roleOids: readonly string[]): Statement => ({
  text: `SELECT count(pg_catalog.pg_terminate_backend(pid))::int AS n FROM pg_catalog.pg_stat_activity
          WHERE usesysid = ANY($1::oid[]) AND pid <> pg_catalog.pg_backend_pid()`,
  values: [roleOids],
});
/**
 * Databases where the roles own objects or hold privileges (pg_shdepend). Dependencies on shared
 * objects (dbid 0: privileges on a database, say) are handled from the current database.
 */
export const dependentDatabases = (roleOids: readonly string[]): Statement => ({
  text: `SELECT DISTINCT COALESCE(d.datname, current_database()) AS datname FROM pg_catalog.pg_shdepend s
           LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
          WHERE s.refclassid = 'pg_catalog.pg_authid'::regclass AND s.refobjid = ANY($1::oid[])
          ORDER BY 1`,
  values: [roleOids],
});

/** Object kinds whose privileges revoke() removes in one statement per object (the rest: DROP OWNED). */
export type BatchRevocable = 'TABLE' | 'SEQUENCE' | 'SCHEMA';

/**
 * In the current database: each table, sequence or schema on which these roles hold privileges,
 * with the roles that hold them. Revoking per object for all roles at once rewrites each ACL
 * once; DROP OWNED rewrites it once per role, which is quadratic when 1,000 grants share a table.
 */
export const privilegeHolders = (roleOids: readonly string[]): Statement => ({
  text: `WITH d AS (
           SELECT s.classid, s.objid, r.rolname::text AS rolname
             FROM pg_catalog.pg_shdepend s JOIN pg_catalog.pg_roles r ON r.oid = s.refobjid
            WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
              AND s.deptype = 'a' AND s.refclassid = 'pg_catalog.pg_authid'::regclass AND s.refobjid = ANY($1::oid[]))
         SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind, n.nspname::text AS schema, c.relname::text AS name,
                array_agg(DISTINCT d.rolname) AS roles
           FROM d JOIN pg_catalog.pg_class c ON d.classid = 'pg_catalog.pg_class'::regclass AND c.oid = d.objid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          GROUP BY 1, 2, 3
         UNION ALL
         SELECT 'SCHEMA', NULL, n.nspname::text, array_agg(DISTINCT d.rolname)
           FROM d JOIN pg_catalog.pg_namespace n ON d.classid = 'pg_catalog.pg_namespace'::regclass AND n.oid = d.objid
          GROUP BY 3`,
  values: [roleOids],
});

/** An ACL entry's grantee as a name, PUBLIC for 0. */
const GRANTEE = `CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END`;

/**
 * What the roles own, in the current database, that anyone but its owner may use: relations and
 * schemas with their grantees, routines with theirs (PUBLIC may execute a routine by default) and
 * whether each runs as its owner. Objects handed to the shared orphan owner must be usable by no
 * one after: a SECURITY DEFINER function, or a view granted to PUBLIC, left by one revoked grant
 * otherwise ran with the rights of every object other revoked grants left there (review 2026-12-02).
 * `name` of a routine is its regprocedure text, a valid reference in this session.
 */
export const ownedObjectsInUse = (roleOids: readonly string[]): Statement => ({
  text: `SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind, n.nspname::text AS schema, c.relname::text AS name,
                array_agg(DISTINCT ${GRANTEE}) AS grantees, false AS definer, NULL::text[] AS columns
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace, pg_catalog.aclexplode(c.relacl) a
          WHERE c.relowner = ANY($1::oid[]) AND a.grantee <> c.relowner
          GROUP BY 1, 2, 3
         UNION ALL
         SELECT 'COLUMNS', n.nspname::text, c.relname::text, array_agg(DISTINCT ${GRANTEE}), false, array_agg(DISTINCT t.attname::text)
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_catalog.pg_attribute t ON t.attrelid = c.oid AND t.attnum > 0 AND NOT t.attisdropped AND t.attacl IS NOT NULL,
                pg_catalog.aclexplode(t.attacl) a
          WHERE c.relowner = ANY($1::oid[]) AND a.grantee <> c.relowner
          GROUP BY 1, 2, 3
         UNION ALL
         SELECT 'LARGE OBJECT', NULL, l.oid::text, array_agg(DISTINCT ${GRANTEE}), false, NULL
           FROM pg_catalog.pg_largeobject_metadata l, pg_catalog.aclexplode(l.lomacl) a
          WHERE l.lomowner = ANY($1::oid[]) AND a.grantee <> l.lomowner
          GROUP BY 1, 2, 3
         UNION ALL
         SELECT 'SCHEMA', NULL, n.nspname::text, array_agg(DISTINCT ${GRANTEE}), false, NULL
           FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
          WHERE n.nspowner = ANY($1::oid[]) AND a.grantee <> n.nspowner
          GROUP BY 3
         UNION ALL
         SELECT CASE WHEN p.prokind = 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, NULL, p.oid::pg_catalog.regprocedure::text,
                coalesce(array_agg(DISTINCT ${GRANTEE}) FILTER (WHERE a.grantee IS NOT NULL AND a.grantee <> p.proowner), '{}'), bool_or(p.prosecdef), NULL
           FROM pg_catalog.pg_proc p LEFT JOIN LATERAL pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a ON true
          WHERE p.proowner = ANY($1::oid[]) AND p.prokind IN ('f', 'p', 'w')
          GROUP BY 1, 2, 3`,
  values: [roleOids],
});

export type OwnedKind = 'TABLE' | 'SEQUENCE' | 'COLUMNS' | 'LARGE OBJECT' | 'SCHEMA' | 'FUNCTION' | 'PROCEDURE';

/** Statements that leave an owned object usable by its owner alone (see ownedObjectsInUse). */
export function neutralise(kind: OwnedKind, schema: string | null, name: string, grantees: readonly string[], definer: boolean, columns: readonly string[] | null = null): string[] {
  const routine = kind === 'FUNCTION' || kind === 'PROCEDURE';
  const qualified = schema === null ? quoteIdent(name) : `${quoteIdent(schema)}.${quoteIdent(name)}`;
  const out: string[] = [];
  if (routine && definer) out.push(`ALTER ${kind} ${name} SECURITY INVOKER`);
  const from = grantees.map((g) => (g === 'PUBLIC' ? 'PUBLIC' : quoteIdent(g)));
  if (from.length === 0) return out;
  // CASCADE: what a grantee passed on with a grant option goes too (without it PostgreSQL refuses
  // the REVOKE, "dependent privileges exist", and the whole revocation failed on every retry).
  const on = routine ? `${kind} ${name}`
    : kind === 'LARGE OBJECT' ? `LARGE OBJECT ${Number(name)}`
      : kind === 'COLUMNS' ? `TABLE ${qualified}`
        : kind === 'SCHEMA' ? `SCHEMA ${quoteIdent(name)}` : `${kind} ${qualified}`;
  const privileges = kind === 'COLUMNS' ? `ALL (${(columns ?? []).map(quoteIdent).join(', ')})` : 'ALL';
  out.push(`REVOKE ${privileges} ON ${on} FROM ${from.join(', ')} CASCADE`);
  return out;
}

export function revokeAllOn(kind: BatchRevocable, schema: string | null, name: string, roles: readonly string[]): string {
  const object = kind === 'SCHEMA' || schema === null ? quoteIdent(name) : `${quoteIdent(schema)}.${quoteIdent(name)}`;
  const k: BatchRevocable = kind === 'SEQUENCE' ? 'SEQUENCE' : kind === 'SCHEMA' ? 'SCHEMA' : 'TABLE';
  // CASCADE: what the roles passed on with a grant option goes with it (third review: otherwise
  // "dependent privileges exist" failed the revocation for good, PUBLIC still reading).
  return `REVOKE ALL ON ${k} ${object} FROM ${roleList(roles)} CASCADE`;
}
