import { HALLPASS_TOKEN, URL_PASSWORD_IN_SQL, mayHoldUrlOrToken } from './secret-patterns.js';

/**
 * Secrets in SQL text, masked for the audit log (the `sql` of every statement a client runs through
 * the gateway): passwords written into statements (`ALTER ROLE ann PASSWORD 'x'`, psql's
 * `\password`, `USER MAPPING … OPTIONS (password 'x')`), the password of a connection string
 * where PostgreSQL takes one (`dblink_connect('host=db password=x')`, a subscription's
 * `CONNECTION`, `primary_conninfo`), and URL passwords and hallpass tokens written in literals or
 * comments.
 *
 * Statement text is the point of the gateway's audit, so a mask must never hide SQL that runs.
 * The text is lexed as PostgreSQL lexes it (nested comments, quoted identifiers, dollar quotes,
 * string continuation across newlines), and only the inside of a string literal or comment is ever
 * replaced:
 * - the literal after the word `password` in a statement that starts `CREATE|ALTER
 *   ROLE|USER|GROUP|SERVER` (so also `USER MAPPING`): no literal there is run as code;
 * - the `password`/`sslpassword` value of a literal that is a whole connection string, where it is
 *   the whole argument PostgreSQL reads as one: nowhere else, because `key=value` is also valid
 *   shell (`COPY … TO PROGRAM`), Python, or a piece of SQL being concatenated for `query_to_xml`;
 * - a URL password or a token inside a literal or comment, of characters that cannot end an
 *   expression or start one (a literal may be code: a `DO` body, a function's source).
 *
 * Where a backslash is present nothing is masked: whether it escapes depends on
 * `standard_conforming_strings`, and under client encodings such as SJIS a backslash byte may be the
 * second half of a character, so the gateway cannot know where a literal ends.
 */
