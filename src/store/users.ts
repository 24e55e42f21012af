import type { Selectable } from 'kysely';
import { newUserId } from '../domain/ids.js';
import type { Principal } from '../domain/principal.js';
import type { Executor } from './db.js';
import type { UsersTable } from './schema.js';

export type UserRow = Selectable<UsersTable>;

export async function getUserById(ex: Executor, id: string): Promise<UserRow | undefined> {
  return ex.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function getUserByName(ex: Executor, name: string): Promise<UserRow | undefined> {
  return ex.selectFrom('users').selectAll().where('name', '=', name).executeTakeFirst();
}

export interface UserSpec {
  name: string;
  kind: UserRow['kind'];
  email?: string | undefined;
  passwordHash?: string | undefined;
  groups: readonly string[];
  attributes: Readonly<Record<string, string>>;
  isAdmin: boolean;
  source: UserRow['source'];
}

/**
 * Creates the user or brings it up to date with `spec`. Returns the row and what changed
 * (for the audit log), or undefined `changes` when nothing did.
 */
export async function upsertUser(
  ex: Executor,
  spec: UserSpec,
  now: number,
): Promise<{ row: UserRow; created: boolean; changes: string[] }> {
  const existing = await getUserByName(ex, spec.name);
  const values = {
    kind: spec.kind,
    email: spec.email ?? null,
    password_hash: spec.passwordHash ?? null,
    groups: JSON.stringify([...spec.groups].sort()),
    attributes: JSON.stringify(spec.attributes),
    is_admin: spec.isAdmin ? 1 : 0,
    source: spec.source,
  };
  if (!existing) {
    const row: UserRow = { id: newUserId(), name: spec.name, disabled: 0, created_at: now, updated_at: now, sso_issuer: null, sso_subject: null, ...values };
    await ex.insertInto('users').values(row).execute();
    return { row, created: true, changes: [] };
  }
  const changes = (Object.keys(values) as Array<keyof typeof values>).filter((k) => existing[k] !== values[k]);
  if (changes.length === 0 && existing.disabled === 0) return { row: existing, created: false, changes };
  const row = await ex
    .updateTable('users')
    .set({ ...values, disabled: 0, updated_at: now })
    .where('id', '=', existing.id)
    .returningAll()
    .executeTakeFirstOrThrow();
  return { row, created: false, changes: existing.disabled ? [...changes, 'enabled'] : changes };
}

/** Disables users of `source` that are not in `keep` (e.g. removed from the policy file). */
export async function disableMissingUsers(
  ex: Executor,
  source: UserRow['source'],
  keep: ReadonlySet<string>,
  now: number,
): Promise<string[]> {
  const rows = await ex.selectFrom('users').select(['id', 'name']).where('source', '=', source).where('disabled', '=', 0).execute();
  const gone = rows.filter((r) => !keep.has(r.name));
  for (const r of gone) {
    await ex.updateTable('users').set({ disabled: 1, updated_at: now }).where('id', '=', r.id).execute();
  }
  return gone.map((r) => r.name);
}

export function toPrincipal(row: UserRow, mfaAt?: number): Principal {
  return {
    id: row.id,
    kind: row.kind,
    name: row.name,
    email: row.email ?? undefined,
    groups: JSON.parse(row.groups) as string[],
    isAdmin: row.is_admin === 1,
    attributes: JSON.parse(row.attributes) as Record<string, string>,
    mfaAt,
  };
}
