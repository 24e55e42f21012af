import { HALLPASS_TOKEN, URL_PASSWORD_IN_SQL, mayHoldUrlOrToken } from './secret-patterns.js';

/**
 * Secrets in SQL text, found for the audit log (the `sql` of every statement a client runs through
 * the gateway) and replaced by what `mask` makes of them (redact.ts seals them, seal.ts: SQL can
 * read its own text back, so a blank would hide what it then runs): passwords written into statements (`ALTER ROLE ann PASSWORD 'x'`, psql's
 * `\password`, `USER MAPPING … OPTIONS (password 'x')`), the password of a connection string
 * where PostgreSQL takes one (`dblink_connect('host=db password=x')`, a subscription's
 * `CONNECTION`, `primary_conninfo`), and URL passwords and hallpass tokens in comments and in
 * literals that hold nothing else.
 *
 * Statement text is the point of the gateway's audit, so a mask must never hide SQL that runs (two
 * reviews on 2026-12-02 made PostgreSQL run statements an earlier version hid). The text is lexed
 * as PostgreSQL lexes it (nested comments, quoted identifiers, dollar quotes, string continuation
 * across newlines), and only the inside of a comment or string literal is ever replaced; inside a
 * literal, only what cannot be code where it stands:
 * - the literal after `PASSWORD` in `CREATE|ALTER ROLE|USER|GROUP` (nothing runs it where it stands);
 * - after `password`/`sslpassword` in the `OPTIONS` of `CREATE|ALTER SERVER|USER MAPPING`, a value
 *   without whitespace, quotes, `$`, parentheses, `;`, `*` or `/` (a foreign-data wrapper's
 *   validator could run it);
 * - a connection string's password: with those characters excluded as well in a subscription's
 *   `CONNECTION` and `primary_conninfo`; of letters, digits and `_` only in the connection argument
 *   of `dblink_connect`, `dblink` and `dblink_exec` (a function of that name in another schema may
 *   run its argument: it then hides at most one identifier);
 * - a URL password (unreserved characters and `%`) or a hallpass token anywhere in a comment, and in
 *   a literal whose whole content is that URL or token (part of a longer literal may be code: a `DO`
 *   body, a string `query_to_xml` runs).
 *
 * The text must be ASCII without a backslash, or nothing is masked: the gateway decodes bytes as
 * UTF-8 while the target reads them in the session's client encoding (in SJIS a character's second
 * byte may be `@` or a backslash; in LATIN1 `$é$` and `$è$` are different tags that both decode to
 * `$\uFFFD$`), and whether a backslash escapes depends on `standard_conforming_strings`. ASCII
 * bytes mean the same in every client encoding PostgreSQL offers.
 */
export function maskSqlText(sql: string, mask: (secret: string) => string): string {
  if (!MAY_HOLD_PASSWORD.test(sql) && !mayHoldUrlOrToken(sql) && !sql.includes(MARKER_START)) return sql;
  // A statement clipped for the log ends in "…" (tracker.ts): what precedes it is what was sent.
  const body = sql.endsWith(CLIPPED) ? sql.slice(0, -CLIPPED.length) : sql;
  return applySpans(sql, withTypedMarkers(sql, sqlSecretSpans(body)), mask);
}

/**
 * The start of a sealed span's marker (seal.ts). A client that types one (or pastes one copied from
 * the log) has it sealed too, so that a reveal, which opens one level, shows what the client sent
 * and never another event's secret in its place (fourth review, 2026-12-02).
 */
const MARKER_START = '[sealed:';

function withTypedMarkers(text: string, spans: Span[]): Span[] {
  if (!text.includes(MARKER_START)) return spans;
  const all = [...spans];
  for (let i = text.indexOf(MARKER_START); i >= 0; i = text.indexOf(MARKER_START, i + 1)) all.push([i, i + MARKER_START.length]);
  return merged(all);
}

const CLIPPED = '…';

/**
 * A Bind parameter's value, masked for the audit log. A parameter may be SQL that a function runs
 * (`dblink_exec(conn, $1)`), so only a value that is wholly a URL or a hallpass token is masked (the
 * URL's password, of unreserved characters and `%`).
 */
