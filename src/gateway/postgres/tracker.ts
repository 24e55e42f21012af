import { checkFunctionCall, type GuardDecision, type GuardrailChecker } from './guardrails.js';
import {
  BackendCode,
  FrontendCode,
  readBind,
  readCommandTag,
  readErrorFields,
  readExecute,
  readFunctionCall,
  readParse,
  readQuery,
  rowsFromTag,
} from './messages.js';
import * as ser from './serializer.js';

/** Where statement audit events go (the session adds who/where). */
export type StatementEmitter = (
  type: 'gateway.query' | 'gateway.statement' | 'gateway.execute' | 'gateway.function_call',
  data: Record<string, unknown>,
) => void;

export interface TrackerPolicy {
  readonly resource: string;
  readonly role: string;
  readonly guardrails: readonly string[];
  readonly readOnly: boolean;
  readonly storeParameters: boolean;
}

const enum Kind {
  Query,
  Parse,
  Bind,
  Execute,
  Describe,
  Close,
  Sync,
  Function,
}

type Denial = Extract<GuardDecision, { allowed: false }>;

/** A prepared statement as the client defined it. Its text is audited once: with its first execution. */
interface Statement {
  readonly id: number;
  readonly name: string;
  readonly sql: string;
  /** The target accepted the Parse. */
  ok: boolean;
  /** Its text is in the audit already. */
  audited: boolean;
}

/** A request forwarded upstream and not yet answered. Answers come back in order. */
interface Pending {
  kind: Kind;
  start: number;
  sql?: string;
  stmt?: Statement | undefined;
  name?: string;
  tags?: string[];
  error?: string;
  denied?: Denial | undefined;
  params?: (string | null)[] | undefined;
  /** A FunctionCall: the function's OID and argument count. */
  call?: { oid: number; nargs: number };
}

/** A statement text never crosses this many characters into an audit event. */
const MAX_AUDIT_SQL = 64 * 1024;
/** The parse-time error we send upstream in place of a denied statement (replaced on the way back). */
const POISON = "SELECT 'hallpass: statement denied'::pg_catalog.int4";

/**
 * Follows the conversation of one session to audit it and enforce guardrails, without
 * re-serialising what passes: it sees each whole message once in each direction and returns
 * the message to forward (the same bytes, or a substitute for a denied statement).
 *
 * A denied statement is replaced upstream by one that fails at parse time, so the target itself
 * aborts the transaction and discards the rest of an extended-protocol batch exactly as it would
 * for any error; the target's ErrorResponse is then swapped for ours on the way back. Responses
 * stay in order even when the client pipelines. A FunctionCall ('F') cannot be checked: for a role
 * with guardrails or read-only it is replaced by the same parse-time failure, sent as a Query,
 * whose answer has the shape of a failed FunctionCall's (ErrorResponse, ReadyForQuery).
 */
export class StatementTracker {
  readonly #pending: Pending[] = [];
  #head = 0;
  readonly #statements = new Map<string, Statement>();
  readonly #portals = new Map<string, { stmt: Statement | undefined; statement: string; params?: (string | null)[] | undefined }>();
  #nextId = 1;

  constructor(
    /** Put on every event, so a session's statements can be found together. */
    readonly sessionId: string,
    readonly policy: TrackerPolicy,
    readonly checker: GuardrailChecker,
    readonly emit: StatementEmitter,
    readonly now: () => number = performance.now.bind(performance),
  ) {}

  /** A request is in flight upstream (a cut-off must cancel it). */
  get busy(): boolean {
    return this.#head < this.#pending.length;
  }

