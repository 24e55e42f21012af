import { createHash } from 'node:crypto';
import { loadModule, parsePlPgSQLSync, parseSync, scanSync } from 'libpg-query';

/**
 * Statement guardrails decided with PostgreSQL's own parser (libpg-query, WASM). Every node of
 * every statement is inspected (multi-statement strings, CTEs, EXPLAIN, PREPARE, rule actions,
 * and the SQL inside DO blocks), so a denied class cannot hide in a comment or a subquery.
 * Decisions are cached by statement text. Fails closed: text the parser rejects is denied.
 */

export { GUARDRAILS, isGuardrail, type Guardrail } from './guardrail-names.js';
import { GUARDRAILS, isGuardrail, type Guardrail } from './guardrail-names.js';

export type GuardDecision =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly guardrail: Guardrail | 'read_only' | 'unparsable' | 'lexing'; readonly reason: string };

const ALLOW: GuardDecision = { allowed: true };

/** What a statement does, as far as guardrails care: one pass over its parse tree. */
export interface Findings {
  hits: Map<Guardrail | 'read_only', string>;
  unparsable?: string;
  /** The statement changes how the target reads SQL text (denied whenever anything is checked). */
  lexing?: string;
  /** While walking: the bodies of the PL/pgSQL functions the text being analysed creates, checked after. */
  plpgsqlBodies?: string[];
}

const DDL = /^(Create|Alter|Drop|Rename|Comment|Grant|Index|View|Define|Rule|CompositeType|Reindex|SecLabel|ImportForeignSchema|RefreshMatView|Cluster|ReassignOwned)\w*Stmt$/;
const ROLE_ESCAPE = new Set(['CreateRoleStmt', 'AlterRoleStmt', 'AlterRoleSetStmt', 'DropRoleStmt', 'GrantRoleStmt', 'AlterSystemStmt', 'LoadStmt', 'AlterDefaultPrivilegesStmt', 'ReassignOwnedStmt', 'CreateExtensionStmt', 'AlterExtensionStmt']);
const ESCAPE_FUNCTIONS = new Set([
  'dblink', 'dblink_exec', 'dblink_connect', 'dblink_connect_u', 'dblink_send_query', 'pg_read_file', 'pg_read_binary_file', 'pg_ls_dir', 'pg_stat_file',
  'lo_import', 'lo_export', 'pg_file_write', 'pg_reload_conf', 'pg_terminate_backend', 'pg_signal_backend', 'pg_cancel_backend',
  'pg_ls_logdir', 'pg_ls_waldir', 'pg_ls_tmpdir', 'pg_ls_archive_statusdir', 'pg_ls_logicalsnapdir', 'pg_ls_logicalmapdir', 'pg_ls_replslotdir',
  'pg_rotate_logfile', 'pg_promote', 'pg_switch_wal', 'pg_create_restore_point', 'pg_backup_start', 'pg_backup_stop',
  'pg_logical_slot_get_changes', 'pg_logical_slot_get_binary_changes', 'pg_logical_slot_peek_changes', 'pg_logical_slot_peek_binary_changes',
  'pg_create_logical_replication_slot', 'pg_create_physical_replication_slot', 'pg_drop_replication_slot', 'pg_replication_slot_advance',
  'pg_copy_logical_replication_slot', 'pg_copy_physical_replication_slot',
]);
/**
 * Functions that change data or signal other sessions, though called from a SELECT: sequences,
 * large objects, NOTIFY. (In a read-only transaction PostgreSQL itself refuses the first two.)
 */
const WRITE_FUNCTIONS = new Set(['nextval', 'setval', 'lo_create', 'lo_creat', 'lo_import', 'lo_unlink', 'lo_put', 'lo_from_bytea', 'lo_truncate', 'lo_truncate64', 'lowrite', 'pg_notify', 'pg_logical_emit_message']);
/**
 * Functions that run SQL given to them as text, which no parse of the calling statement sees:
 * like dynamic SQL in a DO block, they hit every guardrail (core: ts_stat, ts_rewrite, the
 * query_to_xml family; extensions: dblink, tablefunc, xml2, pg_cron). Others an extension may
 * add are not known here: the target's own privileges for the principal are the backstop.
 */
const SQL_TEXT_FUNCTIONS = new Set(['ts_stat', 'ts_rewrite', 'query_to_xml', 'query_to_xml_and_xmlschema', 'query_to_xmlschema', 'dblink', 'dblink_exec', 'dblink_send_query', 'dblink_open', 'crosstab', 'crosstab2', 'crosstab3', 'crosstab4', 'connectby', 'xpath_table']);
const CRON_FUNCTIONS = new Set(['schedule', 'schedule_in_database', 'alter_job']);
/**
 * Settings that change how the target splits SQL text into tokens (strings, escapes, characters).
 * (backslash_quote is not one: with standard strings and a safe encoding it can only make the
 * target refuse `\'` in E'' strings, never read it differently.)
 */
const LEXING_SETTINGS = new Set(['standard_conforming_strings', 'client_encoding']);
/**
 * The client encodings a checked session may use, by the names PostgreSQL accepts for them (it
 * keeps ASCII letters and digits, lowercased): UTF8, which the parser here reads, and SQL_ASCII,
 * which a UTF8 or SQL_ASCII database reads as the same bytes. An allow list: the deny list of
 * encodings whose second byte can be a quote or backslash (SJIS, BIG5, GBK, ...) missed EUC_JP,
 * where two byte sequences become one character (so `$<A2E8>$` closes `$<ADFA>$`), and a name
 * with a Kelvin sign (`SJ\u212AIS`: PostgreSQL drops the character and reads SJIS); a review ran
 * each past every guardrail on 2026-12-02.
 */
const SAFE_ENCODINGS = new Set(['utf8', 'unicode', 'sqlascii']);
/** An encoding name as PostgreSQL compares it, or undefined if it holds anything but ASCII (PostgreSQL would drop it). */
const encodingKey = (value: string): string | undefined => (/^[\x20-\x7e]*$/.test(value) ? value.toLowerCase().replace(/[^a-z0-9]/g, '') : undefined);
const ON = new Set(['on', 'true', 'yes', '1', 't', 'y']);