export function maskSqlParameter(value: string, mask: (secret: string) => string): string {
  if (!mayHoldUrlOrToken(value) && !value.includes(MARKER_START)) return value;
  return applySpans(value, withTypedMarkers(value, mayHoldUrlOrToken(value) ? wholeValueSpans(value, 0, value.length, undefined) : []), mask);
}

function applySpans(sql: string, spans: readonly Span[], mask: (secret: string) => string): string {
  if (spans.length === 0) return sql;
  let out = '';
  let at = 0;
  for (const [from, to] of spans) {
    out += sql.slice(at, from) + mask(sql.slice(from, to));
    at = to;
  }
  return out + sql.slice(at);
}

const MAY_HOLD_PASSWORD = /passw/i;

type Span = [number, number];

interface Word { kind: 'word'; text: string; quoted: boolean }
interface Literal {
  kind: 'literal';
  /** Each piece's content (raw text between its quotes); several when continued across newlines. */
  pieces: Span[];
  /** The decoded text of all pieces (a doubled quote is one), and the raw offset of each of its characters. */
  content: string;
  at: number[];
}
interface Punct { kind: 'punct'; char: string }
type Token = Word | Literal | Punct;

/** ASCII without a backslash: lexed the same in every client encoding and either string setting. */
const LEXABLE = /^[\0-\x5b\x5d-\x7f]*$/;

/**
 * The [from, to) ranges (UTF-16 offsets, sorted, disjoint) of `sql` to mask; none unless the text
 * is LEXABLE (see maskSqlText).
 */
export function sqlSecretSpans(sql: string): Span[] {
  if (!LEXABLE.test(sql)) return [];
  const { tokens, comments } = lex(sql);
  const spans: Span[] = [];
  if (mayHoldUrlOrToken(sql)) {
    for (const [from, to] of comments) {
      const region = sql.slice(from, to);
      if (!mayHoldUrlOrToken(region)) continue;
      for (const m of region.matchAll(URL_PASSWORD_IN_SQL)) spans.push([from + m.index + m[1]!.length, from + m.index + m[0].length]);
      for (const m of region.matchAll(HALLPASS_TOKEN)) spans.push([from + m.index, from + m.index + m[0].length]);
    }
    for (const t of tokens) if (t.kind === 'literal' && mayHoldUrlOrToken(t.content)) spans.push(...wholeValueSpans(t.content, 0, t.content.length, t));
  }
  if (MAY_HOLD_PASSWORD.test(sql) || sql.includes('://')) passwordSpans(tokens, spans);
  return merged(spans);
}

const WHOLE_URL = /^[a-z][a-z0-9+.-]*:\/\/\S*$/i;
const WHOLE_TOKEN = new RegExp(`^(?:${HALLPASS_TOKEN.source})$`);

/**
 * When `s` (a literal's decoded content, or a parameter) is wholly a URL or a token: the span of
 * its URL password or of the token, as raw offsets of `lit` (or of `s` itself).
 */
function wholeValueSpans(s: string, from: number, to: number, lit: Literal | undefined): Span[] {
  const raw = (k: number): number => (lit === undefined ? k : rawOffset(lit, k));
  if (WHOLE_TOKEN.test(s)) return [[raw(from), raw(to)]];
  if (!WHOLE_URL.test(s)) return [];
  const out: Span[] = [];
  for (const m of s.matchAll(URL_PASSWORD_IN_SQL)) out.push([raw(m.index + m[1]!.length), raw(m.index + m[0].length)]);
  return out;
}

/** The raw offset in the statement of the k-th character of a literal's decoded content (k may be its length). */
function rawOffset(lit: Literal, k: number): number {
  return k < lit.at.length ? lit.at[k]! : (lit.pieces[lit.pieces.length - 1] as Span)[1];
}

function merged(spans: Span[]): Span[] {
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const out: Span[] = [];
  for (const s of spans) {
    const last = out[out.length - 1];
    if (last !== undefined && s[0] <= last[1]) last[1] = Math.max(last[1], s[1]);
    else if (s[1] > s[0]) out.push([s[0], s[1]]);
  }
  return out;
}