export function maskSqlText(sql: string, mask: string): string {
  if (!MAY_HOLD_PASSWORD.test(sql) && !mayHoldUrlOrToken(sql)) return sql;
  const spans = sqlSecretSpans(sql);
  if (spans.length === 0) return sql;
  let out = '';
  let at = 0;
  for (const [from, to] of spans) {
    out += sql.slice(at, from) + mask;
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

/**
 * The [from, to) ranges (UTF-16 offsets, sorted, disjoint) of `sql` to mask; none when the text
 * holds a backslash (see maskSqlText).
 */
export function sqlSecretSpans(sql: string): Span[] {
  if (sql.includes('\\')) return [];
  const { tokens, inert } = lex(sql);
  const spans: Span[] = [];
  if (mayHoldUrlOrToken(sql)) {
    for (const [from, to] of inert) {
      const region = sql.slice(from, to);
      if (!mayHoldUrlOrToken(region)) continue;
      for (const m of region.matchAll(URL_PASSWORD_IN_SQL)) spans.push([from + m.index + m[1]!.length, from + m.index + m[0].length]);
      for (const m of region.matchAll(HALLPASS_TOKEN)) spans.push([from + m.index, from + m.index + m[0].length]);
    }
  }
  if (MAY_HOLD_PASSWORD.test(sql)) passwordSpans(tokens, spans);
  return merged(spans);
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

const ROLE_OBJECTS = new Set(['role', 'user', 'group', 'server']);
/** Functions whose argument is a connection string: which argument, given how many there are. */
const CONNINFO_ARGUMENT: Record<string, (args: number) => number> = {
  dblink_connect: (n) => n - 1, // (conninfo) or (name, conninfo)
  dblink_connect_u: (n) => n - 1,
  dblink: (n) => (n >= 2 ? 0 : -1), // (conninfo or name, sql); alone, the argument is SQL
  dblink_exec: (n) => (n >= 2 ? 0 : -1),
};

/** Adds to `spans` the passwords of role statements and connection strings among `tokens`. */
function passwordSpans(tokens: readonly Token[], spans: Span[]): void {
  let words: string[] = [];
  // Open parentheses: the function each one calls (if any) and the tokens of each argument so far.
  const calls: Array<{ fn: string | undefined; args: Token[][] }> = [];
  const conninfo = (t: Literal): void => {
    for (const [from, to] of conninfoPasswords(t.content)) {
      spans.push([t.at[from]!, to < t.at.length ? t.at[to]! : (t.pieces[t.pieces.length - 1] as Span)[1]]);
    }
  };
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const prev = tokens[i - 1];
    const call = calls[calls.length - 1];
    if (t.kind === 'punct' && t.char === '(') {
      calls.push({ fn: prev?.kind === 'word' && !prev.quoted ? prev.text : undefined, args: [[]] });
      continue;
    }
    if (t.kind === 'punct' && t.char === ')' && call !== undefined) {
      calls.pop();
      const which = call.fn === undefined ? undefined : CONNINFO_ARGUMENT[call.fn];
      const arg = which === undefined ? undefined : call.args[which(call.args.length)];
      if (arg !== undefined && arg.length === 1 && arg[0]!.kind === 'literal') conninfo(arg[0]!);
      calls[calls.length - 1]?.args.at(-1)?.push(t);
      continue;
    }
    if (t.kind === 'punct' && t.char === ',' && call !== undefined) {
      call.args.push([]);
      continue;
    }
    call?.args.at(-1)!.push(t);
    if (t.kind === 'punct' && t.char === ';' && calls.length === 0) {
      words = [];
      continue;
    }
    if (t.kind === 'word') {
      if (words.length < 2) words.push(t.quoted ? `"${t.text}` : t.text);
      continue;
    }
    if (t.kind !== 'literal') continue;
    const creating = words[0] === 'create' || words[0] === 'alter';
    const after = (w: string): boolean => prev?.kind === 'word' && prev.text === w; // unquoted words are lowercased
    if (creating && ROLE_OBJECTS.has(words[1] ?? '') && after('password')) {
      for (const p of t.pieces) spans.push([p[0], p[1]]);
    } else if (creating && words[1] === 'subscription' && after('connection')) {
      conninfo(t);
    } else if (words[0] === 'alter' && words[1] === 'system') {
      const before = tokens[i - 2];
      const assigned = (prev?.kind === 'punct' && prev.char === '=') || after('to');
      if (assigned && before?.kind === 'word' && before.text === 'primary_conninfo') conninfo(t);
    }
  }
}

const isSpace = (c: number): boolean => c === 32 || (c >= 9 && c <= 13);
const isIdentStart = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c >= 0x80;
const isIdentChar = (c: number): boolean => isIdentStart(c) || (c >= 48 && c <= 57) || c === 36;
const QUOTE = 39;

/**
 * PostgreSQL's lexing of a text without backslashes, reduced to what the masks need: words,
 * literals, single punctuation characters; and the inert regions (literal and comment contents).
 */
function lex(sql: string): { tokens: Token[]; inert: Span[] } {
  const tokens: Token[] = [];
  const inert: Span[] = [];
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
      inert.push([i + 2, end]);
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
      inert.push([i + 2, nest === 0 ? j - 2 : n]);
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
        let k = j + 1;
        let newline = false;
        for (;;) {
          const d = sql.charCodeAt(k);
          if (d === 10 || d === 13) { newline = true; k++; } else if (isSpace(d)) k++;
          else if (d === 45 && sql.charCodeAt(k + 1) === 45) k = lineEnd(k + 2);
          else break;
        }
        if (!newline || sql.charCodeAt(k) !== QUOTE) { j++; break; }
        j = k + 1;
      }
      const first = lit.pieces[0]!;
      inert.push([first[0], lit.pieces[lit.pieces.length - 1]![1]]);
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
        inert.push([start, stop]);
        i = end < 0 ? n : end + tag.length;
        continue;
      }
      i++;
      while (i < n && sql.charCodeAt(i) >= 48 && sql.charCodeAt(i) <= 57) i++;
      tokens.push({ kind: 'punct', char: '$' });
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
      // A number (digits, a point, an exponent): its letters are not a word.
      let j = i + 1;
      while (j < n && (isIdentChar(sql.charCodeAt(j)) || sql.charCodeAt(j) === 46)) j++;
      tokens.push({ kind: 'punct', char: '0' });
      i = j;
      continue;
    }
    tokens.push({ kind: 'punct', char: sql[i]! });
    i++;
  }
  return { tokens, inert };
}

/** Characters a masked connection-string value may hold: none that could carry code. */
const SAFE_VALUE = /^[^\s'"$();*/\\]+$/;

/**
 * In a literal that is a whole libpq connection string, the [from, to) of its `password` and
 * `sslpassword` values (key=value form, values bare or single-quoted), or of those URI parameters
 * (`postgresql://…?password=…`; the URI's own `user:password@` is a URL password).
 */
function conninfoPasswords(s: string): Span[] {
  const found: Span[] = [];
  if (/^\s*postgres(?:ql)?:\/\//i.test(s)) {
    for (const m of s.matchAll(/[?&](?:ssl)?password=([^&#]*)/gi)) {
      const from = m.index + m[0].length - m[1]!.length;
      if (SAFE_VALUE.test(m[1]!)) found.push([from, from + m[1]!.length]);
    }
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
    if ((key === 'password' || key === 'sslpassword') && SAFE_VALUE.test(s.slice(from, to))) found.push([from, to]);
    skipSpace();
  }
  return found;
}
