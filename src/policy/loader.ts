import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { buildGroups, buildUsers } from './build-people.js';
import { buildResources } from './build-resources.js';
import type { KindSchemas } from './build-resources.js';
import { buildRules } from './build-rules.js';
import { compiledPolicy } from './compiled.js';
import type { PolicyError } from './errors.js';
import { checkName, quote } from './names.js';
import { Reporter } from './report.js';
import { PolicyFileSchema } from './schema.js';
import { schemaProblems } from './schema-errors.js';
import { MAX_POLICY_BYTES, parseSource } from './source.js';
import type { BreakGlassDef, Policy } from './types.js';

export type { KindSchemas };
export type LoadResult = { ok: true; policy: Policy } | { ok: false; errors: PolicyError[] };

export const DEFAULT_PENDING_TTL_SECONDS = 3600;
/** More than this many problems are summarised: the first ones are what a person fixes first. */
const MAX_ERRORS = 100;

/**
 * Parses and validates a policy. Never throws for bad input: every problem found comes back
 * with its file, line and field path. `kinds` supplies each target kind's TypeBox schemas for
 * `connection` and role `privileges`.
 */
export function loadPolicy(text: string, opts: { file: string; kinds: KindSchemas }): LoadResult {
  return load(text, opts.file, opts.kinds, createHash('sha256').update(text, 'utf8').digest('hex'));
}

function load(text: string, file: string, kinds: KindSchemas, version: string): LoadResult {
  const parsed = parseSource(text);
  if (!parsed.ok) {
    return { ok: false, errors: parsed.problems.slice(0, MAX_ERRORS).map((p) => ({ file, line: p.line, path: '', message: p.message })) };
  }
  const r = new Reporter(file, parsed.lines);
  const data = parsed.data;
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    r.at([], 'a policy file is a mapping with resources: and rules:');
    return { ok: false, errors: r.errors };
  }
  for (const p of schemaProblems(PolicyFileSchema, data)) r.problem(p);

  const doc = data as Record<string, unknown>;
  const settings = (doc.settings ?? {}) as { pendingTtl?: unknown };
  const pendingTtlSeconds =
    typeof settings.pendingTtl === 'string' ? r.duration(['settings', 'pendingTtl'], settings.pendingTtl) : DEFAULT_PENDING_TTL_SECONDS;
  const groups = buildGroups(r, doc.groups);
  const users = buildUsers(r, doc.users, groups);
  const resources = buildResources(r, doc.resources, kinds);
  const { rules, conditions } = buildRules(r, doc.rules, {
    users,
    groups,
    resources,
    pendingTtlSeconds: pendingTtlSeconds ?? DEFAULT_PENDING_TTL_SECONDS,
  });
  const breakGlass = buildBreakGlass(r, doc.breakGlass, groups);

  if (r.errors.length > 0 || pendingTtlSeconds === undefined) {
    const errors = r.errors.sort((a, b) => a.line - b.line);
    if (errors.length <= MAX_ERRORS) return { ok: false, errors };
    const rest = errors.length - MAX_ERRORS;
    return { ok: false, errors: [...errors.slice(0, MAX_ERRORS), { file, line: errors[MAX_ERRORS]?.line ?? 1, path: '', message: `... and ${rest} more` }] };
  }
  const policy: Policy = {
    version,
    source: file,
    resources,
    users,
    groups,
    rules,
    breakGlass,
    settings: { pendingTtlSeconds },
  };
  compiledPolicy(policy, conditions);
  return { ok: true, policy };
}

function buildBreakGlass(r: Reporter, raw: unknown, groups: ReadonlyMap<string, unknown>): BreakGlassDef | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const bg = raw as { groups?: unknown; maxDuration?: unknown };
  if (!Array.isArray(bg.groups) || typeof bg.maxDuration !== 'string') return undefined;
  const names = bg.groups.filter((g): g is string => typeof g === 'string');
  if (names.length === 0) r.at(['breakGlass', 'groups'], 'needs at least one group');
  names.forEach((g, j) => {
    if (checkName(g) !== undefined || !groups.has(g)) r.at(['breakGlass', 'groups', j], `unknown group ${quote(g)}`);
  });
  const max = r.duration(['breakGlass', 'maxDuration'], bg.maxDuration);
  return max === undefined ? undefined : { groups: names, maxDurationSeconds: max };
}

/** Reads and loads a policy file; `version` is the sha256 of its bytes. */
export async function loadPolicyFile(path: string, kinds: KindSchemas): Promise<LoadResult> {
  const file = path;
  let bytes: Buffer;
  try {
    const info = await stat(path);
    if (info.size > MAX_POLICY_BYTES) {
      return { ok: false, errors: [{ file, line: 1, path: '', message: `file is ${info.size} bytes; the limit is ${MAX_POLICY_BYTES}` }] };
    }
    bytes = await readFile(path);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return { ok: false, errors: [{ file, line: 1, path: '', message: `cannot read: ${message}` }] };
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return { ok: false, errors: [{ file, line: 1, path: '', message: 'is not valid UTF-8' }] };
  }
  return load(text, file, kinds, createHash('sha256').update(bytes).digest('hex'));
}
