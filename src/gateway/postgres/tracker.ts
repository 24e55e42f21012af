import { checkFunctionCall, decide, lexingHazard, type Findings, type GuardDecision, type GuardrailChecker, type Prepared } from './guardrails.js';
import {
  BackendCode,
  FrontendCode,
  ProtocolError,
  readBind,
  readCommandTag,
  readErrorFields,
  readExecute,
  readFunctionCall,
  readParameterStatus,
  lexicalSql,
  nameOf,
  readParse,
  readQuery,
  rowsFromTag,
} from './messages.js';
import * as ser from './serializer.js';

/** What the tracker tells its session between messages (after a statement's check). */
export interface TrackerHooks {
  /** Whether the session may still relay (false once the grant ended: the session is cut then). */
  mayRelay(): boolean;
  /** Client messages that waited for a check are due upstream now (takeForUpstream): send them. */
  released(): void;
  /** One of them broke the protocol: end the session as the relay does for a malformed message. */
  failed(message: string): void;
}
const NO_HOOKS: TrackerHooks = { mayRelay: () => true, released: () => {}, failed: () => {} };

/** Client messages waiting their turn, in the order sent: copies, at most MAX_HELD_BYTES of them. */
class Waiting {
  #items: Array<{ type: number; frame: Buffer }> = [];
  #bytes = 0;
  constructor(readonly tooMuch: string) {}

  get length(): number {
    return this.#items.length;
  }

  /** Keeps a copy (a view would keep its whole chunk alive while it waits); returns nothing to forward now. */
  add(type: number, frame: Buffer): Buffer {
    const copy = Buffer.from(frame);
    this.#bytes += copy.length;
    if (this.#bytes > MAX_HELD_BYTES) throw new ProtocolError(this.tooMuch);
    this.#items.push({ type, frame: copy });
    return EMPTY;
  }

  take(): Array<{ type: number; frame: Buffer }> {
    const items = this.#items;
    this.#items = [];
    this.#bytes = 0;
    return items;
  }
}

/** Where statement audit events go (the session adds who/where). */
export type StatementEmitter = (
  type: 'gateway.query' | 'gateway.statement' | 'gateway.execute' | 'gateway.function_call' | 'gateway.rolled_back',
  data: Record<string, unknown>,
) => void;

export interface TrackerPolicy {
  /** Whose statements these are: parses take turns between users (parse-pool.ts). */
  readonly userId?: string;
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
  /** Its name was let go (#namesMayChange) while its Parse was in flight. */
  orphaned?: boolean;
  /** It looks like COPY … FROM STDIN (decided on the whole text, before clipping). */
  copyIn?: boolean;
  /** The command its text begins with, as a CommandComplete tag names it (null: not certain); set at its first answer. */
  command?: string | null;
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
  /** Parse / Close of a statement: the entry the name had before (restored if the target refuses or skips it). */
  prev?: Statement | undefined;
  /** Bind: the portal entry the name had before. */
  prevPortal?: Portal | undefined;
  /** Execute: the portal's name; DataRows counted so far (a suspended portal's rows). */
  portal?: string;
  rowsSeen?: number;
  /** How many COPY ends the client had sent on outside COPY mode when this went (see #endsSent). */
  ends?: number;
}

interface Portal {
  readonly stmt: Statement | undefined;
  readonly statement: string;
  readonly params?: (string | null)[] | undefined;
}

/** A statement text never crosses this many characters into an audit event. */
const MAX_AUDIT_SQL = 64 * 1024;
/** The share of the event loop one session's statements may spend being parsed, and its burst. */
const PARSE_SHARE = 0.1;
const PARSE_BURST_MS = 250;
/**
 * Statement text kept per session for auditing executions (each text clipped to MAX_AUDIT_SQL):
 * past this, the oldest prepared statements are audited now and forgotten (an execution of one is
 * then audited by name).
 */
const MAX_KEPT_SQL_CHARS = 8 * 1024 * 1024;
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
  readonly #portals = new Map<string, Portal>();
  /**
   * Protocol statement and portal names whose Parse was a COPY … FROM STDIN, kept when names are
   * forgotten (#forgetNames): SQL cannot PREPARE a COPY, so such a name still means one (or was
   * let go, and holding its Execute costs only a wait for its first answer). Forgotten, its COPY
   * went unheld, and one that failed ended the session (review).
   */
  readonly #copyStatements = new Set<string>();
  readonly #copyPortals = new Set<string>();
  #nextId = 1;
  /**
   * The target hit an error in an extended-protocol batch and discards every message up to the
   * client's next Sync, which had not been sent yet: what the client sends meanwhile is not run.
   */
  #skipping = false;
  /** The target is in COPY FROM STDIN and the client has not ended it (CopyDone/CopyFail). */
  #copyIn = false;
  /** A COPY FROM STDIN is running on the target (CopyInResponse seen, its end not yet). */
  #copyActive = false;
  /** A COPY FROM STDIN Execute sent and not yet answered (see #waitOrTrack). */
  #holding: Pending | undefined;
  /** Client messages waiting (see #waitOrTrack), in the order sent. */
  readonly #queue = new Waiting('too much sent behind a COPY before the target answered it');
  /** Syncs the client sent inside the running COPY, not sent on (see #waitOrTrack). */
  #copySyncs = 0;
  /** Something of the running COPY's (data, Flush, its end) went to the target after CopyInResponse. */
  #copyFed = false;
  /**
   * CopyDone/CopyFail sent on outside COPY mode, and how many of them a COPY took since. Pipelined
   * behind a COPY nobody held, the client's end can pass before CopyInResponse comes: the COPY is
   * then over for the client as it starts, and only what was sent before that end is inside it.
   */
  #endsSent = 0;
  #endsUsed = 0;
  /**
   * Syncs already sent on inside a COPY nobody held (a Query's, or an Execute whose statement's
   * text was not known here) when it started: the target ignored them if it read them in COPY
   * mode, as it did if the COPY succeeds.
   */
  #copySentSyncs: Pending[] = [];
  /** Queued messages now due upstream, in order (the relay takes them after each answer). */
  #released: Buffer[] = [];
  #whenReleased: { promise: Promise<void>; resolve: () => void } | undefined;
  /** Successful executions of this batch (since the last Sync) while in an implicit transaction. */
  #batch: Array<number | string> = [];
  /** In an explicit transaction (from the last ReadyForQuery's status, then BEGIN/COMMIT/… tags). */
  #explicit = false;

