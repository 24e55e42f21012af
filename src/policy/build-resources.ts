import { Value } from '@sinclair/typebox/value';
import type { ProviderFactory } from '../providers/provider.js';
import type { Path } from './errors.js';
import { fail, items } from './build-people.js';
import { checkLabelKey, checkLabelValue, checkName, quote } from './names.js';
import type { Reporter } from './report.js';
import { ResourceSchema } from './schema.js';
import type { RawRole } from './schema.js';
import { schemaProblems } from './schema-errors.js';
import type { ResourceDef, RoleDef } from './types.js';

export type KindSchemas = ReadonlyMap<string, Pick<ProviderFactory, 'kind' | 'connectionSchema' | 'privilegesSchema'>>;

export function buildResources(r: Reporter, raw: unknown, kinds: KindSchemas): Map<string, ResourceDef> {
  const resources = new Map<string, ResourceDef>();
  const seen = new Map<string, Path>();
  for (const [i, res] of items(raw)) {
    if (!Value.Check(ResourceSchema, res)) continue;
    const at = (...rest: (string | number)[]): Path => ['resources', i, ...rest];
    let ok = r.check(at('name'), checkName(res.name)) && r.unique(seen, res.name, at('name'), 'resource');
    const labels = checkLabels(r, at('labels'), res.labels ?? {});
    const kind = kinds.get(res.kind);
    if (!kind) {
      const known = [...kinds.keys()].sort().join(', ') || 'none';
      ok = fail(r, at('kind'), `unknown kind ${quote(res.kind)} (known: ${known})`);
    } else {
      ok = schemaInto(r, kind.connectionSchema, res.connection, at('connection')) && ok;
    }
    const roles = new Map<string, RoleDef>();
    const roleEntries = Object.entries(res.roles);
    if (roleEntries.length === 0) ok = fail(r, at('roles'), 'a resource needs at least one role');
    for (const [name, role] of roleEntries) {
      const role_ = buildRole(r, at('roles', name), name, role);
      if (kind) ok = schemaInto(r, kind.privilegesSchema, role.privileges, at('roles', name, 'privileges')) && ok;
      if (role_) roles.set(name, role_);
      else ok = false;
    }
    if (!ok || !labels) continue;
    resources.set(res.name, {
      name: res.name,
      kind: res.kind,
      description: res.description,
      labels,
      connection: res.connection,
      roles,
    });
  }
  return resources;
}

function buildRole(r: Reporter, path: Path, name: string, role: RawRole): RoleDef | undefined {
  const nameError = checkName(name);
  if (nameError) {
    r.at(path, `role ${nameError}`, true);
    return undefined;
  }
  let ok = true;
  (role.guardrails ?? []).forEach((g, j) => {
    ok = r.check([...path, 'guardrails', j], checkName(g)) && ok;
  });
  if (!ok) return undefined;
  return {
    name,
    description: role.description,
    privileges: role.privileges,
    guardrails: role.guardrails,
    readOnly: role.readOnly ?? false,
  };
}

/** Reports every problem of a provider-defined part (connection, privileges) under `path`. */
function schemaInto(r: Reporter, schema: Parameters<typeof schemaProblems>[0], value: unknown, path: Path): boolean {
  const problems = schemaProblems(schema, value, path);
  for (const p of problems) r.at(p.path, p.message, p.atKey);
  return problems.length === 0;
}

export function checkLabels(r: Reporter, path: Path, raw: Record<string, string>): Record<string, string> | undefined {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  let ok = true;
  for (const [k, v] of Object.entries(raw)) {
    const keyError = checkLabelKey(k);
    if (keyError) {
      r.at([...path, k], keyError, true);
      ok = false;
      continue;
    }
    ok = r.check([...path, k], checkLabelValue(v)) && ok;
    out[k] = v;
  }
  return ok ? out : undefined;
}