/** Functions whose argument is a connection string: which argument, given how many there are. */
// A Map, not an object literal: a word such as `__proto__` or `constructor` before `(` must not find
// Object.prototype (a statement with `AS __proto__(a)` once made masking throw, and its event was
// stored without its text: third review, 2026-12-02).
const CONNINFO_ARGUMENT = new Map<string, (args: number) => number>([
  ['dblink_connect', (n) => n - 1], // (conninfo) or (name, conninfo)
  ['dblink_connect_u', (n) => n - 1],
  ['dblink', (n) => (n >= 2 ? 0 : -1)], // (conninfo or name, sql); alone, the argument is SQL
  ['dblink_exec', (n) => (n >= 2 ? 0 : -1)],
]);

/** Values that cannot carry code: no whitespace, quotes, `$`, parentheses, `;`, `*`, `/` (nor `\`). */
const SAFE_VALUE = /^[^\s'"$();*/\\]+$/;
/** Values that are at most one identifier or number. */
const WORD_VALUE = /^[A-Za-z0-9_]+$/;

/** Adds to `spans` the passwords of role and option statements and of connection strings among `tokens`. */
function passwordSpans(tokens: readonly Token[], spans: Span[]): void {
  let words: string[] = [];
  // Open parentheses: for a call of a CONNINFO_ARGUMENT function, which one and the tokens of each
  // argument so far; null for any other (a deep nest of parentheses allocates nothing per level).
  const calls: Array<{ which: (args: number) => number; args: Token[][] } | null> = [];
  const conninfo = (t: Literal, valueOk: RegExp): void => {
    for (const [from, to] of conninfoPasswords(t.content, valueOk)) spans.push([rawOffset(t, from), rawOffset(t, to)]);
  };
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const prev = tokens[i - 1];
    const call = calls[calls.length - 1];
    if (t.kind === 'punct' && t.char === '(') {
      call?.args.at(-1)!.push(t); // a nested parenthesis: that argument is not a lone literal
      // A quoted name is the same function when its text is exactly the lowercase name
      // ("dblink_connect"(…) runs dblink_connect: review 2026-12-02 found its password kept).
      const which = prev?.kind === 'word' ? CONNINFO_ARGUMENT.get(prev.text) : undefined;
      calls.push(which === undefined ? null : { which, args: [[]] });
      continue;
    }
    if (t.kind === 'punct' && t.char === ')' && calls.length > 0) {
      calls.pop();
      const arg = call ? call.args[call.which(call.args.length)] : undefined;
      if (arg !== undefined && arg.length === 1 && arg[0]!.kind === 'literal') conninfo(arg[0]!, WORD_VALUE);
      continue;
    }
    if (t.kind === 'punct' && t.char === ',' && call) {
      call.args.push([]);
      continue;
    }
    call?.args.at(-1)!.push(t);
    if (t.kind === 'punct' && t.char === ';' && calls.length === 0) {
      words = [];
      continue;
    }
    if (t.kind === 'word') {
      if (words.length < 3) words.push(t.quoted ? `"${t.text}` : t.text);
      continue;
    }
    if (t.kind !== 'literal') continue;
    const changing = words[0] === 'create' || words[0] === 'alter';
    const after = (...w: string[]): boolean => prev?.kind === 'word' && w.includes(prev.text); // unquoted words are lowercased
    const options = words[1] === 'server' || (words[1] === 'user' && words[2] === 'mapping');
    if (changing && !options && (words[1] === 'role' || words[1] === 'user' || words[1] === 'group') && after('password')) {
      for (const p of t.pieces) spans.push([p[0], p[1]]);
    } else if (changing && options && after('password', 'sslpassword')) {
      if (SAFE_VALUE.test(t.content)) for (const p of t.pieces) spans.push([p[0], p[1]]);
    } else if (changing && words[1] === 'subscription' && after('connection')) {
      conninfo(t, SAFE_VALUE);
    } else if (words[0] === 'alter' && words[1] === 'system') {
      const before = tokens[i - 2];
      const assigned = (prev?.kind === 'punct' && prev.char === '=') || after('to');
      if (assigned && before?.kind === 'word' && before.text === 'primary_conninfo') conninfo(t, SAFE_VALUE);
    }
  }
}