/**
 * Why a setting's value (reported by the target, or given to SET) makes the target read SQL text
 * differently from the parser here (which reads UTF-8 with standard conforming strings), or
 * undefined when it does not. (`server_encoding` is only ever reported, at login.)
 */
export function lexingHazard(name: string, value: string): string | undefined {
  if (name === 'standard_conforming_strings' && !ON.has(value.trim().toLowerCase())) return 'standard_conforming_strings is off, so backslashes in strings are escapes';
  if (name === 'client_encoding' && !SAFE_ENCODINGS.has(encodingKey(value) ?? '')) {
    return `client encoding ${JSON.stringify(value)} is not UTF8: the target would read the statement's bytes as other characters than the gateway checks`;
  }
  if (name === 'server_encoding' && !SAFE_ENCODINGS.has(encodingKey(value) ?? '')) {
    return `the database's encoding ${JSON.stringify(value)} is not UTF8: the target converts statements into it, where two characters the gateway tells apart can become one`;
  }
  return undefined;
}

/**
 * A single plain SELECT that can hit no guardrail, recognised without parsing (simple-protocol
 * queries carry literals, so their text rarely repeats and the cache would miss). Conservative:
 * anything unusual (quoted or escaped identifiers, dollar quotes, a second statement, INTO, a
 * function on the escape list, set_config) goes to the parser.
 */
const PLAIN_SELECT = /^\s*select\s/i;
const NOT_PLAIN = new RegExp(
  `["\\\\;]|u&|\\$[^0-9]|\\binto\\b|set_config|pg_settings|${[...ESCAPE_FUNCTIONS, ...WRITE_FUNCTIONS, ...SQL_TEXT_FUNCTIONS, ...CRON_FUNCTIONS].join('|')}`,
  'i',
);
const isPlainSelect = (sql: string): boolean => PLAIN_SELECT.test(sql) && !NOT_PLAIN.test(sql.replace(/;\s*$/, ''));
const ROLE_SETTINGS = new Set(['role', 'session_authorization']);
const READ_ONLY_SETTINGS = new Set(['default_transaction_read_only', 'transaction_read_only']);
/** The gateway sets it at login so a cut ends even a statement that ignores the cancel (session.ts). */
const CUT_OFF_SETTINGS = new Set(['client_connection_check_interval']);

const NOTHING: Findings = { hits: new Map() };

let ready: Promise<void> | undefined;
/** Loads the WASM parser once; call before the first check. */
export function loadGuardrailParser(): Promise<void> {
  ready ??= loadModule();
  return ready;
}

/**
 * The longest statement the parser is given, at up to ~1.5 ms per KiB (a long select list; a
 * VALUES list ~0.25 ms): a longer statement from a role with guardrails is denied as unparsable.
 */
export const MAX_CHECKED_SQL = 256 * 1024;
/** Statements up to this long are cache keys themselves; longer ones by their SHA-256. */
const MAX_TEXT_KEY = 1024;

/** Parses statements somewhere other than the calling thread (parse-pool.ts); `ms` is the parse's own time. */
export interface StatementParser {
  /** `wanted` is asked before the parse starts: when it says no, nobody waits any more and the parse is skipped (rejected). */
  findings(sql: string, wanted?: () => boolean, owner?: string): Promise<{ readonly findings: Findings; readonly ms: number }>;
}

/** How a parse ahead of check() went: its time (for the caller's share), and if the parser failed, the findings that deny it. */
export interface Prepared {
  readonly ms: number;
  /** The parser failed (too slow, its thread died): the check that waited denies the statement with these. */
  readonly failed?: Findings;
}
const PREPARED: Prepared = { ms: 0 };

/** What check() would need to know about `sql`: nothing (no parse needed), or its cache key. */
type Need = { readonly cached: Findings } | { readonly key: string; readonly long: boolean };

export class GuardrailChecker {
  readonly #cache = new Map<string, Findings>();
  readonly #longCache = new Map<string, Findings>();
  /** Parses in flight elsewhere, by cache key: sessions sending the same new statement share one. */
  readonly #inFlight = new Map<string, { readonly done: Promise<Prepared>; readonly waiting: Array<() => boolean> }>();
  /** Milliseconds spent parsing on this thread (cache misses), for sessions to account their share. */
  parseMs = 0;
  constructor(
    readonly maxCacheEntries = 10_000,
    /** Where cache misses are parsed ahead of check() (prepare); without it, check() parses them itself. */
    readonly parser?: StatementParser,
  ) {}

