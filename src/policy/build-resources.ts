import { Value } from '@sinclair/typebox/value';
import type { ProviderFactory } from '../providers/provider.js';
import type { Path } from './errors.js';
import { items } from './build-people.js';
import { checkLabelKey, checkLabelValue, checkName, quote } from './names.js';
import type { Reporter } from './report.js';
import { ResourceGatewaySchema, ResourceSchema } from './schema.js';
import type { RawResourceGateway, RawRole } from './schema.js';
import { schemaProblems } from './schema-errors.js';
import type { ResourceDef, ResourceGatewaySettings, RoleDef } from './types.js';

export type KindSchemas = ReadonlyMap<string, Pick<ProviderFactory, 'kind' | 'connectionSchema' | 'privilegesSchema' | 'guardrails'>>;

export function buildResources(r: Reporter, raw: unknown, kinds: KindSchemas): Map<string, ResourceDef> {
  const resources = new Map<string, ResourceDef>();
  const seen = new Map<string, Path>();
  for (const [i, res] of items(raw)) {
    if (!Value.Check(ResourceSchema, res)) continue;
    const at = (...rest: (string | number)[]): Path => ['resources', i, ...rest];
    // A resource with a valid, unique name is kept even when other parts are wrong, so rules that
    // name it do not report a second, misleading error. The load fails on the first error anyway.
    const named = r.check(at('name'), checkName(res.name)) && r.unique(seen, res.name, at('name'), 'resource');
    const labels = checkLabels(r, at('labels'), res.labels ?? {});
    const kind = kinds.get(res.kind);
    if (!kind) {
      const known = [...kinds.keys()].sort().join(', ') || 'none';
      r.at(at('kind'), `unknown kind ${quote(res.kind)} (known: ${known})`);
    } else {
      schemaInto(r, kind.connectionSchema, res.connection, at('connection'));
    }
    const gateway = buildGateway(r, at('gateway'), res.gateway, kind);
    const roles = new Map<string, RoleDef>();
    const roleEntries = Object.entries(res.roles);
    if (roleEntries.length === 0) r.at(at('roles'), 'a resource needs at least one role');
    for (const [name, role] of roleEntries) {
      const def = buildRole(r, at('roles', name), name, role);
      if (kind) schemaInto(r, kind.privilegesSchema, role.privileges, at('roles', name, 'privileges'));
      if (kind) checkGuardrails(r, at('roles', name, 'guardrails'), role.guardrails ?? [], kind);
      if (def) roles.set(name, def);
    }
    if (!named) continue;
    resources.set(res.name, {
      name: res.name,
      kind: res.kind,
      description: res.description,
      labels: labels ?? {},
      connection: res.connection,
      gateway,
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
  (role.guardrails ?? []).forEach((g, j) => r.check([...path, 'guardrails', j], checkName(g)));
  return {
    name,
    description: role.description,
    privileges: role.privileges,
    guardrails: role.guardrails,
    readOnly: role.readOnly ?? false,
  };
}

/** The resource's `gateway:` settings; on a kind without a gateway they would silently do nothing, so they are refused. */
function buildGateway(r: Reporter, path: Path, raw: unknown, kind: { kind: string; guardrails?: readonly string[] | undefined } | undefined): ResourceGatewaySettings {
  const off: ResourceGatewaySettings = { storeParameters: false };
  if (raw === undefined) return off;
  const problems = schemaProblems(ResourceGatewaySchema, raw, path);
  for (const p of problems) r.problem(p);
  if (problems.length > 0) return off;
  if (kind && !kind.guardrails) r.at(path, `kind ${kind.kind} has no gateway`);
  return { storeParameters: (raw as RawResourceGateway).storeParameters ?? false };
}

/** A guardrail the kind's gateway does not know would silently guard nothing: refuse it. */
function checkGuardrails(r: Reporter, path: Path, names: readonly string[], kind: { kind: string; guardrails?: readonly string[] | undefined }): void {
  names.forEach((g, j) => {
    if (!kind.guardrails) r.at([...path, j], `kind ${kind.kind} has no gateway guardrails`);
    else if (!kind.guardrails.includes(g)) r.at([...path, j], `unknown guardrail ${quote(g)} (known: ${kind.guardrails.join(', ')})`);
  });
}

/** Reports every problem of a provider-defined part (connection, privileges) under `path`. */
function schemaInto(r: Reporter, schema: Parameters<typeof schemaProblems>[0], value: unknown, path: Path): void {
  for (const p of schemaProblems(schema, value, path)) r.problem(p);
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
