import { Duration, Environment } from '@marcbachmann/cel-js/evaluator';
import type { Principal } from '../domain/principal.js';
import { unknownTimeZone } from './cel-time.js';

/**
 * Rule conditions in CEL. Expressions are parsed and type-checked once at load; evaluation runs
 * the compiled tree against typed values (never eval / new Function). Variables:
 *   request.duration (duration), request.reason, request.ticket (string, "" when absent)
 *   requester.name, .kind ("user" | "workload"), .email, .groups (list), .attributes (map), .admin
 *   resource.name, .kind, .labels (map)      role (string)      now (timestamp)
 */
export class CelRequest {
  constructor(
    readonly duration: Duration,
    readonly reason: string,
    readonly ticket: string,
  ) {}
}

export class CelRequester {
  constructor(
    readonly name: string,
    readonly kind: string,
    readonly email: string,
    readonly groups: readonly string[],
    readonly attributes: Readonly<Record<string, string>>,
    readonly admin: boolean,
  ) {}
}

export class CelResource {
  constructor(
    readonly name: string,
    readonly kind: string,
    readonly labels: Readonly<Record<string, string>>,
  ) {}
}

export interface CelContext {
  request: CelRequest;
  requester: CelRequester;
  resource: CelResource;
  role: string;
  now: Date;
}

export type CompiledCondition = (ctx: CelContext) => { ok: true; value: boolean } | { ok: false; error: string };

const env = new Environment({
  limits: { maxAstNodes: 500, maxDepth: 32, maxListElements: 100, maxMapEntries: 100, maxCallArguments: 8 },
})
  .registerType('hallpass.Request', {
    ctor: CelRequest,
    fields: { duration: 'google.protobuf.Duration', reason: 'string', ticket: 'string' },
  })
  .registerType('hallpass.Requester', {
    ctor: CelRequester,
    fields: {
      name: 'string',
      kind: 'string',
      email: 'string',
      groups: 'list<string>',
      attributes: 'map<string, string>',
      admin: 'bool',
    },
  })
  .registerType('hallpass.Resource', {
    ctor: CelResource,
    fields: { name: 'string', kind: 'string', labels: 'map<string, string>' },
  })
  .registerVariable('request', 'hallpass.Request')
  .registerVariable('requester', 'hallpass.Requester')
  .registerVariable('resource', 'hallpass.Resource')
  .registerVariable('role', 'string')
  .registerVariable('now', 'google.protobuf.Timestamp');

/** Longest condition accepted, in characters. */
export const MAX_CONDITION_LENGTH = 2000;

/** Parses and type-checks a condition; it must be a bool expression over the known variables. */
export function compileCondition(source: string): { ok: true; run: CompiledCondition } | { ok: false; error: string } {
  if (source.length > MAX_CONDITION_LENGTH) return { ok: false, error: `is longer than ${MAX_CONDITION_LENGTH} characters` };
  let parsed: ReturnType<typeof env.parse>;
  try {
    parsed = env.parse(source);
  } catch (err) {
    return { ok: false, error: `does not compile: ${celMessage(err)}` };
  }
  const checked = parsed.check();
  if (!checked.valid) return { ok: false, error: `does not compile: ${celMessage(checked.error)}` };
  if (checked.type !== 'bool') return { ok: false, error: `must be a bool expression, not ${String(checked.type)}` };
  const badZone = unknownTimeZone(parsed.ast);
  if (badZone !== undefined) return { ok: false, error: `unknown time zone ${JSON.stringify(badZone)}` };
  const run: CompiledCondition = (ctx) => {
    // A failing condition (a missing map key, say) throws; nobody reads that stack, and capturing
    // it is most of the cost of the failure. Synchronous, so no other code sees the change.
    const stackLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      const value: unknown = parsed(ctx);
      if (typeof value !== 'boolean') return { ok: false, error: 'did not return a bool' };
      return { ok: true, value };
    } catch (err) {
      return { ok: false, error: celMessage(err) };
    } finally {
      Error.stackTraceLimit = stackLimit;
    }
  };
  return { ok: true, run };
}

/** CEL messages carry a source excerpt after the first line; keep the first line only. */
function celMessage(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0] ?? text;
}

export function celRequester(p: Principal): CelRequester {
  return new CelRequester(p.name, p.kind, p.email ?? '', p.groups, p.attributes, p.isAdmin);
}

export function celRequest(durationSeconds: number, reason: string | undefined, ticket: string | undefined): CelRequest {
  return new CelRequest(new Duration(durationSeconds), reason ?? '', ticket ?? '');
}