/** Punctuation tokens are never changed: one object per character (the text is ASCII). */
const PUNCTS = new Map<string, Punct>();
function punct(char: string): Punct {
  let t = PUNCTS.get(char);
  if (t === undefined) PUNCTS.set(char, (t = { kind: 'punct', char }));
  return t;
}

const isSpace = (c: number): boolean => c === 32 || (c >= 9 && c <= 13);
const isIdentStart = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c >= 0x80;
const isIdentChar = (c: number): boolean => isIdentStart(c) || (c >= 48 && c <= 57) || c === 36;
const QUOTE = 39;

/**
 * PostgreSQL's lexing of an ASCII text without backslashes, reduced to what the masks need: words,
 * literals, single punctuation characters; and the comments' contents.
 */
function lex(sql: string): { tokens: Token[]; comments: Span[] } {
  const tokens: Token[] = [];
  const comments: Span[] = [];
  const n = sql.length;
  let i = 0;
  /** The end of the `--` comment at `j` (its newline, or the text's end). */
  const lineEnd = (j: number): number => {
    while (j < n && sql.charCodeAt(j) !== 10 && sql.charCodeAt(j) !== 13) j++;
    return j;
  };
  while (i < n) {
    const c = sql.charCodeAt(i);
    const next = sql.charCodeAt(i + 1);
    if (isSpace(c)) { i++; continue; }
    if (c === 45 /* - */ && next === 45) {
      const end = lineEnd(i + 2);
      comments.push([i + 2, end]);
      i = end;
      continue;
    }
    if (c === 47 /* / */ && next === 42 /* * */) {
      let nest = 1;
      let j = i + 2;
      while (j < n && nest > 0) {
        const d = sql.charCodeAt(j);
        if (d === 47 && sql.charCodeAt(j + 1) === 42) { nest++; j += 2; } else if (d === 42 && sql.charCodeAt(j + 1) === 47) { nest--; j += 2; } else j++;
      }
      comments.push([i + 2, nest === 0 ? j - 2 : n]);
      i = j;
      continue;
    }
    // A quoted literal, with any prefix (E, N, B, X, U&) that starts a token: without backslashes
    // they all end at the first quote that is not doubled.
    const prefix = c === QUOTE ? 0 : next === QUOTE && 'eEnNbBxX'.includes(sql[i]!) ? 1 : (c === 85 || c === 117) && next === 38 && sql.charCodeAt(i + 2) === QUOTE ? 2 : -1;
    if (prefix >= 0) {
      const lit: Literal = { kind: 'literal', pieces: [], content: '', at: [] };
      let j = i + prefix + 1;
      for (;;) {
        const start = j;
        while (j < n) {
          if (sql.charCodeAt(j) === QUOTE) {
            if (sql.charCodeAt(j + 1) !== QUOTE) break;
            lit.at.push(j);
            lit.content += "'";
            j += 2;
            continue;
          }
          lit.at.push(j);
          lit.content += sql[j];
          j++;
        }
        lit.pieces.push([start, j]);
        if (j >= n) break;
        // String continuation: another quote after whitespace that holds a newline (with `--`
        // comments allowed in it) continues the same literal.
        // Before the newline only horizontal space (space, tab, form feed) or a `--` comment; after
        // it any whitespace and `--` comments (scan.l's whitespace_with_newline).
        let k = j + 1;
        let newline = false;
        for (;;) {
          const d = sql.charCodeAt(k);
          if (d === 10 || d === 13) { newline = true; k++; } else if (d === 32 || d === 9 || d === 12 || (newline && isSpace(d))) k++;
          else if (d === 45 && sql.charCodeAt(k + 1) === 45) k = lineEnd(k + 2);
          else break;
        }
        if (!newline || sql.charCodeAt(k) !== QUOTE) { j++; break; }
        j = k + 1;
      }
      tokens.push(lit);
      i = j;
      continue;
    }
    if (c === 34 /* " */) {
      let j = i + 1;
      let text = '';
      while (j < n) {
        if (sql.charCodeAt(j) === 34) {
          if (sql.charCodeAt(j + 1) !== 34) break;
          text += '"';
          j += 2;
          continue;
        }
        text += sql[j];
        j++;
      }
      tokens.push({ kind: 'word', text, quoted: true });
      i = j + 1;
      continue;
    }
    if (c === 36 /* $ */) {
      // A dollar quote ($$ or $tag$), else a parameter ($1) or a lone $.
      let j = i + 1;
      if (j < n && isIdentStart(sql.charCodeAt(j))) {
        j++;
        while (j < n && isIdentChar(sql.charCodeAt(j)) && sql.charCodeAt(j) !== 36) j++;
      }
      if (sql.charCodeAt(j) === 36) {
        const tag = sql.slice(i, j + 1);
        const start = j + 1;
        const end = sql.indexOf(tag, start);
        const stop = end < 0 ? n : end;
        const at: number[] = [];
        for (let k = start; k < stop; k++) at.push(k);
        tokens.push({ kind: 'literal', pieces: [[start, stop]], content: sql.slice(start, stop), at });
        i = end < 0 ? n : end + tag.length;
        continue;
      }
      i++;
      while (i < n && sql.charCodeAt(i) >= 48 && sql.charCodeAt(i) <= 57) i++;
      tokens.push(punct('$'));
      continue;
    }
    if (isIdentStart(c)) {
      let j = i + 1;
      while (j < n && isIdentChar(sql.charCodeAt(j))) j++;
      tokens.push({ kind: 'word', text: sql.slice(i, j).toLowerCase(), quoted: false });
      i = j;
      continue;
    }
    if (c >= 48 && c <= 57) {
      let j = i + 1;
      // A number (digits, a point, an exponent, junk letters); a `$` after it starts a new token.
      while (j < n && ((isIdentChar(sql.charCodeAt(j)) && sql.charCodeAt(j) !== 36) || sql.charCodeAt(j) === 46)) j++;
      tokens.push(punct('0'));
      i = j;
      continue;
    }
    tokens.push(punct(sql[i]!));
    i++;
  }
  return { tokens, comments };
}