  /** Client -> target. Returns what to forward. */
  fromClient(type: number, frame: Buffer): Buffer {
    switch (type) {
      case FrontendCode.Query: {
        const sql = readQuery(frame);
        const d = this.#decide(sql);
        this.#push({ kind: Kind.Query, start: this.now(), sql, tags: [], denied: d });
        return d ? ser.query(POISON) : frame;
      }
      case FrontendCode.Parse: {
        const { name, sql } = readParse(frame);
        this.#retire(this.#statements.get(name));
        const stmt: Statement = { id: this.#nextId++, name, sql, ok: false, audited: false };
        this.#statements.set(name, stmt);
        const d = this.#decide(sql);
        this.#push({ kind: Kind.Parse, start: this.now(), sql, name, stmt, denied: d });
        return d ? ser.parse(name, POISON) : frame;
      }
      case FrontendCode.Bind: {
        const b = readBind(frame, this.policy.storeParameters);
        this.#portals.set(b.portal, { stmt: this.#statements.get(b.statement), statement: b.statement, params: b.params });
        this.#push({ kind: Kind.Bind, start: 0 });
        return frame;
      }
      case FrontendCode.Execute: {
        const portal = this.#portals.get(readExecute(frame));
        this.#push({
          kind: Kind.Execute,
          start: this.now(),
          stmt: portal?.stmt,
          name: portal?.statement ?? '',
          params: portal?.params,
        });
        return frame;
      }
      case FrontendCode.Describe:
        this.#push({ kind: Kind.Describe, start: 0 });
        return frame;
      case FrontendCode.Close:
        this.#push({ kind: Kind.Close, start: 0 });
        if (frame[5] === 0x53 /* 'S' */) {
          const name = frame.toString('utf8', 6, frame.length - 1);
          this.#retire(this.#statements.get(name));
          this.#statements.delete(name);
        }
        return frame;
      case FrontendCode.Sync:
        this.#push({ kind: Kind.Sync, start: 0 });
        return frame;
      case FrontendCode.FunctionCall: {
        const { oid, nargs, args } = readFunctionCall(frame, this.policy.storeParameters);
        const d = checkFunctionCall(this.policy.guardrails, this.policy.readOnly);
        const denied = d.allowed ? undefined : d;
        this.#push({ kind: Kind.Function, start: this.now(), call: { oid, nargs }, params: args, denied });
        return denied ? ser.query(POISON) : frame;
      }
      default:
        return frame; // CopyData/CopyDone/CopyFail, Flush, Terminate: no answer of their own
    }
  }

  /** Target -> client. Returns what to forward. */
  fromServer(type: number, frame: Buffer): Buffer {
    const head = this.#pending[this.#head];
    switch (type) {
      case BackendCode.CommandComplete:
      case BackendCode.EmptyQueryResponse:
      case BackendCode.PortalSuspended: {
        if (!head) break;
        const tag = type === BackendCode.CommandComplete ? readCommandTag(frame) : '';
        if (head.kind === Kind.Query) head.tags?.push(tag);
        else if (head.kind === Kind.Execute) this.#finishExecute(head, tag, type === BackendCode.PortalSuspended);
        break;
      }
      case BackendCode.ParseComplete:
        if (head?.kind === Kind.Parse) {
          this.#shift();
          if (head.stmt) head.stmt.ok = true;
        }
        break;
      case BackendCode.BindComplete:
      case BackendCode.CloseComplete:
        if (head?.kind === Kind.Bind || head?.kind === Kind.Close) this.#shift();
        break;
      case BackendCode.RowDescription:
      case BackendCode.NoData:
        if (head?.kind === Kind.Describe) this.#shift();
        break;
      case BackendCode.ErrorResponse:
        return this.#onError(head, frame);
      case BackendCode.ReadyForQuery:
        if (head?.kind === Kind.Query) this.#finishQuery(head);
        else if (head?.kind === Kind.Function) this.#finishFunction(head);
        else if (head?.kind === Kind.Sync) this.#shift();
        break;
    }
    return frame;
  }

  #onError(head: Pending | undefined, frame: Buffer): Buffer {
    if (!head || head.kind === Kind.Sync) return frame; // e.g. a FATAL from the target: passes through
    const code = readErrorFields(frame).get('C') ?? 'XX000';
    const replacement = head.denied && head.error === undefined ? this.#deniedError(head.denied, head.kind) : frame;
    head.error ??= head.denied ? '42501' : code; // what the client saw
    if (head.kind === Kind.Query || head.kind === Kind.Function) return replacement; // finished by ReadyForQuery
    // Extended protocol: this request failed, the target skips everything up to the next Sync.
    this.#shift();
    if (head.kind === Kind.Parse) this.#emitParse(head);
    else if (head.kind === Kind.Execute) this.#emitExecute(head, null, false);
    for (let p = this.#pending[this.#head]; p && p.kind !== Kind.Sync; p = this.#pending[this.#head]) {
      this.#shift();
      if (p.denied && p.kind === Kind.Parse) this.#emitParse({ ...p, error: 'skipped' });
      else if (p.kind === Kind.Function) this.#emitFunction({ ...p, error: 'skipped' });
    }
    return replacement;
  }

  #deniedError(d: Denial, kind: Kind): Buffer {
    const { resource, role } = this.policy;
    if (kind === Kind.Function) {
      return ser.errorResponse({
        severity: 'ERROR',
        code: '42501',
        message: `hallpass: the function-call protocol message is not allowed on ${resource} for role ${role} (${d.guardrail}): ${d.reason}`,
        hint: 'Call the function in a SQL statement instead.',
      });
    }
    return ser.errorResponse({
      severity: 'ERROR',
      code: '42501',
      message: `hallpass: statement denied on ${resource} for role ${role} (${d.guardrail}): ${d.reason}`,
      hint: 'The role you were granted does not allow this statement. Request a role that does.',
    });
  }

  #decide(sql: string): Denial | undefined {
    const d = this.checker.check(sql, this.policy.guardrails, this.policy.readOnly);
    return d.allowed ? undefined : d;
  }

  #push(p: Pending): void {
    this.#pending.push(p);
  }

  #shift(): void {
    this.#head++;
    if (this.#head >= 1024 || this.#head === this.#pending.length) {
      this.#pending.splice(0, this.#head);
      this.#head = 0;
    }
  }

  #finishQuery(p: Pending): void {
    this.#shift();
    const tags = p.tags ?? [];
    const last = tags[tags.length - 1];
    const data: Record<string, unknown> = {
      sessionId: this.sessionId,
      sql: clip(p.sql ?? ''),
      durationMs: round(this.now() - p.start),
      tags,
      rows: last === undefined ? null : rowsFromTag(last),
    };
    if (p.error !== undefined) data.error = p.error;
    if (p.denied) data.denied = { guardrail: p.denied.guardrail, reason: p.denied.reason };
    this.emit('gateway.query', data);
  }

  #finishFunction(p: Pending): void {
    this.#shift();
    this.#emitFunction(p);
  }

  /** A FunctionCall: its OID and argument count, the values only with storeParameters. */
  #emitFunction(p: Pending): void {
    const data: Record<string, unknown> = {
      sessionId: this.sessionId,
      functionOid: p.call?.oid,
      argCount: p.call?.nargs,
      durationMs: round(this.now() - p.start),
    };
    if (p.error !== undefined) data.error = p.error;
    if (p.denied) data.denied = { guardrail: p.denied.guardrail, reason: p.denied.reason };
    if (p.params) data.params = p.params;
    this.emit('gateway.function_call', data);
  }

  /** Audits a statement the client defined but never executed (replaced, closed, or session over). */
  #retire(st: Statement | undefined): void {
    if (!st || !st.ok || st.audited) return;
    st.audited = true;
    this.emit('gateway.statement', { sessionId: this.sessionId, statementId: st.id, name: st.name, sql: clip(st.sql), executions: 0 });
  }

  /** The session is ending: audit statements prepared but never executed. */
  flush(): void {
    for (const st of this.#statements.values()) this.#retire(st);
  }

  /** A Parse that failed or was denied: no execution will carry its text, so it is audited now. */
  #emitParse(p: Pending): void {
    if (p.stmt) p.stmt.audited = true;
    const data: Record<string, unknown> = {
      sessionId: this.sessionId,
      statementId: p.stmt?.id,
      name: p.name,
      sql: clip(p.sql ?? ''),
      durationMs: round(this.now() - p.start),
    };
    if (p.error !== undefined) data.error = p.error;
    if (p.denied) data.denied = { guardrail: p.denied.guardrail, reason: p.denied.reason };
    this.emit('gateway.statement', data);
  }

  #finishExecute(p: Pending, tag: string, suspended: boolean): void {
    this.#shift();
    this.#emitExecute(p, tag, suspended);
  }

  #emitExecute(p: Pending, tag: string | null, suspended: boolean): void {
    const st = p.stmt;
    const first = st !== undefined && !st.audited;
    if (st) st.audited = true;
    const data: Record<string, unknown> = { sessionId: this.sessionId, statementId: st?.id ?? null };
    // The statement's text, once per Parse: with its first execution.
    if (first) data.sql = clip(st.sql);
    if (st === undefined) data.statement = p.name;
    data.durationMs = round(this.now() - p.start);
    data.tag = tag;
    data.rows = tag ? rowsFromTag(tag) : null;
    if (suspended) data.suspended = true;
    if (p.error !== undefined) data.error = p.error;
    if (p.params) data.params = p.params;
    this.emit('gateway.execute', data);
  }
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;
const clip = (sql: string): string => (sql.length > MAX_AUDIT_SQL ? `${sql.slice(0, MAX_AUDIT_SQL)}…` : sql);