  /** Decides `sql` for a role denying `denied` (unknown names are ignored; validate them in the policy). */
  check(sql: string, denied: readonly string[], readOnly: boolean): GuardDecision {
    if (denied.length === 0 && !readOnly) return ALLOW;
    return decide(this.#findings(sql), denied, readOnly);
  }

  /**
   * Whether check() of `sql` for such a role would have to parse it on this thread: a statement
   * that needs checking and is not in the cache. With a parser, prepare() parses it elsewhere first.
   */
  needsParse(sql: string, denied: readonly string[], readOnly: boolean): boolean {
    if (this.parser === undefined || (denied.length === 0 && !readOnly)) return false;
    return !('cached' in this.#need(sql));
  }

  /**
   * Parses `sql` with the parser and caches what it found, so that check() finds it. Resolves with
   * the milliseconds the parse took (0 if it was cached meanwhile, or another caller's) and, if the
   * parser failed (not the statement), the findings that deny it in the check that waited (nothing
   * is cached then: the text is parsed afresh next time). Never rejects. `alive` says whether the
   * caller still waits: a parse nobody waits for any more is not started. `owner` (a user) is
   * whose turn the parse takes on the parser thread.
   */
  prepare(sql: string, alive: () => boolean = () => true, owner = ''): Promise<Prepared> {
    const need = this.#need(sql);
    if ('cached' in need || this.parser === undefined) return Promise.resolve(PREPARED);
    const shared = this.#inFlight.get(need.key);
    if (shared) {
      shared.waiting.push(alive);
      return shared.done.then((r) => (r.failed === undefined ? PREPARED : { ms: 0, failed: r.failed }));
    }
    const waiting = [alive];
    const done = this.parser.findings(sql, () => waiting.some((w) => w()), owner).then(
      (r): Prepared => {
        this.#remember(need, r.findings);
        return { ms: r.ms };
      },
      (e: unknown): Prepared => ({
        ms: e instanceof ParseFailed ? e.ms : 0,
        failed: { hits: new Map(), unparsable: e instanceof Error ? e.message : String(e) },
      }),
    ).finally(() => this.#inFlight.delete(need.key));
    this.#inFlight.set(need.key, { done, waiting });
    return done;
  }

  /** The last text #need looked at, and what it found: the gate and check() look at each statement in turn. */
  #lastSql: string | undefined;
  #lastNeed: Need | undefined;

  #need(sql: string): Need {
    if (sql === this.#lastSql && this.#lastNeed !== undefined) return this.#lastNeed;
    const need = this.#lookUp(sql);
    this.#lastSql = sql;
    this.#lastNeed = need;
    return need;
  }

  #lookUp(sql: string): Need {
    if (sql.length < 2048 && isPlainSelect(sql)) return { cached: NOTHING };
    if (sql.length > MAX_CHECKED_SQL) {
      return { cached: { hits: new Map(), unparsable: `it is ${Math.ceil(sql.length / 1024)} KiB, and statements over ${MAX_CHECKED_SQL / 1024} KiB are not parsed (split it, or load data with COPY)` } };
    }
    // Long statements are cached by their hash: 10,000 entries of up to 256 KiB would pin 2.5 GB.
    const long = sql.length > MAX_TEXT_KEY;
    const key = long ? textKey(sql) : sql;
    const hit = (long ? this.#longCache : this.#cache).get(key);
    return hit ? { cached: hit } : { key, long };
  }

  #findings(sql: string): Findings {
    const need = this.#need(sql);
    if ('cached' in need) return need.cached;
    const started = performance.now();
    const f = analyseText(sql);
    this.parseMs += performance.now() - started;
    this.#remember(need, f);
    return f;
  }

  #remember(need: { readonly key: string; readonly long: boolean }, f: Findings): void {
    this.#lastSql = undefined;
    this.#lastNeed = undefined;
    const cache = need.long ? this.#longCache : this.#cache;
    if (cache.size >= this.maxCacheEntries) {
      const oldest = cache.keys().next();
      if (!oldest.done) cache.delete(oldest.value);
    }
    cache.set(need.key, f);
  }
}

/** The decision for a role denying `denied` (unknown names are ignored) on what the guardrails found in a statement. */
export function decide(f: Findings, denied: readonly string[], readOnly: boolean): GuardDecision {
  if (f.unparsable !== undefined) {
    return { allowed: false, guardrail: 'unparsable', reason: `the statement could not be checked: ${f.unparsable}` };
  }
  if (readOnly) {
    const r = f.hits.get('read_only');
    if (r !== undefined) return { allowed: false, guardrail: 'read_only', reason: r };
  }
  for (const g of denied) {
    if (!isGuardrail(g)) continue;
    const r = f.hits.get(g);
    if (r !== undefined) return { allowed: false, guardrail: g, reason: r };
  }
  if (f.lexing !== undefined) return { allowed: false, guardrail: 'lexing', reason: f.lexing };
  return ALLOW;
}

const textKey = (sql: string): string => createHash('sha256').update(sql).digest('base64');

/** A parse that did not finish (too slow, or its thread died); `ms` is the time it took up anyway. */
export class ParseFailed extends Error {
  constructor(
    message: string,
    readonly ms: number,
  ) {
    super(message);
  }
}

/** What the guardrails find in `sql` (on the thread that calls it: the parser must be loaded there). */
export function analyseText(sql: string): Findings {
  const f: Findings = { hits: new Map() };
  try {
    analyse(sql, f, 0);
  } catch (e) {
    f.unparsable = parserMessage(e);
  }
  delete f.plpgsqlBodies;
  return f;
}

/**
 * The parser's complaint without the text it quotes: "unterminated quoted string at or near
 * "'hunter2"" would put a password the statement's own text has sealed into the denial's reason,
 * which is audited as it is (review 2026-12-02). The position says where, as PostgreSQL's
 * "at character N" does.
 */
export function parserMessage(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  const near = message.indexOf(' at or near ');
  if (near < 0) return message;
  const cursor = (e as { sqlDetails?: { cursorPosition?: unknown } }).sqlDetails?.cursorPosition;
  return `${message.slice(0, near)}${typeof cursor === 'number' ? ` at character ${cursor + 1}` : ''}`;
}

/**
 * Decides a FunctionCall protocol message ('F'). It names a function by OID with arguments that
 * may be binary, so there is no statement to check (set_config by OID would set `role` or turn
 * `default_transaction_read_only` off): like dynamic SQL in a DO block, it is denied whenever any
 * guardrail applies or the role is read-only, reported as read_only first, then the role's first
 * guardrail. Unknown guardrail names are ignored, as in check().
 */
export function checkFunctionCall(denied: readonly string[], readOnly: boolean): GuardDecision {
  const reason = 'a function called by OID cannot be checked';
  if (readOnly) return { allowed: false, guardrail: 'read_only', reason };
  const g = denied.find(isGuardrail);
  return g === undefined ? ALLOW : { allowed: false, guardrail: g, reason };
}

function analyse(sql: string, f: Findings, depth: number): void {
  if (depth > 8) throw new Error('DO blocks nested too deeply');
  const outer = f.plpgsqlBodies;
  f.plpgsqlBodies = [];
  walk(parseSync(sql), f, depth);
  // A PL/pgSQL function's body is checked as a DO block's is. It is compiled from this very text,
  // so its parameters and declarations are known to the PL/pgSQL parser.
  const bodies = f.plpgsqlBodies;
  f.plpgsqlBodies = outer;
  if (bodies.length > 0) checkPlpgsql(parsePlPgSQLSync(sql), bodies, f, depth);
}

/** The checks of compiled PL/pgSQL (`tree`) whose source bodies are `bodies`. */
function checkPlpgsql(tree: unknown, bodies: readonly string[], f: Findings, depth: number): void {
  const unchecked = (why: string) => uncheckable(f, why);
  plpgsql(tree, f, depth, unchecked);
  recordDefaults(tree, bodies, unchecked);
}

/**
 * libpg-query's dump of compiled PL/pgSQL leaves out the default of a `record` variable, and of a
 * variable of any type its stub resolver does not know (a user type, a domain, an extension's):
 * `DECLARE r record := row(setval(…))` ran past every guardrail, read-only included, because no
 * walk saw the expression (fifth review). So every declaration in the source that has a default
 * must be one the dump shows with its default (a variable's `default_val`, a cursor's query, which
 * the walk checks): any other is not checkable. Declarations are read as PL/pgSQL reads them: a
 * section ends at a BEGIN where a declaration would start, a declaration at the next `;` outside
 * parentheses, and names are compared as PostgreSQL folds them (a sixth review slipped past a
 * first version with a `begin` inside a default, a `""` in a quoted name and a 70-byte name).
 */
function recordDefaults(tree: unknown, bodies: readonly string[], unchecked: (why: string) => void): void {
  const shown = new Map<string, number>(); // declarations the dump shows with their default, by name
  const collect = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(collect);
    if (v === null || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const d = x as { refname?: unknown; lineno?: unknown; default_val?: unknown; cursor_explicit_expr?: unknown } | null;
      if (k === 'PLpgSQL_var' && d && typeof d.refname === 'string' && d.lineno !== undefined && (d.default_val !== undefined || d.cursor_explicit_expr !== undefined)) {
        shown.set(d.refname, (shown.get(d.refname) ?? 0) + 1);
      }
      collect(x);
    }
  };
  collect(tree);
  for (const body of bodies) {
    let declaring = false;
    let atStart = false;
    let depth = 0;
    let name: string | undefined;
    let hasDefault = false;
    for (const t of scanSync(body).tokens) {
      const word = t.text.toLowerCase();
      if (!declaring) {
        if (word === 'declare') [declaring, atStart] = [true, true];
        continue;
      }
      if (atStart) {
        if (word === 'begin') declaring = false;
        else if (word !== 'declare') [name, atStart, hasDefault, depth] = [plpgsqlIdentifier(t.text), false, false, 0];
        continue;
      }
      if (t.text === '(' || t.text === '[') depth++;
      else if (t.text === ')' || t.text === ']') depth--;
      else if (depth === 0 && t.text === ';') {
        if (hasDefault) {
          const left = (shown.get(name ?? '') ?? 0) - 1;
          if (left < 0) return unchecked(`the default of PL/pgSQL variable ${name ?? '?'} (a record, or of a type the gateway does not know) cannot be checked`);
          shown.set(name ?? '', left);
        }
        atStart = true;
      } else if (depth === 0 && (t.text === ':=' || t.text === '=' || word === 'default')) hasDefault = true;
    }
  }
}

