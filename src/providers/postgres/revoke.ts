import { ProviderError } from '../provider.js';
import { exec, type AdminConnections, type Queryable } from './connection.js';
import * as sql from './sql.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** How long to wait for terminated backends to exit before giving up (retryably). */
const TERMINATE_DEADLINE_MS = 10_000;

/**
 * Terminates every backend of these roles (by oid, which survives DROP ROLE) and waits until
 * none is left. Without pg_signal_backend (or superuser) the signal is refused and this times out.
 */
async function terminateAndWait(pool: Queryable, oids: readonly string[]): Promise<void> {
  const deadline = Date.now() + TERMINATE_DEADLINE_MS;
  for (;;) {
    const r = await exec<{ n: number }>(pool, sql.terminateBackends(oids));
    const n = r.rows[0]?.n ?? 0;
    if (n === 0) return;
    if (Date.now() > deadline) {
      throw new ProviderError(`postgres revoke: ${n} session(s) still running after terminate (does the admin have pg_signal_backend?)`, true);
    }
    await sleep(5);
  }
}

async function ensureOrphanOwner(pool: Queryable, orphan: string): Promise<void> {
  const r = await exec(pool, sql.roleExists(orphan));
  if (r.rowCount) return;
  try {
    await pool.query(sql.createOrphanOwner(orphan));
  } catch (err) {
    // Another hallpass instance created it first: that is the state we wanted.
    if (!(typeof err === 'object' && err !== null && 'code' in err && err.code === '42710')) throw err;
  }
}

/**
 * The revocation sequence (see docs/providers/postgres.md). Each step is idempotent, so a
 * retry after a crash at any point converges:
 * 1. NOLOGIN for all, in one round trip, committed before anything else: no new sessions.
 * 2. Terminate every session of those roles and wait until they are gone.
 * 3. In each database where they own objects or hold privileges: REVOKE ALL per table,
 *    sequence and schema for all the roles at once (fast path), REASSIGN OWNED to the orphan
 *    owner (nothing they made is lost), then DROP OWNED (revokes whatever privileges remain).
 * 4. DROP ROLE IF EXISTS for all, then a last sweep for any session that slipped in while
 *    step 1 was committing.
 */
export async function revokeRoles(conns: AdminConnections, roles: readonly string[], orphan: string): Promise<void> {
  // One session holds the catalog lock for the whole sequence and runs every step in this database.
  const session = await conns.pool.connect();
  try {
    await session.query(sql.lockCatalog());
    const inDatabase = <T>(db: string, fn: (c: Queryable) => Promise<T>) => (db === conns.database ? fn(session) : conns.withDatabase(db, fn));
    await revokeLocked(session, inDatabase, roles, orphan);
  } finally {
    // Unlocking a broken session fails; closing it releases the lock anyway.
    const unlocked = await session.query(sql.unlockCatalog()).then(
      () => true,
      () => false,
    );
    session.release(unlocked ? undefined : true);
  }
}

async function revokeLocked(
  pool: Queryable,
  inDatabase: <T>(db: string, fn: (c: Queryable) => Promise<T>) => Promise<T>,
  roles: readonly string[],
  orphan: string,
): Promise<void> {
  const found = await exec<{ oid: string; rolname: string }>(pool, sql.existingRoles(roles));
  if (found.rows.length === 0) return;
  const names = found.rows.map((r) => r.rolname);
  const oids = found.rows.map((r) => r.oid);

  await pool.query(names.map(sql.noLogin).join(';\n'));
  await terminateAndWait(pool, oids);

  const dbs = await exec<{ datname: string }>(pool, sql.dependentDatabases(oids));
  if (dbs.rows.length > 0) {
    await ensureOrphanOwner(pool, orphan);
    for (const { datname } of dbs.rows) {
      await inDatabase(datname, async (c) => {
        const held = await exec<{ kind: sql.BatchRevocable; schema: string | null; name: string; roles: string[] }>(c, sql.privilegeHolders(oids));
        // What they own goes to the shared orphan owner usable by no one else, running as no one.
        const owned = await exec<{ kind: sql.OwnedKind; schema: string | null; name: string; grantees: string[]; definer: boolean; columns: string[] | null }>(c, sql.ownedObjectsInUse(oids));
        const statements = [
          ...held.rows.map((h) => sql.revokeAllOn(h.kind, h.schema, h.name, h.roles)),
          ...owned.rows.flatMap((o) => sql.neutralise(o.kind, o.schema, o.name, o.grantees, o.definer, o.columns)),
          sql.reassignOwned(names, orphan), sql.dropOwned(names),
        ];
        // One simple-protocol message: runs as one implicit transaction.
        await c.query(statements.join(';\n'));
      });
    }
  }
  await pool.query(sql.dropRoles(names));
  await terminateAndWait(pool, oids);
}
