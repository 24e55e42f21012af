import { Value } from '@sinclair/typebox/value';
import type { GroupDef, UserDef } from './types.js';
import { checkAttributeValue, checkLabelKey, checkName, quote } from './names.js';
import type { Reporter } from './report.js';
import { GroupSchema, UserSchema } from './schema.js';
import type { Path } from './errors.js';

const EMAIL = /^[^\s@"'<>;]{1,64}@[^\s@"'<>;]{1,255}$/;

export function buildGroups(r: Reporter, raw: unknown): Map<string, GroupDef> {
  const groups = new Map<string, GroupDef>();
  const seen = new Map<string, Path>();
  for (const [i, g] of items(raw)) {
    if (!Value.Check(GroupSchema, g)) continue;
    const path = ['groups', i, 'name'];
    if (!r.check(path, checkName(g.name)) || !r.unique(seen, g.name, path, 'group')) continue;
    groups.set(g.name, { name: g.name, description: g.description });
  }
  return groups;
}

export function buildUsers(r: Reporter, raw: unknown, groups: ReadonlyMap<string, GroupDef>): Map<string, UserDef> {
  const users = new Map<string, UserDef>();
  const seen = new Map<string, Path>();
  for (const [i, u] of items(raw)) {
    if (!Value.Check(UserSchema, u)) continue;
    const at = (...rest: (string | number)[]) => ['users', i, ...rest];
    // Kept when the name is good, so rules naming the user report no misleading second error.
    const named = r.check(at('name'), checkName(u.name)) && r.unique(seen, u.name, at('name'), 'user');
    if (u.email !== undefined && !EMAIL.test(u.email)) r.at(at('email'), `${quote(u.email)} is not an email address`);
    if (u.passwordHash !== undefined && !u.passwordHash.startsWith('scrypt$')) {
      r.at(at('passwordHash'), 'must be an scrypt hash (scrypt$N$r$p$salt$hash), never a plain password');
    }
    (u.groups ?? []).forEach((g, j) => {
      if (!groups.has(g)) r.at(at('groups', j), `unknown group ${quote(g)}`);
    });
    const attributes = checkAttributes(r, at('attributes'), u.attributes ?? {});
    if (!named) continue;
    users.set(u.name, {
      name: u.name,
      email: u.email,
      passwordHash: u.passwordHash,
      groups: u.groups ?? [],
      admin: u.admin ?? false,
      attributes: attributes ?? {},
    });
  }
  return users;
}

/** Validates keys (label-like) and values (bounded text); returns a null-prototype copy. */
export function checkAttributes(r: Reporter, path: Path, raw: Record<string, string>): Record<string, string> | undefined {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  let ok = true;
  for (const [k, v] of Object.entries(raw)) {
    const keyError = checkLabelKey(k);
    if (keyError) {
      r.at([...path, k], keyError, true);
      ok = false;
      continue;
    }
    ok = r.check([...path, k], checkAttributeValue(v)) && ok;
    out[k] = v;
  }
  return ok ? out : undefined;
}

export function fail(r: Reporter, path: Path, message: string): false {
  r.at(path, message);
  return false;
}

/** Index and item of a list that passed the file schema (anything else yields nothing). */
export function items(raw: unknown): [number, unknown][] {
  return Array.isArray(raw) ? raw.map((v: unknown, i) => [i, v]) : [];
}