/** An identifier token as PostgreSQL names it: quoted kept as written (`""` is `"`), else ASCII-lowercased; at most 63 bytes. */
function plpgsqlIdentifier(text: string): string {
  const name = text.startsWith('"') && text.endsWith('"') && text.length >= 2 ? text.slice(1, -1).replace(/""/g, '"') : text.replace(/[A-Z]/g, (c) => c.toLowerCase());
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length <= 63) return name;
  let end = 63;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--; // not inside a character
  return bytes.subarray(0, end).toString('utf8');
}

/** A statement that can set any setting, as set_config() with a computed name can. */
function settingsWriter(f: Findings, why: string): void {
  f.lexing ??= `${why}, including how the target reads SQL`;
  hit(f, 'set_role', `${why}, the role too`);
  hit(f, 'escape', `${why}: it could escape the granted role`);
  hit(f, 'read_only', `${why}: it can turn read-only off`);
}

/**
 * An object handed to another role (OWNER TO, CREATE SCHEMA … AUTHORIZATION, REASSIGN OWNED): a
 * view then reads, and a SECURITY DEFINER function runs, with that role's rights: SET ROLE by
 * another name (a review read a table only a member role could). To the session's own role
 * (CURRENT_USER, SESSION_USER, CURRENT_ROLE) it is nothing.
 */
function ownerChange(role: Json | undefined, f: Findings): void {
  const spec = field(role ?? null, 'RoleSpec') ?? role;
  const kind = spec !== null && typeof spec === 'object' && !Array.isArray(spec) ? spec.roletype : undefined;
  if (kind === 'ROLESPEC_CURRENT_USER' || kind === 'ROLESPEC_SESSION_USER' || kind === 'ROLESPEC_CURRENT_ROLE') return;
  hit(f, 'set_role', 'handing an object to another role acts as that role');
  hit(f, 'escape', 'handing an object to another role could escape the granted role');
}

/**
 * Whether `expr` is absent, or the column `column` itself cast to a type without a modifier,
 * possibly by way of text: a type change (`USING n::int`, `USING n::text::uuid`), not a rewrite.
 * A modifier (`::varchar(1)`) or another type on the way (`::boolean::int`, `::date::timestamptz`)
 * can lose what every row held (fourth review, 2026-12-02).
 */
function castOfColumn(expr: Json | undefined, column: string, outermost = true): boolean {
  if (expr === undefined) return true;
  const cast = field(expr, 'TypeCast');
  if (cast !== undefined) {
    const type = field(cast.typeName ?? null, 'TypeName') ?? (cast.typeName as Record<string, Json> | undefined);
    if (type === undefined || type === null || typeof type !== 'object' || Array.isArray(type) || type.typmods !== undefined) return false;
    const name = nameParts(type.names).pop()?.toLowerCase() ?? '';
    if (!outermost && !['text', 'varchar'].includes(name)) return false;
    return castOfColumn(cast.arg ?? null, column, false);
  }
  const fields = field(expr, 'ColumnRef')?.fields;
  const last = Array.isArray(fields) ? fields[fields.length - 1] : undefined;
  return field(last ?? null, 'String')?.sval === column;
}

/** Whether `v` (a parse tree) holds an option (DefElem) named `name`, at any depth. */
function hasOption(v: Json | undefined, name: string): boolean {
  if (v === null || v === undefined || typeof v !== 'object') return false;
  if (Array.isArray(v)) return v.some((x) => hasOption(x, name));
  return Object.entries(v).some(([k, x]) => (k === 'DefElem' && field(v, 'DefElem')?.defname === name) || hasOption(x, name));
}

