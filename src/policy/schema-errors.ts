import type { TSchema } from '@sinclair/typebox';
import { ValueErrorType } from '@sinclair/typebox/errors';
import type { ValueError } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';
import type { Path } from './errors.js';
import { quote } from './names.js';

/**
 * A structural problem at a path. `anchor` says which line shows it best: the value's, the key's
 * (an unknown key), or the parent's key (a missing field: `approval:` above the mapping).
 */
export interface SchemaProblem {
  readonly path: Path;
  readonly message: string;
  readonly anchor: 'value' | 'key' | 'parent';
}

/** Every structural problem of `value` against `schema`, one per path, with readable messages. */
export function schemaProblems(schema: TSchema, value: unknown, base: Path = []): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  const seen = new Set<string>();
  for (const error of Value.Errors(schema, value)) {
    const path = [...base, ...pointerToPath(error.path, value)];
    const id = path.join('\u0000');
    if (seen.has(id)) continue;
    seen.add(id);
    const nested = unionObjectBranch(error);
    if (nested) {
      for (const p of schemaProblems(nested, error.value, path)) out.push(p);
      continue;
    }
    const anchor =
      error.type === ValueErrorType.ObjectAdditionalProperties ? 'key' : error.type === ValueErrorType.ObjectRequiredProperty ? 'parent' : 'value';
    out.push({ path, message: describe(error), anchor });
  }
  return out;
}

/** For `auto | {approvals, from}` given an object, explain against the object branch. */
function unionObjectBranch(error: ValueError): TSchema | undefined {
  if (error.type !== ValueErrorType.Union || !isPlainObject(error.value)) return undefined;
  const variants = (error.schema as { anyOf?: TSchema[] }).anyOf ?? [];
  return variants.find((v) => v.type === 'object');
}

function describe(error: ValueError): string {
  const s = error.schema as Record<string, unknown>;
  switch (error.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return 'is required';
    case ValueErrorType.ObjectAdditionalProperties: {
      const key = error.path.split('/').pop() ?? '';
      return `unknown key ${quote(unescapePointer(key))}`;
    }
    case ValueErrorType.String:
      return `expected a string, got ${kindOf(error.value)}`;
    case ValueErrorType.Boolean:
      return `expected true or false, got ${kindOf(error.value)}`;
    case ValueErrorType.Integer:
    case ValueErrorType.Number:
      return `expected a number, got ${kindOf(error.value)}`;
    case ValueErrorType.Array:
      return `expected a list, got ${kindOf(error.value)}`;
    case ValueErrorType.Object:
      return `expected a mapping, got ${kindOf(error.value)}`;
    case ValueErrorType.ArrayMinItems:
      return `needs at least ${String(s.minItems)} item(s)`;
    case ValueErrorType.Union:
      return typeof s.hint === 'string' ? s.hint : error.message;
    default:
      return error.message;
  }
}

function kindOf(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${quote(String(value))}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function unescapePointer(seg: string): string {
  return seg.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** `/rules/2/duration` -> ['rules', 2, 'duration'], numbers only where the data is a list. */
function pointerToPath(pointer: string, root: unknown): Path {
  if (pointer === '') return [];
  const out: (string | number)[] = [];
  let node: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = unescapePointer(raw);
    if (Array.isArray(node) && /^\d+$/.test(seg)) {
      const i = Number(seg);
      out.push(i);
      node = node[i];
    } else {
      out.push(seg);
      node = isPlainObject(node) ? node[seg] : undefined;
    }
  }
  return out;
}