/**
 * In a libpq connection string, the [from, to) of its `password` and `sslpassword` values that
 * `valueOk` accepts: key=value form (values bare or single-quoted; the whole string must be such
 * pairs), or a URI (`postgresql://user:password@…?sslpassword=…`).
 */
function conninfoPasswords(s: string, valueOk: RegExp): Span[] {
  const found: Span[] = [];
  const take = (from: number, to: number): void => {
    if (to > from && valueOk.test(s.slice(from, to))) found.push([from, to]);
  };
  const uri = /^\s*postgres(?:ql)?:\/\/(?:[^/?#@\s:]*:([^/?#@\s]*)@)?/i.exec(s);
  if (uri) {
    if (uri[1] !== undefined) take(uri[0].length - 1 - uri[1].length, uri[0].length - 1);
    for (const m of s.matchAll(/[?&](?:ssl)?password=([^&#]*)/gi)) take(m.index + m[0].length - m[1]!.length, m.index + m[0].length);
    return found;
  }
  let i = 0;
  const n = s.length;
  const skipSpace = (): void => { while (i < n && isSpace(s.charCodeAt(i))) i++; };
  skipSpace();
  while (i < n) {
    const keyStart = i;
    while (i < n && /[A-Za-z0-9_]/.test(s[i]!)) i++;
    if (i === keyStart) return [];
    const key = s.slice(keyStart, i).toLowerCase();
    skipSpace();
    if (s[i] !== '=') return [];
    i++;
    skipSpace();
    let from: number;
    let to: number;
    if (s[i] === "'") {
      from = i + 1;
      i++;
      while (i < n && s[i] !== "'") i++;
      if (i >= n) return [];
      to = i;
      i++;
    } else {
      from = i;
      while (i < n && !isSpace(s.charCodeAt(i))) i++;
      to = i;
    }
    if (key === 'password' || key === 'sslpassword') take(from, to);
    skipSpace();
  }
  return found;
}