/** Whether `v` (a parse tree) reads the relation `name` (any schema). */
function mentionsRelation(v: Json | undefined, name: string): boolean {
  if (v === null || v === undefined || typeof v !== 'object') return false;
  if (Array.isArray(v)) return v.some((x) => mentionsRelation(x, name));
  for (const [k, x] of Object.entries(v)) {
    if (k === 'RangeVar' && relationName(x) === name) return true;
    if (mentionsRelation(x, name)) return true;
  }
  return false;
}

/** Something that may run any SQL: it hits every guardrail and read-only. */
function uncheckable(f: Findings, why: string): void {
  for (const g of Object.keys(GUARDRAILS) as Guardrail[]) hit(f, g, why);
  hit(f, 'read_only', why);
}

const hit = (f: Findings, g: Guardrail | 'read_only', reason: string) => {
  if (!f.hits.has(g)) f.hits.set(g, reason);
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/**
 * Fields libpg-query writes without their node's type name, because their C type is that one node
 * type: `SELECT … INTO t UNION …` keeps its INTO in a bare `larg`, and `ALTER ROLE|DATABASE … SET
 * role` its SET in a bare `setstmt` (a review ran both past every guardrail). A field of the same
 * name holding a wrapped node (JoinExpr's larg) is walked as usual.
 */
const BARE_NODES = new Map([['larg', 'SelectStmt'], ['rarg', 'SelectStmt'], ['setstmt', 'VariableSetStmt'], ['funccall', 'FuncCall']]);
const isWrapped = (o: object): boolean => Object.keys(o).some((k) => /^[A-Z]/.test(k));

function walk(value: unknown, f: Findings, depth: number): void {
  if (Array.isArray(value)) {
    for (const v of value) walk(v, f, depth);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      if (/^[A-Z]/.test(key)) inspect(key, v as Record<string, Json>, f, depth);
      else {
        const bare = BARE_NODES.get(key);
        if (bare !== undefined && !isWrapped(v)) inspect(bare, v as Record<string, Json>, f, depth);
      }
    }
    walk(v, f, depth);
  }
}

function inspect(type: string, n: Record<string, Json>, f: Findings, depth: number): void {
  if (DDL.test(type)) hit(f, 'ddl', `${stmtName(type)} is DDL`);
  if (FUNCTION_REFERENCING.has(type)) referencedFunctions(n, f);
  if (ROLE_ESCAPE.has(type)) hit(f, 'escape', `${stmtName(type)} could escape the granted role`);
  switch (type) {
    case 'TruncateStmt':
      hit(f, 'truncate', 'TRUNCATE is not allowed');
      hit(f, 'write', 'TRUNCATE writes');
      break;
    case 'InsertStmt':
    case 'MergeStmt':
      hit(f, 'write', `${stmtName(type)} writes`);
      break;
    case 'UpdateStmt':
    case 'DeleteStmt':
      hit(f, 'write', `${stmtName(type)} writes`);
      if (n.whereClause === undefined) hit(f, 'write_without_where', `${stmtName(type)} without a WHERE clause`);
      // UPDATE pg_settings is set_config() for any setting the WHERE clause names.
      if (type === 'UpdateStmt' && relationName(n.relation) === 'pg_settings') settingsWriter(f, 'UPDATE pg_settings can change any setting');
      break;
    case 'SelectStmt':
      if (n.intoClause !== undefined) {
        hit(f, 'write', 'SELECT INTO creates a table');
        hit(f, 'ddl', 'SELECT INTO creates a table');
      }
      break;
    case 'CreateTableAsStmt':
      hit(f, 'write', 'CREATE TABLE AS writes');
      break;
    case 'CreateFunctionStmt':
      createFunction(n, f, depth);
      break;
    case 'CopyStmt':
      if (n.is_from === true) hit(f, 'write', 'COPY FROM writes');
      if (n.is_program === true || typeof n.filename === 'string') {
        const why = n.is_program === true ? 'COPY with a PROGRAM' : 'COPY with a server-side file';
        hit(f, 'copy_program', why);
        hit(f, 'escape', why);
      }
      break;
    case 'VariableSetStmt':
      variableSet(n, f);
      break;
    case 'ViewStmt':
      // pg_settings is updatable (its rule calls set_config), and so is a plain view of it: UPDATE
      // of such a view is UPDATE pg_settings by another name (review 2026-12-02).
      if (mentionsRelation(n.query, 'pg_settings')) settingsWriter(f, 'a view of pg_settings can change any setting');
      break;
    case 'RuleStmt':
      // A view's ON SELECT rule is its query: replacing `_RETURN` makes any view (on PostgreSQL
      // before 16 any table) a view of pg_settings, which the ViewStmt check never sees (second
      // review, 2026-12-02). Any rule that mentions pg_settings is treated so.
      if (mentionsRelation(n.actions, 'pg_settings') || relationName(n.relation) === 'pg_settings') {
        settingsWriter(f, 'a rule over pg_settings can change any setting');
      }
      break;
    case 'AlterTableCmd':
      if (n.subtype === 'AT_ChangeOwner') ownerChange(n.newowner, f);
      // ALTER COLUMN … TYPE … USING rewrites every row with the expression: an UPDATE without a
      // WHERE clause by another name (third review).
      // USING the column itself, cast (`USING x::int`, what migrations write) converts it and is
      // allowed.
      if (n.subtype === 'AT_AlterColumnType' && !castOfColumn(field(n.def ?? null, 'ColumnDef')?.raw_default, String(n.name ?? ''))) {
        hit(f, 'write', 'ALTER COLUMN … TYPE … USING rewrites every row');
        hit(f, 'write_without_where', 'ALTER COLUMN … TYPE … USING rewrites every row');
      }
      // An identity column's RESTART is setval on its sequence (second review).
      if ((n.subtype === 'AT_SetIdentity' || n.subtype === 'AT_AddIdentity') && hasOption(n.def, 'restart')) hit(f, 'write', 'RESTART of an identity column changes its sequence');
      break;
    case 'CreatedbStmt':
      if (Array.isArray(n.options)) {
        for (const o of n.options) {
          const d = field(o, 'DefElem');
          if (d?.defname !== 'owner') continue;
          const name = field(d.arg ?? null, 'String')?.sval;
          if (typeof name === 'string' && ['current_user', 'session_user', 'current_role'].includes(name.toLowerCase())) continue;
          ownerChange(field(d.arg ?? null, 'RoleSpec') !== undefined ? d.arg : null, f);
        }
      }
      break;
    case 'AlterOwnerStmt':
      ownerChange(n.newowner, f);
      break;
    case 'CreateSchemaStmt':
      // What CREATE SCHEMA … AUTHORIZATION creates in it belongs to that role.
      if (n.authrole !== undefined) ownerChange(n.authrole, f);
      break;
    case 'ReassignOwnedStmt':
      ownerChange(n.newrole, f);
      break;
    case 'RenameStmt':
      if (n.renameType === 'OBJECT_ROLE') hit(f, 'escape', 'renaming a role could escape the granted role');
      break;
    case 'AlterSeqStmt':
      // RESTART is setval by another name.
      if (hasOption(n.options, 'restart')) hit(f, 'write', 'ALTER SEQUENCE … RESTART changes the sequence');
      break;
    case 'CreateSubscriptionStmt':
    case 'AlterSubscriptionStmt':
    case 'CreateForeignServerStmt':
    case 'AlterForeignServerStmt':
    case 'CreateUserMappingStmt':
    case 'AlterUserMappingStmt':
      // Like dblink: the target connects where the client says, with credentials it gives.
      hit(f, 'escape', `${stmtName(type)} makes the target connect to another server`);
      break;
    case 'NotifyStmt':
      hit(f, 'write', 'NOTIFY signals other sessions');
      hit(f, 'read_only', 'NOTIFY signals other sessions, which a read-only role may not');
      break;
    case 'TransactionStmt':
      if (readWriteOption(n.options)) hit(f, 'read_only', 'a READ WRITE transaction is not allowed for a read-only role');
      break;
    case 'FuncCall':
      funcCall(n, f);
      break;
    case 'DoStmt':
      hit(f, 'do_block', 'DO blocks are not allowed');
      doBlock(n, f, depth);
      break;
  }
}