  constructor(
    /** Put on every event, so a session's statements can be found together. */
    readonly sessionId: string,
    readonly policy: TrackerPolicy,
    readonly checker: GuardrailChecker,
    readonly emit: StatementEmitter,
    readonly now: () => number = performance.now.bind(performance),
    readonly hooks: TrackerHooks = NO_HOOKS,
  ) {}

  /** A request is in flight upstream (a cut-off must cancel it). */
  get busy(): boolean {
    return this.#head < this.#pending.length;
  }

  #targetEnded = false;
  /** The target ended the session itself (a FATAL: an admin's pg_terminate_backend, a shutdown). */
  get targetEnded(): boolean {
    return this.#targetEnded;
  }

  /**
   * The target is copying in and the client has not ended the COPY: it answers nothing more
   * until the client sends its data or its end (so a client that leaves now never ends it).
   */
  get waitsForClient(): boolean {
    return this.#copyIn && this.#holding === undefined;
  }

  /** Client -> target. Returns what to forward. */
  fromClient(type: number, frame: Buffer): Buffer {
    // Behind a statement being checked, and then behind a held COPY, everything waits its turn: a
    // statement is checked once what the client sent before it goes on, so nothing overtakes.
    if (this.#checking !== undefined) return this.#checkQueue.add(type, frame);
    if (this.#holding || this.#queue.length > 0 || this.#copySyncs > 0 || (this.#copyIn && (type === FrontendCode.Sync || type === FrontendCode.Flush))) return this.#waitOrTrack(type, frame);
    if ((type === FrontendCode.Query || type === FrontendCode.Parse) && this.#startCheck(type, frame)) return this.#checkQueue.add(type, frame);
    if (type === FrontendCode.CopyDone || type === FrontendCode.CopyFail) {
      if (this.#copyIn) this.#copyIn = false;
      else this.#endsSent++;
    }
    if (type === FrontendCode.CopyData || type === FrontendCode.CopyDone || type === FrontendCode.CopyFail) return frame;
    return this.#track(type, frame);
  }

  /**
   * Checks off the event loop. A statement the guardrails must parse and have not seen is parsed
   * on the parser thread (checker.prepare) before it is tracked: it and everything the client
   * sends behind it wait here, in order, and the client is not read meanwhile (checking()); then
   * they go on as if they arrived now, and check() finds the statement in the cache. So a long
   * statement never stalls the event loop, which relays every other session and cuts sessions off.
   */
  #checking: Promise<void> | undefined;
  readonly #checkQueue = new Waiting('too much sent behind a statement still being checked');
  #ended = false;
  /** A check whose parse failed (not the statement): what decides that statement as it goes on. */
  #failedCheck: { readonly sql: string; readonly findings: Findings } | undefined;
  /** The text the check gate last read, by its frame, so that #track does not read it again. */
  #read: { readonly frame: Buffer; readonly name: string; readonly sql: string } | undefined;

  /** While client messages wait for a statement's check, a promise that settles once they went on. */
  checking(): Promise<void> | undefined {
    return this.#checking;
  }

  #startCheck(type: number, frame: Buffer): boolean {
    const { guardrails, readOnly } = this.policy;
    if (guardrails.length === 0 && !readOnly) return false;
    const text = type === FrontendCode.Query ? { frame, name: '', sql: readQuery(frame) } : { frame, ...readParse(frame) };
    this.#read = text;
    const sql = lexicalSql(frame, text.sql);
    if (this.#failedCheck?.sql === sql || !this.checker.needsParse(sql, guardrails, readOnly)) return false;
    // Never rejects (the relay and the session wait on it): anything thrown ends the session.
    this.#checking = this.checker.prepare(sql, () => !this.#ended, this.policy.userId ?? this.sessionId).then((p) => this.#checked(sql, p)).catch((e: unknown) => {
      this.#ended = true;
      this.hooks.failed(e instanceof Error ? e.message : String(e));
    });
    return true;
  }

  #checked(sql: string, p: Prepared): void {
    this.#checking = undefined;
    if (this.#ended) return;
    if (p.ms > 0) this.#spendParse(p.ms);
    // The parser failed: the statement that waited (the first of the queue) is denied as unparsable.
    this.#failedCheck = p.failed === undefined ? undefined : { sql, findings: p.failed };
    // The grant may have ended meanwhile: then nothing that waited goes on, or is audited (it never ran).
    if (!this.hooks.mayRelay()) return;
    try {
      for (const m of this.#checkQueue.take()) {
        // As if it arrived now: a later statement may need a check of its own (and all behind it waits again).
        const out = this.fromClient(m.type, m.frame);
        if (out.length > 0) this.#released.push(out);
      }
    } catch (e) {
      // What the relay does with such a message as it arrives: what went before goes on, and the
      // session ends with a protocol error.
      this.#ended = true;
      this.hooks.released();
      this.hooks.failed(e instanceof Error ? e.message : String(e));
      return;
    }
    this.hooks.released();
  }

  /**
   * COPY FROM STDIN and Sync. libpq sends a Sync right behind the COPY's Execute. A target
   * copying in reads and ignores it, unless the COPY fails before it read it, when it answers it,
   * and what the client sent after it is no longer skipped: the answers alone cannot tell which
   * happened. So the gateway makes it one way:
   * - what the client sends behind such an Execute waits (a Flush sent with the Execute makes
   *   the target answer it at once, and the client is not read meanwhile) for its first answer;
   *   a COPY that fails as it starts (no such table or column, no privilege) answers it with an
   *   ErrorResponse, and the Sync goes on as any other;
   * - once CopyInResponse came, a Sync sent inside the COPY is counted, not sent; anything but
   *   this COPY's own data behind it waits for the COPY's end (a Flush sent with the client's
   *   CopyDone or CopyFail makes the target report it), and once the client ended the COPY it is
   *   not read meanwhile;
   * - a COPY that succeeded forgets those Syncs (the target read and ignored them). One that
   *   failed sends them on only if nothing of it (data, a Flush, its end) had gone to the target
   *   after CopyInResponse: the target then failed before reading anything (into a view, FREEZE
   *   where it cannot apply, a BEFORE STATEMENT trigger raising) and, on a direct connection,
   *   would have read the Sync after its failure and answered it. Otherwise they are forgotten:
   *   the common failures (bad data, CopyFail) come after the target read and ignored the Sync
   *   while copying. Then the rest follows in the order the client sent it, and after a failure
   *   the target skips up to the client's next Sync (#onError), as on a direct connection.
   * (The gateway used to send them on after every failure: the client got a ReadyForQuery more
   * than on a direct connection, and what it pipelined after a CopyFail without a Sync ran where
   * a direct connection skips it.) What the gateway forwarded is not what the target read, so
   * two divergences are left, each one ReadyForQuery fewer than from a direct connection, with
   * what the client sent between its COPY's end and its next Sync skipped (and audited as
   * skipped) where a direct connection runs it: a COPY that fails before reading anything after
   * the client's data went on (a client that does not wait for CopyInResponse, as libpq does, or
   * a slow BEFORE STATEMENT trigger that raises); and Syncs a client sends inside the COPY after
   * the row that fails it (libpq sends none). The answers and the audit stay in step with the
   * target either way. (Telling them apart would take a probe of the target after each failed
   * COPY: a Sync and an empty Query of the gateway's own, counting the ReadyForQuerys before it.)
   * Only statements that look like COPY … FROM STDIN are held, so ordinary pipelining is
   * untouched.
   */
  #waitOrTrack(type: number, frame: Buffer): Buffer {
    if (!this.#holding && this.#copyIn) {
      // Inside the running COPY (the client has not ended it): its data goes on ahead of what
      // waits, a Flush too (the target ignores it while copying), a Sync is counted.
      if (type === FrontendCode.CopyData || type === FrontendCode.Flush) {
        this.#copyFed = true;
        return frame;
      }
      if (type === FrontendCode.Sync) {
        // libpq sends one. (When a failed COPY answered each of them, millions took 2 GB and
        // stalled every session for 15 s in review; they are only counted now, the bound stays.)
        if (++this.#copySyncs > MAX_COPY_SYNCS) throw new ProtocolError(`more than ${MAX_COPY_SYNCS} Syncs sent inside a COPY`);
        return EMPTY;
      }
      if (type === FrontendCode.CopyDone || type === FrontendCode.CopyFail) {
        this.#copyIn = false;
        this.#copyFed = true;
        return Buffer.concat([frame, FLUSH]);
      }
    }
    // Behind a held Execute, or behind this COPY's end (even a later COPY's data): waits its turn.
    return this.#queue.add(type, frame);
  }

  /**
   * Sends on what waits (see #waitOrTrack), in order, after `syncs` of the Syncs counted inside a
   * COPY (the rest are forgotten).
   */
  #replay(syncs = 0): void {
    for (let i = 0; i < syncs; i++) {
      this.#push({ kind: Kind.Sync, start: 0 });
      this.#released.push(SYNC);
    }
    this.#copySyncs = 0;
    for (const m of this.#queue.take()) {
      // As if it arrived now: it may have to wait again (behind another COPY), or go on.
      const out = this.fromClient(m.type, m.frame);
      if (out.length > 0) this.#released.push(out);
    }
    const w = this.#whenReleased;
    this.#whenReleased = undefined;
    w?.resolve();
  }

  #track(type: number, frame: Buffer): Buffer {
    if (this.#skipping) return this.#skipped(type, frame);
    switch (type) {
      case FrontendCode.Query: {
        const { sql } = this.#text(type, frame);
        const d = this.#decide(sql, frame);
        this.#namesMayChange(sql);
        this.#push({ kind: Kind.Query, start: this.now(), sql: clip(sql), tags: [], denied: d });
        return d ? ser.query(POISON) : frame;
      }
      case FrontendCode.Parse: {
        const { name, sql } = this.#text(type, frame);
        const d = this.#decide(sql, frame);
        this.#namesMayChange(sql);
        // The name points at the new statement from here on (a Bind pipelined behind it uses it);
        // if the target refuses or skips the Parse, it points back at the one it had (#undo).
        const prev = this.#statements.get(name);
        const stmt: Statement = { id: this.#nextId++, name, sql: clip(sql), ok: false, audited: false, copyIn: COPY_FROM_STDIN.test(sql) };
        this.#statements.set(name, stmt);
        if (stmt.copyIn !== true) this.#copyStatements.delete(name);
        else if (this.#copyStatements.size < MAX_COPY_NAMES) this.#copyStatements.add(name);
        this.#keepWithinBudget(stmt);
        this.#push({ kind: Kind.Parse, start: this.now(), sql: stmt.sql, name, stmt, prev, denied: d });
        return d ? ser.parse(name, POISON) : frame;
      }
      case FrontendCode.Bind: {
        const b = readBind(frame, this.policy.storeParameters);
        const prevPortal = this.#portals.get(b.portal);
        this.#portals.set(b.portal, { stmt: this.#statements.get(b.statement), statement: b.statement, params: b.params });
        if (!this.#copyStatements.has(b.statement)) this.#copyPortals.delete(b.portal);
        else if (this.#copyPortals.size < MAX_COPY_NAMES) this.#copyPortals.add(b.portal);
        this.#push({ kind: Kind.Bind, start: 0, name: b.portal, prevPortal });
        return frame;
      }
      case FrontendCode.Execute: {
        const portalName = readExecute(frame);
        const portal = this.#portals.get(portalName);
        const execute: Pending = {
          kind: Kind.Execute,
          start: this.now(),
          stmt: portal?.stmt,
          name: portal?.statement ?? '',
          portal: portalName,
          rowsSeen: 0,
          params: portal?.params,
        };
        this.#push(execute);
        // A COPY FROM STDIN: hold what follows (#waitOrTrack), and ask the target for its answer
        // now (it sends nothing before a Sync or a Flush). A statement whose text is unknown here
        // and whose name never was a COPY's was prepared in SQL, and COPY cannot be.
        if (portal?.stmt?.copyIn === true || this.#copyPortals.has(portalName)) {
          this.#holding = execute;
          return Buffer.concat([frame, FLUSH]);
        }
        return frame;
      }
      case FrontendCode.Describe:
        this.#push({ kind: Kind.Describe, start: 0 });
        return frame;
      case FrontendCode.Close:
        if (frame[5] === 0x53 /* 'S' */) {
          const name = nameOf(frame, 6, frame.length - 1);
          const prev = this.#statements.get(name);
          this.#statements.delete(name);
          this.#copyStatements.delete(name);
          this.#push({ kind: Kind.Close, start: 0, name, prev });
        } else {
          this.#copyPortals.delete(nameOf(frame, 6, frame.length - 1));
          this.#push({ kind: Kind.Close, start: 0 });
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

  /** Client messages released from holding, to send upstream now (the relay asks after each answer). */
  takeForUpstream(): Buffer[] {
    if (this.#released.length === 0) return NONE;
    const out = this.#released;
    this.#released = [];
    return out;
  }

  /**
   * While client messages are held, a promise that settles on their release (the relay stops
   * reading): behind a held Execute, and behind a COPY the client ended while what it sends
   * waits for the target to end it (not while it still copies: the target waits for its data).
   * So what waits is at most the rest of one read, never a long pipeline or a long message.
   */
  held(): Promise<void> | undefined {
    if (!this.#holding && (this.#copyIn || (this.#queue.length === 0 && this.#copySyncs === 0))) return undefined;
    if (!this.#whenReleased) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#whenReleased = { promise, resolve };
    }
    return this.#whenReleased.promise;
  }

  /**
   * While messages the client already sent wait here behind a COPY it ended or a held Execute, a
   * promise that settles on their release: its Terminate or close waits for it, so what it sent
   * before still reaches the target, as on a direct connection (a review lost a COPY's rows and an
   * INSERT behind it). Nothing waits for a COPY the client never ended: that would never come.
   */
  unsentHeld(): Promise<void> | undefined {
    if (this.#copyIn && !this.#holding) return undefined;
    if (this.#queue.length === 0 && this.#copySyncs === 0) return undefined;
    return this.held();
  }

  /**
   * A message the target will discard (#skipping): it is forwarded (the target needs its Sync,
   * and discards the rest), changes nothing here, and statements in it are audited as skipped.
   */
  #skipped(type: number, frame: Buffer): Buffer {
    const start = this.now();
    switch (type) {
      case FrontendCode.Sync:
        this.#skipping = false;
        this.#push({ kind: Kind.Sync, start: 0 });
        return frame;
      case FrontendCode.Query: {
        const { sql } = this.#text(type, frame);
        const d = this.#decide(sql, frame);
        this.#emitQuery({ kind: Kind.Query, start, sql, tags: [], denied: d, error: 'skipped' });
        return d ? ser.query(POISON) : frame;
      }
      case FrontendCode.Parse: {
        const { name, sql } = this.#text(type, frame);
        const d = this.#decide(sql, frame);
        this.#emitParse({ kind: Kind.Parse, start, sql, name, denied: d, error: 'skipped' });
        return d ? ser.parse(name, POISON) : frame;
      }
      case FrontendCode.FunctionCall: {
        const { oid, nargs, args } = readFunctionCall(frame, this.policy.storeParameters);
        const d = checkFunctionCall(this.policy.guardrails, this.policy.readOnly);
        this.#emitFunction({ kind: Kind.Function, start, call: { oid, nargs }, params: args, denied: d.allowed ? undefined : d, error: 'skipped' });
        return d.allowed ? frame : ser.query(POISON);
      }
      default:
        return frame; // Bind, Execute, Describe, Close, Flush, Copy*: discarded, nothing to record
    }
  }

  #keptChars = 0;

  /** Counts a new statement's text; retires the oldest kept statements past MAX_KEPT_SQL_CHARS. */
  #keepWithinBudget(stmt: Statement): void {
    this.#keptChars += stmt.sql.length;
    if (this.#keptChars <= MAX_KEPT_SQL_CHARS) return;
    let kept = 0;
    for (const st of this.#statements.values()) kept += st.sql.length;
    for (const [name, st] of this.#statements) {
      if (kept <= MAX_KEPT_SQL_CHARS / 2) break;
      if (st === stmt) continue;
      // In flight still (not yet ParseComplete)? Its text goes on the record now either way.
      st.ok = true;
      this.#retire(st, 'memory');
      this.#statements.delete(name);
      kept -= st.sql.length;
    }
    this.#keptChars = kept;
  }

  /**
   * SQL-level PREPARE, DEALLOCATE and DISCARD change the same names protocol-level statements
   * use, which this tracker cannot follow: from here on no name is trusted to mean the SQL it
   * had (an execution by name is audited with the name only). Statements not yet audited are
   * audited now, so their text is on the record whatever runs under their names later.
   */
  #namesMayChange(sql: string): void {
    if (NAME_CHANGING_SQL.test(sql)) this.#forgetNames();
  }

  #forgetNames(): void {
    for (const st of this.#statements.values()) {
      if (st.ok) this.#retire(st, 'names_uncertain');
      else st.orphaned = true; // audited when its Parse completes
    }
    this.#statements.clear();
    this.#portals.clear();
  }

  /**
   * Target -> client. Returns what to forward. An answer that fits no request in flight means
   * this tracker no longer follows the conversation (and would audit statements against the
   * wrong answers): it throws a ProtocolError, which ends the session.
   */
  fromServer(type: number, frame: Buffer): Buffer {
    const head = this.#pending[this.#head];
    if (type === BackendCode.DataRow) {
      if (head?.kind === Kind.Execute) head.rowsSeen = (head.rowsSeen ?? 0) + 1;
      return frame;
    }
    const asynchronous = type === BackendCode.NoticeResponse || type === BackendCode.ParameterStatus || type === BackendCode.NotificationResponse;
    if (head !== undefined && head === this.#holding && !asynchronous) {
      // The held Execute's first answer: the COPY started, or it was not one (or failed at once).
      this.#holding = undefined;
      if (type === BackendCode.CopyInResponse) {
        this.#copyActive = true;
        this.#copyIn = true;
        this.#copyFed = false;
      }
      this.#replay();
    } else if (this.#copyActive && (type === BackendCode.CommandComplete || type === BackendCode.ErrorResponse)) {
      // The running COPY ended: the Syncs counted inside it are forgotten (#waitOrTrack); those
      // already sent inside one nobody held are forgotten after success (the target ignored them).
      this.#copyActive = false;
      this.#copyIn = false;
      if (type === BackendCode.CommandComplete) {
        for (const sync of this.#copySentSyncs) {
          const i = this.#pending.indexOf(sync, this.#head);
          if (i >= 0) this.#pending.splice(i, 1);
        }
      }
      this.#copySentSyncs = [];
      // After a failure, what waited is pending by the time #onError (below) skips it up to its
      // Sync, as the target does; the Syncs counted inside it go first if the target can have
      // read nothing of this COPY (#waitOrTrack).
      this.#replay(type === BackendCode.ErrorResponse && !this.#copyFed ? this.#copySyncs : 0);
    }
    switch (type) {
      case BackendCode.CommandComplete:
      case BackendCode.EmptyQueryResponse:
      case BackendCode.PortalSuspended: {
        const tag = type === BackendCode.CommandComplete ? readCommandTag(frame) : '';
        if (head?.kind === Kind.Query) head.tags?.push(tag);
        else if (head?.kind === Kind.Execute) this.#finishExecute(head, tag, type === BackendCode.PortalSuspended);
        else this.#unexpected(type, head);
        break;
      }
      case BackendCode.ParseComplete:
        if (head?.kind !== Kind.Parse) this.#unexpected(type, head);
        this.#shift();
        if (head.stmt) {
          head.stmt.ok = true;
          // Its name was let go while it was in flight (#namesMayChange): no execution will carry its text.
          if (head.stmt.orphaned) this.#retire(head.stmt, 'names_uncertain');
        }
        this.#retire(head.prev);
        break;
      case BackendCode.CopyInResponse:
        if (head?.kind !== Kind.Execute && head?.kind !== Kind.Query) this.#unexpected(type, head);
        if (!this.#copyActive) {
          // A simple Query's COPY (each of a multi-statement Query's starts its own), or an
          // Execute nobody held. An end the client sent on before this answer, and after this
          // request (earlier ones ended COPYs that never started), ends this COPY.
          this.#copyActive = true;
          // What the target read before this answer cannot be told here (see #waitOrTrack).
          this.#copyFed = true;
          this.#endsUsed = Math.max(this.#endsUsed, head.ends ?? 0);
          const ended = this.#endsUsed < this.#endsSent;
          const end = ended ? this.#endsUsed++ : this.#endsSent;
          this.#copyIn = !ended;
          // The Syncs already sent inside it (before its end) are ignored if it succeeds.
          for (let i = this.#head + 1; i < this.#pending.length; i++) {
            const p = this.#pending[i] as Pending;
            if (p.kind === Kind.Sync && (p.ends ?? 0) <= end) this.#copySentSyncs.push(p);
          }
        }
        break;
      case BackendCode.BindComplete:
        if (head?.kind !== Kind.Bind) this.#unexpected(type, head);
        this.#shift();
        break;
      case BackendCode.CloseComplete:
        if (head?.kind !== Kind.Close) this.#unexpected(type, head);
        this.#shift();
        this.#retire(head.prev);
        break;
      case BackendCode.NoData:
        if (head?.kind !== Kind.Describe) this.#unexpected(type, head);
        this.#shift();
        break;
      case BackendCode.RowDescription:
        // Answers a Describe, or comes with a Query's rows.
        if (head?.kind === Kind.Describe) this.#shift();
        break;
      case BackendCode.ErrorResponse:
        return this.#onError(head, frame);
      case BackendCode.ParameterStatus: {
        // The statements checked from here on would be read differently by the target (a SET the
        // guardrails deny got through some other way): end the session, failing closed.
        const { name, value } = readParameterStatus(frame);
        const hazard = this.policy.guardrails.length > 0 || this.policy.readOnly ? lexingHazard(name, value) : undefined;
        if (hazard !== undefined) throw new ProtocolError(`the target changed a setting the gateway's checks rely on (${hazard})`);
        break;
      }
      case BackendCode.ReadyForQuery:
        if (head?.kind === Kind.Sync) this.#shift();
        else if (head?.kind === Kind.Query) {
          if (head.error === undefined) this.#settleByQuery(head.tags ?? [], head.sql ?? '');
          this.#finishQuery(head);
        }
        else if (head?.kind === Kind.Function) this.#finishFunction(head);
        else this.#unexpected(type, head);
        // A new batch, in the transaction state the target reports ('I': none open).
        this.#batch = [];
        this.#explicit = frame[5] !== 0x49;
        this.#txUnknown = false;
        break;
    }
    return frame;
  }

  #unexpected(type: number, head: Pending | undefined): never {
    throw new ProtocolError(`the target sent '${String.fromCharCode(type)}' while the gateway expected ${head ? `an answer to ${KIND_NAMES[head.kind]}` : 'nothing'}`);
  }

  #onError(head: Pending | undefined, frame: Buffer): Buffer {
    this.#copyIn = false; // an error ends COPY mode; the rest of the client's copy data is dropped
    const fields = readErrorFields(frame);
    const severity = fields.get('V') ?? fields.get('S');
    // Not a protocol violation (08P01): the target raises that over what the client sent it (a
    // Terminate or a query inside a COPY, an unknown message), so the client ended it (review).
    if ((severity === 'FATAL' || severity === 'PANIC') && fields.get('C') !== '08P01') this.#targetEnded = true;
    const code = fields.get('C') ?? 'XX000';
    if (head?.kind === Kind.Sync) {
      // The implicit commit at Sync failed (a deferred constraint).
      this.#rolledBack('commit', code);
      return frame;
    }
    if (!head) return frame; // e.g. a FATAL from the target: passes through
    const replacement = head.denied && head.error === undefined ? this.#deniedError(head.denied, head.kind) : frame;
    head.error ??= head.denied ? '42501' : code; // what the client saw
    if (head.kind === Kind.Query || head.kind === Kind.Function) {
      this.#settleByQuery(head.tags ?? [], head.sql ?? '', head.error); // finished by ReadyForQuery
      return replacement;
    }
    // Extended protocol: this request failed, the target skips everything up to the next Sync,
    // and an implicit transaction is rolled back with what the batch ran before it.
    this.#shift();
    this.#undo(head);
    const seen = head.error ?? code;
    if (head.kind === Kind.Parse) this.#emitParse(head);
    else if (head.kind === Kind.Execute) this.#emitExecute(head, null, false);
    this.#rolledBack('error', seen);
    // A Bind that failed (bad parameters, an error while planning) takes its Execute down with it:
    // that Execute is audited with the Bind's error.
    const boundExecute = head.kind === Kind.Bind ? this.#pending.slice(this.#head).find((p) => p.kind === Kind.Sync || (p.kind === Kind.Execute && p.portal === head.name)) : undefined;
    if (boundExecute?.kind === Kind.Execute) boundExecute.error = seen;
    // Undone newest first, so each name ends up where it was before the failed request.
    const skipped: Pending[] = [];
    for (let p = this.#pending[this.#head]; p && p.kind !== Kind.Sync; p = this.#pending[this.#head]) {
      this.#shift();
      skipped.push(p);
    }
    for (const p of [...skipped].reverse()) this.#undo(p);
    for (const p of skipped) {
      if (p.kind === Kind.Parse) this.#emitParse({ ...p, error: 'skipped' });
      else if (p.kind === Kind.Query) this.#emitQuery({ ...p, error: 'skipped' });
      else if (p.kind === Kind.Function) this.#emitFunction({ ...p, error: 'skipped' });
      else if (p === boundExecute) this.#emitExecute(p, null, false);
    }
    // No Sync sent yet: the client's next messages are discarded too, until its Sync.
    if (this.#pending[this.#head] === undefined) this.#skipping = true;
    // A held COPY Execute the target skipped will never answer: what waits behind it goes on now,
    // and is skipped up to its Sync like the rest (review: replayed before #skipping was set, it
    // was tracked as run, a second COPY behind it was held for an answer that never came, and
    // the session ended with 08P01 or, after a Terminate, stayed open until the grant's end).
    if (this.#holding && skipped.includes(this.#holding)) {
      this.#holding = undefined;
      this.#replay();
    }
    return replacement;
  }

  /**
   * The batch's implicit transaction was rolled back (an error in it, or at its Sync): its
   * executions, audited with their own results, are undone. Not in an explicit transaction
   * (the client's COMMIT or ROLLBACK says how that ends; savepoints may keep part of it).
   */
  /**
   * What a simple Query (or FunctionCall), and its `error` if it failed, did to the executions an
   * extended batch ran before it with no Sync yet: its first COMMIT or ROLLBACK tag (or DO or
   * CALL) settles them, a rollback claimed only when the Query is a plain ROLLBACK in an implicit
   * transaction (PostgreSQL only warns that no transaction is in progress: review, the undo was
   * not on the record as one; other statements answer ROLLBACK too), a BEGIN takes them into an
   * explicit transaction (a savepoint may still keep them: the client's COMMIT or ROLLBACK says;
   * review: audited as rolled back, then committed), and otherwise its error rolls them back
   * (review: never on the record) and its success commits them.
   */
  #settleByQuery(tags: readonly string[], sql: string, error?: string): void {
    let explicit = this.#explicit;
    for (const t of tags) {
      if (TX_OPENS.test(t)) explicit = true;
      else if (TX_ENDS.test(t) || t === 'DO' || t === 'CALL') {
        // The tags alone do not say which (PREPARE TRANSACTION and ROLLBACK TO SAVEPOINT answer
        // ROLLBACK, a DO may COMMIT inside: review): a rollback only for a Query that is one.
        if (tags.length === 1 && transactionEnd(sql) === 'rollback' && !explicit) this.#rolledBack('rollback');
        this.#batch = [];
        return;
      }
    }
    if (explicit && !this.#explicit) this.#batch = [];
    else if (error !== undefined) this.#rolledBack('error', error);
  }

  /**
   * An Execute answered COMMIT or ROLLBACK. A plain COMMIT or ROLLBACK settles what ran before
   * (an error after it undoes none of it), and a ROLLBACK in an implicit transaction undoes the
   * batch (PostgreSQL only warns that no transaction is in progress). Anything else answered so
   * (ROLLBACK TO SAVEPOINT, PREPARE TRANSACTION, … AND CHAIN, a statement known by name only)
   * leaves the transaction's state unknown here until the next ReadyForQuery says it: no
   * rollback is claimed meanwhile (review: each was audited as rolled back, then committed).
   */
  #settleByExecute(sql: string | undefined): void {
    const end = sql === undefined ? undefined : transactionEnd(sql);
    if (end === undefined) {
      this.#txUnknown = true;
      this.#batch = [];
      return;
    }
    if (end === 'rollback' && !this.#explicit) this.#rolledBack('rollback');
    this.#explicit = false;
    this.#batch = [];
  }

  /** The transaction's state is not known here until the next ReadyForQuery (#settleByExecute). */
  #txUnknown = false;

  #rolledBack(cause: 'error' | 'commit' | 'rollback' | 'session_end', error?: string): void {
    if (this.#batch.length > 0 && !this.#explicit && !this.#txUnknown) {
      this.emit('gateway.rolled_back', { sessionId: this.sessionId, cause, ...(error === undefined ? {} : { error }), executions: this.#batch });
    }
    this.#batch = [];
  }

  /** A request the target refused or skipped changed no name: point its name back. */
  #undo(p: Pending): void {
    if (p.kind === Kind.Parse && p.stmt && p.name !== undefined) {
      if (this.#statements.get(p.name) !== p.stmt) return;
      if (p.prev) this.#statements.set(p.name, p.prev);
      else this.#statements.delete(p.name);
    } else if (p.kind === Kind.Close && p.name !== undefined && p.prev) {
      if (!this.#statements.has(p.name)) this.#statements.set(p.name, p.prev);
    } else if (p.kind === Kind.Bind && p.name !== undefined) {
      if (p.prevPortal) this.#portals.set(p.name, p.prevPortal);
      else this.#portals.delete(p.name);
    }
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

  /** A Query's or Parse's statement name and text (read once: the check gate may have read it). */
  #text(type: number, frame: Buffer): { readonly name: string; readonly sql: string } {
    const r = this.#read;
    this.#read = undefined;
    if (r !== undefined && r.frame === frame) return r;
    return type === FrontendCode.Query ? { name: '', sql: readQuery(frame) } : readParse(frame);
  }

  #decide(sql: string, frame: Buffer): Denial | undefined {
    const lexical = lexicalSql(frame, sql);
    const failed = this.#failedCheck;
    this.#failedCheck = undefined;
    if (failed !== undefined && failed.sql === lexical) {
      const d = decide(failed.findings, this.policy.guardrails, this.policy.readOnly);
      return d.allowed ? undefined : d;
    }
    const before = this.checker.parseMs;
    const d = this.checker.check(lexical, this.policy.guardrails, this.policy.readOnly);
    const spent = this.checker.parseMs - before;
    if (spent > 0) this.#spendParse(spent);
    return d.allowed ? undefined : d;
  }

  // Parsing runs on the event loop every session shares: each session may use PARSE_SHARE of it
  // (with a burst of PARSE_BURST_MS), and beyond that its client is not read until it is back.
  #parseCredit = PARSE_BURST_MS;
  #creditAt = 0;

  #refill(): void {
    const now = this.now();
    this.#parseCredit = Math.min(PARSE_BURST_MS, this.#parseCredit + (now - this.#creditAt) * PARSE_SHARE);
    this.#creditAt = now;
  }

  #spendParse(ms: number): void {
    this.#refill();
    this.#parseCredit -= ms;
  }

  /** How long to stop reading from the client so that its statements' parsing stays in its share (0: none). */
  parseBackoffMs(): number {
    this.#refill();
    return this.#parseCredit >= 0 ? 0 : -this.#parseCredit / PARSE_SHARE;
  }

  #push(p: Pending): void {
    p.ends = this.#endsSent;
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
    this.#emitQuery(p);
  }

  #emitQuery(p: Pending, outcomeUnknown = false): void {
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
    if (outcomeUnknown) data.outcome = 'unknown';
    this.emit('gateway.query', data);
  }

  #finishFunction(p: Pending): void {
    this.#shift();
    this.#emitFunction(p);
  }

  /** A FunctionCall: its OID and argument count, the values only with storeParameters. */
  #emitFunction(p: Pending, outcomeUnknown = false): void {
    const data: Record<string, unknown> = {
      sessionId: this.sessionId,
      functionOid: p.call?.oid,
      argCount: p.call?.nargs,
      durationMs: round(this.now() - p.start),
    };
    if (p.error !== undefined) data.error = p.error;
    if (p.denied) data.denied = { guardrail: p.denied.guardrail, reason: p.denied.reason };
    if (p.params) data.params = p.params;
    if (outcomeUnknown) data.outcome = 'unknown';
    this.emit('gateway.function_call', data);
  }

  /** Audits a statement the client defined but never executed (replaced, closed, or session over). */
  /**
   * `reason` says why a statement's text is audited before (or without) its executions: its name
   * became uncertain, or the session's kept text was over budget; an execution of it is then
   * audited with its statementId (or name) only. Without a reason it was never executed.
   */
  #retire(st: Statement | undefined, reason?: 'names_uncertain' | 'memory'): void {
    if (!st || !st.ok || st.audited) return;
    st.audited = true;
    const data: Record<string, unknown> = { sessionId: this.sessionId, statementId: st.id, name: st.name, sql: clip(st.sql) };
    if (reason === undefined) data.executions = 0;
    else data.reason = reason;
    this.emit('gateway.statement', data);
  }

  /**
   * The session is ending. Requests still in flight are audited with `outcome: "unknown"` (the
   * target may have run them: a client can send a statement and Terminate in one packet), then
   * statements prepared but never executed.
   */
  flush(): void {
    // Messages still waiting for a check were never sent: nothing ran, nothing to record.
    this.#ended = true;
    this.#checkQueue.take();
    // What in flight may have ended the implicit transaction: a Sync, a Query or FunctionCall (each
    // its own), an Execute (a COMMIT, say).
    let mayHaveCommitted = false;
    for (let p = this.#pending[this.#head]; p; p = this.#pending[this.#head]) {
      this.#shift();
      if (p.kind === Kind.Sync || p.kind === Kind.Query || p.kind === Kind.Function || p.kind === Kind.Execute) mayHaveCommitted = true;
      if (p.kind === Kind.Query) this.#emitQuery(p, true);
      else if (p.kind === Kind.Parse) this.#emitParse(p, true);
      else if (p.kind === Kind.Execute) this.#emitExecute(p, null, false, true);
      else if (p.kind === Kind.Function) this.#emitFunction(p, true);
    }
    // Executions that succeeded in an implicit transaction nothing was sent to commit: the target
    // rolls it back as the session ends (a review saw a COPY with a Terminate behind it audited as
    // done). With a possible commit in flight their results stand.
    if (!mayHaveCommitted) this.#rolledBack('session_end');
    for (const st of this.#statements.values()) this.#retire(st);
  }

  /** A Parse that failed or was denied: no execution will carry its text, so it is audited now. */
  #emitParse(p: Pending, outcomeUnknown = false): void {
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
    if (outcomeUnknown) data.outcome = 'unknown';
    this.emit('gateway.statement', data);
  }

  #finishExecute(p: Pending, tag: string, suspended: boolean): void {
    this.#shift();
    this.#emitExecute(p, tag, suspended);
  }

  #emitExecute(p: Pending, tag: string | null, suspended: boolean, outcomeUnknown = false): void {
    const st = p.stmt;
    const first = st !== undefined && !st.audited;
    if (st) st.audited = true;
    const data: Record<string, unknown> = { sessionId: this.sessionId, statementId: st?.id ?? null };
    // The statement's text, once per Parse: with its first execution.
    if (first) {
      data.sql = clip(st.sql);
      // Named: so a later execution audited by name only (names_uncertain) still leads to this text.
      if (st.name !== '') data.name = st.name;
    }
    if (st === undefined) data.statement = p.name;
    // A named portal (a SQL cursor DECLAREd earlier, or a partial fetch) is named.
    if (p.portal) data.portal = p.portal;
    data.durationMs = round(this.now() - p.start);
    data.tag = tag;
    data.rows = suspended ? (p.rowsSeen ?? 0) : tag ? rowsFromTag(tag) : null;
    if (suspended) data.suspended = true;
    if (p.error !== undefined) data.error = p.error;
    if (p.params) data.params = p.params;
    let replaced = false;
    if (st !== undefined && tag !== null) {
      // SQL-level PREPARE run where no text shows it (dynamic SQL in a DO block or a function)
      // can redefine a name this tracker follows: an answer for another command says so.
      st.command ??= leadingCommand(st.sql);
      const answered = tag.split(' ', 1)[0] ?? '';
      if (st.command !== null && answered !== st.command) {
        data.mismatch = `the target answered ${answered} to a ${st.command} statement: it was redefined on the target, so its text here is not what ran`;
        replaced = true;
      }
    }
    if (outcomeUnknown) data.outcome = 'unknown';
    else if (p.error === undefined) {
      if (tag !== null && TX_OPENS.test(tag)) this.#explicit = true;
      if (tag !== null && TX_ENDS.test(tag)) this.#settleByExecute(st?.sql);
      else if (tag === 'DO' || tag === 'CALL') this.#batch = []; // it may COMMIT or ROLLBACK inside: what ran before is no longer known
      else if (this.#batch.length < 1000) this.#batch.push(st?.id ?? p.name ?? '');
    }
    this.emit('gateway.execute', data);
    if (replaced) this.#forgetNames();
  }
}

const TAG_OF_WORD = new Map([['select', 'SELECT'], ['values', 'SELECT'], ['table', 'SELECT'], ['insert', 'INSERT'], ['update', 'UPDATE'], ['delete', 'DELETE'], ['merge', 'MERGE']]);

/**
 * The command tag a statement's text must be answered with, when its first word settles it (not
 * WITH, EXPLAIN, …). Whitespace, `--` comments, nested `/* … *\/` comments (as PostgreSQL nests
 * them: a review made a regular expression read the word inside one) and opening parentheses
 * before the word are skipped; anything unexpected gives null (no check).
 */
function leadingCommand(sql: string): string | null {
  const rest = afterLeadingComments(sql);
  const word = rest === null ? undefined : /^[A-Za-z]+/.exec(rest.slice(0, 8))?.[0];
  return word === undefined ? null : TAG_OF_WORD.get(word.toLowerCase()) ?? null;
}

/**
 * A statement that is exactly COMMIT or ROLLBACK (END, ABORT, WORK or TRANSACTION), after leading
 * comments: which of the two; undefined for anything else (ROLLBACK TO, AND CHAIN, a comment inside).
 */
function transactionEnd(sql: string): 'commit' | 'rollback' | undefined {
  const m = /^(commit|end|rollback|abort)(?:\s+(?:work|transaction))?\s*;?\s*$/i.exec(afterLeadingComments(sql) ?? '');
  if (!m) return undefined;
  const word = (m[1] as string).toLowerCase();
  return word === 'commit' || word === 'end' ? 'commit' : 'rollback';
}

/** `sql` from its first word on: whitespace, comments and opening parentheses skipped (null: an unterminated comment). */
function afterLeadingComments(sql: string): string | null {
  let i = 0;
  const n = sql.length;
  for (;;) {
    const c = sql[i];
    if (c === undefined) return null;
    if (c === '(' || c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v') i++;
    else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      if (end < 0) return null;
      i = end + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      let depth = 0;
      do {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      } while (depth > 0 && i < n);
      if (depth > 0) return null;
    } else break;
  }
  return sql.slice(i);
}

/** A statement that may be COPY … FROM STDIN (over-approximated: any mention of both words). */
const COPY_FROM_STDIN = /copy[\s\S]*stdin/i;
/** Most bytes held behind a COPY Execute before the target answers it. */
const MAX_HELD_BYTES = 1024 * 1024;
/** COPY statement and portal names kept past a forgetting (#copyStatements): beyond, they go unheld. */
const MAX_COPY_NAMES = 10_000;
/** Syncs a client may send inside one COPY (they wait, counted, for its end). */
const MAX_COPY_SYNCS = 10_000;
const TX_OPENS = /^(BEGIN|START TRANSACTION)$/;
const TX_ENDS = /^(COMMIT|ROLLBACK|END|ABORT|PREPARE TRANSACTION|COMMIT PREPARED|ROLLBACK PREPARED)$/;
const EMPTY = Buffer.alloc(0);
const FLUSH = Buffer.from([0x48, 0, 0, 0, 4]); // 'H'
const SYNC = Buffer.from([0x53, 0, 0, 0, 4]); // 'S'
const NONE: Buffer[] = [];

/**
 * SQL that may create or drop prepared statements by name (over-approximated: any mention;
 * `execute` for dynamic SQL in a DO block, which can PREPARE a computed text). A function called
 * later can do it with no such word in sight: an answer for another command gives that away
 * (#emitExecute's `mismatch`).
 */
const NAME_CHANGING_SQL = /prepare|deallocate|discard|\bexecute\b/i;

const KIND_NAMES: Record<Kind, string> = {
  [Kind.Query]: 'a Query',
  [Kind.Parse]: 'a Parse',
  [Kind.Bind]: 'a Bind',
  [Kind.Execute]: 'an Execute',
  [Kind.Describe]: 'a Describe',
  [Kind.Close]: 'a Close',
  [Kind.Sync]: 'a Sync',
  [Kind.Function]: 'a FunctionCall',
};

const round = (ms: number): number => Math.round(ms * 1000) / 1000;
const clip = (sql: string): string => (sql.length > MAX_AUDIT_SQL ? `${sql.slice(0, MAX_AUDIT_SQL)}…` : sql);