function variableSet(n: Record<string, Json>, f: Findings): void {
  const name = typeof n.name === 'string' ? n.name.toLowerCase() : '';
  const resetting = n.kind === 'VAR_RESET' || n.kind === 'VAR_RESET_ALL';
  // RESET (and SET … TO DEFAULT) goes back to the session's own value, which the gateway checked
  // at login; a safe value (ActiveRecord and pg_dump scripts set standard strings on and UTF8) is fine.
  if (LEXING_SETTINGS.has(name) && !resetting && n.kind !== 'VAR_SET_DEFAULT') {
    const value = constantText(n.args);
    const hazard = value === undefined ? `SET ${name} to something the gateway cannot read` : lexingHazard(name, value);
    if (hazard !== undefined) f.lexing ??= `SET ${name} would make the target read SQL differently (${hazard}), so the gateway could no longer check statements`;
  }
  if (ROLE_SETTINGS.has(name) && !resetting) {
    hit(f, 'set_role', `SET ${name.toUpperCase()} is not allowed`);
    hit(f, 'escape', `SET ${name.toUpperCase()} could escape the granted role`);
  }
  // RESET of default_transaction_read_only goes back to the `on` the gateway set at login; that of
  // transaction_read_only is refused by PostgreSQL 17 but was not always (review 2026-12-02).
  if (READ_ONLY_SETTINGS.has(name) && !turnsReadOnlyOn(name, n)) hit(f, 'read_only', `changing ${name} is not allowed for a read-only role`);
  if (CUT_OFF_SETTINGS.has(name) && !resetting) hit(f, 'escape', `changing ${name} could keep a statement running after the session is cut`);
  if ((name === 'transaction' || name === 'session characteristics') && readWriteOption(n.args)) {
    hit(f, 'read_only', 'READ WRITE is not allowed for a read-only role');
  }
}

/**
 * A SET or RESET of a read-only setting that can only leave it on: SET to on (psycopg's read-only
 * sessions send it; the third review found it denied), RESET or SET … TO DEFAULT of
 * default_transaction_read_only (back to the `on` the gateway set at login). Not RESET of
 * transaction_read_only, which PostgreSQL 17 refuses and older releases may not have.
 */
function turnsReadOnlyOn(name: string, n: Record<string, Json>): boolean {
  if (n.kind === 'VAR_SET_VALUE') {
    const value = constantText(n.args);
    return value !== undefined && ON.has(value.trim().toLowerCase());
  }
  const back = n.kind === 'VAR_RESET' || n.kind === 'VAR_RESET_ALL' || n.kind === 'VAR_SET_DEFAULT';
  return back && name === 'default_transaction_read_only';
}

/** true when a transaction option list asks for READ WRITE (transaction_read_only = false). */
function readWriteOption(options: Json | undefined): boolean {
  if (!Array.isArray(options)) return false;
  for (const o of options) {
    const d = field(o, 'DefElem');
    if (!d || d.defname !== 'transaction_read_only') continue;
    const ival = field(d.arg, 'A_Const')?.ival;
    // A_Const { ival: {} } is 0 = READ WRITE; { ival: { ival: 1 } } is READ ONLY.
    const readOnly = ival !== null && typeof ival === 'object' && !Array.isArray(ival) && ival.ival === 1;
    if (!readOnly) return true;
  }
  return false;
}

/** What calling the function `fname` (in `schema`, if qualified) can do, as far as the lists above know. */
function functionNamed(fname: string, schema: string | undefined, f: Findings): void {
  if (ESCAPE_FUNCTIONS.has(fname)) hit(f, 'escape', `${fname}() could escape the granted role`);
  if (WRITE_FUNCTIONS.has(fname)) {
    hit(f, 'write', `${fname}() writes`);
    if (fname === 'pg_notify') hit(f, 'read_only', 'pg_notify() signals other sessions, which a read-only role may not');
    // PostgreSQL allows it in a read-only transaction, and change-data-capture consumers read
    // what it writes to the WAL as events (third review, 2026-12-02).
    if (fname === 'pg_logical_emit_message') hit(f, 'read_only', 'pg_logical_emit_message() writes to the WAL, which a read-only role may not');
  }
  // pg_cron's names are common words: only cron's own (or unqualified, which may resolve to it).
  const cron = CRON_FUNCTIONS.has(fname) && (schema === undefined || schema === 'cron');
  if (SQL_TEXT_FUNCTIONS.has(fname) || cron) uncheckable(f, `${fname}() runs SQL given as text, which cannot be checked`);
}

/**
 * Statements that make a function callable without a call in sight: an operator, aggregate,
 * cast, trigger, event trigger, transform, conversion, operator class or family, language,
 * access method, range type or FDW names it, and an expression using it later shows no FuncCall
 * (a review ran pg_notify, setval and pg_cancel_backend as operators). The function positions of
 * these statements (FUNCTION_FIELDS, and every option of a definition) are looked up like a call; set_config so
 * reached could set anything. Column, type and argument names are not functions (a third review
 * saw a trigger on a column named `schedule` denied as pg_cron).
 */
const FUNCTION_REFERENCING = new Set([
  'DefineStmt', 'CreateCastStmt', 'CreateTrigStmt', 'CreateEventTrigStmt', 'CreateTransformStmt', 'CreateConversionStmt',
  'CreateOpClassStmt', 'AlterOpFamilyStmt', 'AlterOperatorStmt', 'AlterTypeStmt', 'CreatePLangStmt', 'CreateAmStmt',
  'CreateRangeStmt', 'CreateFdwStmt', 'AlterFdwStmt',
]);
/** Fields holding a function's name (a String list, or an ObjectWithArgs with one in `objname`). */
const FUNCTION_FIELDS = new Set(['funcname', 'func', 'fromsql', 'tosql', 'func_name', 'plhandler', 'plinline', 'plvalidator', 'handler_name']);
/** The String values in `v` (a name list, a TypeName's names, an ObjectWithArgs' objname, or a string constant). */
function nameParts(v: Json | undefined): string[] {
  if (v === null || v === undefined || typeof v !== 'object') return [];
  if (Array.isArray(v)) return v.flatMap((x) => (field(x, 'String')?.sval !== undefined ? [String(field(x, 'String')?.sval)] : nameParts(x)));
  const str = field(v, 'String')?.sval;
  if (typeof str === 'string') return [str];
  for (const k of ['objname', 'names', 'items', 'TypeName', 'List', 'ObjectWithArgs'] as const) if (v[k] !== undefined) return nameParts(v[k]);
  return [];
}

function referencedFunction(parts: readonly string[], f: Findings): void {
  const fname = (parts[parts.length - 1] ?? '').toLowerCase();
  if (fname === '') return;
  const schema = parts.length > 1 ? (parts[parts.length - 2] ?? '').toLowerCase() : undefined;
  // pg_cron's names are common words: here only when named in schema cron.
  functionNamed(fname, schema ?? '', f);
  if (fname === 'set_config') {
    uncheckable(f, 'set_config() named in a definition could set any setting');
    f.lexing ??= 'set_config() named in a definition could change how the target reads SQL';
  }
}

function referencedFunctions(n: Json, f: Findings): void {
  if (Array.isArray(n)) {
    for (const v of n) referencedFunctions(v, f);
    return;
  }
  if (n === null || typeof n !== 'object') return;
  for (const [k, v] of Object.entries(n)) {
    if (FUNCTION_FIELDS.has(k)) referencedFunction(nameParts(v), f);
    else if (k === 'DefElem' && v !== null && typeof v === 'object' && !Array.isArray(v)) {
      // Every option of these definitions is read as a possible function: the list of those that
      // take one missed CREATE AGGREGATE's old `sfunc1` (a review made set_config an aggregate's
      // step that way, past every guardrail but ddl). A type or a literal named like a function
      // on the lists is denied too; no ordinary definition uses one.
      referencedFunction(nameParts(v.arg), f);
    } else if (k === 'CreateOpClassItem' && v !== null && typeof v === 'object' && !Array.isArray(v) && v.itemtype === 2) {
      referencedFunction(nameParts(v.name), f); // OPCLASS_ITEM_FUNCTION
    } else referencedFunctions(v, f);
  }
}

function funcCall(n: Record<string, Json>, f: Findings): void {
  const names = Array.isArray(n.funcname) ? n.funcname : [];
  const last = names[names.length - 1];
  const fname = String(field(last ?? null, 'String')?.sval ?? '').toLowerCase();
  const schema = names.length > 1 ? String(field(names[names.length - 2] ?? null, 'String')?.sval ?? '').toLowerCase() : undefined;
  functionNamed(fname, schema, f);
  if (fname !== 'set_config') return;
  const first = Array.isArray(n.args) ? n.args[0] : undefined;
  const sval = field(first ?? null, 'A_Const')?.sval;
  const setting = (sval !== null && typeof sval === 'object' && !Array.isArray(sval) && typeof sval.sval === 'string' ? sval.sval : '').toLowerCase();
  if (setting === '' || ROLE_SETTINGS.has(setting)) {
    hit(f, 'set_role', 'set_config() of the role is not allowed');
    hit(f, 'escape', 'set_config() could escape the granted role');
  }
  if (setting === '' || READ_ONLY_SETTINGS.has(setting)) hit(f, 'read_only', 'set_config() of read-only settings is not allowed');
  if (CUT_OFF_SETTINGS.has(setting)) hit(f, 'escape', `set_config() of ${setting} could keep a statement running after the session is cut`);
  if (setting === '' || LEXING_SETTINGS.has(setting)) {
    const value = constantText(Array.isArray(n.args) && n.args[1] !== undefined ? [n.args[1]] : undefined);
    if (setting === '' || value === undefined || lexingHazard(setting, value) !== undefined) f.lexing ??= `set_config() of ${setting || 'a computed setting'} could change how the target reads SQL`;
  }
}

/** The single constant a SET or set_config() argument list holds (string, number or boolean), as text. */
function constantText(args: Json | undefined): string | undefined {
  if (!Array.isArray(args) || args.length !== 1) return undefined;
  const c = field(args[0] ?? null, 'A_Const');
  if (!c) return undefined;
  for (const [k, inner] of [['sval', 'sval'], ['ival', 'ival'], ['boolval', 'boolval'], ['fval', 'fval']] as const) {
    const v = c[k];
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const x = v[inner];
      if (x === undefined) return k === 'ival' ? '0' : k === 'boolval' ? 'false' : undefined; // protobuf-JSON omits zero values
      return String(x);
    }
  }
  return undefined;
}

/**
 * A function or procedure runs its body whenever it is called, and a call is an ordinary SELECT
 * or CALL: so the body is checked where it is created (a review wrote UPDATE, TRUNCATE and
 * set_config('role') into pg_temp functions and ran them past every guardrail but ddl). SQL
 * bodies are analysed as statements, PL/pgSQL ones like a DO block (and count as one for
 * do_block); a body in any other language cannot be checked. BEGIN ATOMIC bodies are part of the
 * parse tree and walked anyway.
 */
function createFunction(n: Record<string, Json>, f: Findings, depth: number): void {
  let language: string | undefined;
  let bodies: string[] = [];
  for (const o of Array.isArray(n.options) ? n.options : []) {
    const d = field(o, 'DefElem');
    if (d?.defname === 'language') language = String(field(d.arg ?? null, 'String')?.sval ?? '').toLowerCase();
    if (d?.defname === 'as') {
      const items = field(d.arg ?? null, 'List')?.items;
      bodies = (Array.isArray(items) ? items : []).map((i) => String(field(i, 'String')?.sval ?? ''));
    }
  }
  if (n.sql_body !== undefined && bodies.length === 0) return;
  const what = n.is_procedure === true ? 'a procedure' : 'a function';
  language ??= 'sql';
  if (language === 'sql') {
    for (const body of bodies) analyse(body, f, depth + 1);
  } else if (language === 'plpgsql') {
    hit(f, 'do_block', `${what} in PL/pgSQL runs like a DO block`);
    f.plpgsqlBodies?.push(...bodies);
  } else {
    uncheckable(f, `${what} in ${language} cannot be checked`);
  }
}

/** Checks every SQL statement and expression inside a PL/pgSQL DO block; dynamic SQL cannot be checked. */
function doBlock(n: Record<string, Json>, f: Findings, depth: number): void {
  let body: string | undefined;
  let language = 'plpgsql';
  for (const a of Array.isArray(n.args) ? n.args : []) {
    const d = field(a, 'DefElem');
    const s = field(d?.arg ?? null, 'String')?.sval;
    if (d?.defname === 'as' && typeof s === 'string') body = s;
    if (d?.defname === 'language' && typeof s === 'string') language = s.toLowerCase();
  }
  const unchecked = (why: string) => uncheckable(f, why);
  if (body === undefined || language !== 'plpgsql') return unchecked(`a DO block in ${language} cannot be checked`);
  const fn = `CREATE FUNCTION hallpass_do() RETURNS void LANGUAGE plpgsql AS $hallpass_do$${body}$hallpass_do$`;
  if (body.includes('$hallpass_do$')) return unchecked('a DO block that cannot be checked');
  checkPlpgsql(parsePlPgSQLSync(fn), [body], f, depth);
}

function plpgsql(value: unknown, f: Findings, depth: number, unchecked: (why: string) => void): void {
  if (Array.isArray(value)) {
    for (const v of value) plpgsql(v, f, depth, unchecked);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    // EXECUTE, FOR … IN EXECUTE, and any statement with a dynamic query (OPEN … FOR EXECUTE,
    // RETURN QUERY EXECUTE, which a review ran past every guardrail in a SETOF function).
    if (key === 'PLpgSQL_stmt_dynexecute' || key === 'PLpgSQL_stmt_dynfors' || (key === 'dynquery' && v !== null && v !== undefined)) {
      unchecked('dynamic SQL (EXECUTE) in PL/pgSQL cannot be checked');
    }
    if (key === 'PLpgSQL_expr' && v !== null && typeof v === 'object') {
      const e = v as { query?: unknown; parseMode?: unknown };
      if (typeof e.query === 'string') {
        const q = e.query;
        if (e.parseMode === undefined || e.parseMode === 0) analyse(q, f, depth + 1);
        else {
          if ((e.parseMode as number) >= 3) {
            // An assignment: its value, and its target too (`a[(SELECT … FROM pg_notify(…))] := 1`
            // evaluates the subscript: a third review hid a call there), split where the
            // scanner finds the operator (a fourth review hid both sides behind an `=` in a comment).
            const { target, value } = splitAssignment(q);
            analyse(`SELECT ${value}`, f, depth + 1);
            if (!/^[\s\w."$]*$/.test(target)) analyse(`SELECT ${target}`, f, depth + 1);
          } else analyse(`SELECT ${q}`, f, depth + 1);
        }
      }
    }
    plpgsql(v, f, depth, unchecked);
  }
}

/**
 * A PL/pgSQL assignment (`target := value` or `target = value`) split at its operator, the first
 * `:=` or `=` token outside brackets and parentheses as PostgreSQL's scanner reads the text (so
 * never inside a comment or a string). Throws (unparsable, so denied) when there is none.
 */
function splitAssignment(q: string): { target: string; value: string } {
  const bytes = Buffer.from(q, 'utf8');
  let depth = 0;
  for (const t of scanSync(q).tokens) {
    if (t.text === '(' || t.text === '[') depth++;
    else if (t.text === ')' || t.text === ']') depth--;
    else if (depth === 0 && (t.text === ':=' || t.text === '=')) {
      return { target: bytes.subarray(0, t.start).toString('utf8'), value: bytes.subarray(t.end).toString('utf8') };
    }
  }
  throw new Error('an assignment without an operator');
}

function relationName(rel: Json | undefined): string {
  return rel !== null && typeof rel === 'object' && !Array.isArray(rel) && typeof rel.relname === 'string' ? rel.relname.toLowerCase() : '';
}

function field(v: Json | undefined, key: string): Record<string, Json> | undefined {
  if (v === null || v === undefined || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const inner = v[key];
  return inner !== null && typeof inner === 'object' && !Array.isArray(inner) ? inner : undefined;
}

const stmtName = (type: string): string =>
  type
    .replace(/Stmt$/, '')
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .toUpperCase();
