/**
 * Passwords written into SQL text, masked for the audit log: `ALTER ROLE ann PASSWORD 'x'` (and
 * psql's `\password`, which sends a SCRAM verifier the same way), `CREATE USER MAPPING ... OPTIONS
 * (password 'x')`, and the password of a connection string given as a literal
 * (`dblink_connect('host=db password=x')`, `CREATE SUBSCRIPTION ... CONNECTION '... password=x'`).
 *
 * Statement text is the point of the gateway's audit, so a mask must never hide SQL that runs.
 * The text is therefore lexed the way PostgreSQL lexes it (comments nested, quoted identifiers,
 * `E''` escapes, dollar quotes), and only the inside of a string literal is ever replaced:
 * - after the word `password`, in a statement that starts `CREATE|ALTER ROLE|USER|GROUP|SERVER`
 *   (so also `USER MAPPING`): such statements hold no literal that is run as SQL;
 * - a literal that is a whole connection string (`key=value` pairs and nothing else, which no SQL
 *   statement is): the value of its `password` key.
 * Lexing assumes `standard_conforming_strings = on` (the gateway refuses a guarded session where it
 * is off). Where that matters, in a plain literal holding a backslash, nothing in the statement is
 * masked: its literals' bounds would depend on the setting.
 */

const MAY_HOLD_PASSWORD = /passw/i;

/** `sql` with the passwords it writes replaced by `mask`; `sql` itself when it writes none. */
export function maskSqlPasswords(sql: string, mask: string): string {
  if (!MAY_HOLD_PASSWORD.test(sql)) return sql;
  const spans = sqlPasswordSpans(sql);
  if (spans.length === 0) return sql;
  let out = '';
  let at = 0;
  for (const [from, to] of spans) {
    out += sql.slice(at, from) + mask;
    at = to;
  }
  return out + sql.slice(at);
}

const isSpace = (c: string): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
const isIdentStart = (c: string): boolean => /[A-Za-z_]/.test(c) || c.charCodeAt(0) >= 0x80;
const isIdentChar = (c: string): boolean => /[A-Za-z0-9_$]/.test(c) || c.charCodeAt(0) >= 0x80;
const ROLE_STATEMENT_OBJECTS = new Set(['role', 'user', 'group', 'server']);

/**
 * The [from, to) ranges (UTF-16 offsets) of literal content to mask, in order; none when the
 * statement's lexing would depend on standard_conforming_strings.
 */
export function sqlPasswordSpans(sql: string): Array<[number, number]> {
  return passwordSpans(sql) ?? [];
}

function passwordSpans(sql: string): Array<[number, number]> | undefined {
  const spans: Array<[number, number]> = [];
  const n = sql.length;
  // The current statement's first two words, and whether the last token was the word "password".
  let words: string[] = [];
  let afterPassword = false;
  let depth = 0;
  let i = 0;
  /** A literal whose raw text is [contentFrom, contentTo) and whose decoded text is `content`, its
   *  i-th character written at raw offset `at[i]` (no `at`: written one for one). */
  const literal = (contentFrom: number, contentTo: number, content: string, at?: number[]): void => {
    const roleStatement = (words[0] === 'create' || words[0] === 'alter') && ROLE_STATEMENT_OBJECTS.has(words[1] ?? '');
    if (afterPassword && roleStatement) {
      if (contentTo > contentFrom) spans.push([contentFrom, contentTo]);
    } else {
      const value = conninfoPassword(content);
      if (value !== undefined) {
        const raw = (k: number): number => (at === undefined ? contentFrom + k : k < at.length ? at[k]! : contentTo);
        spans.push([raw(value[0]), raw(value[1])]);
      }
    }
    afterPassword = false;
  };
  while (i < n) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (isSpace(c)) { i++; continue; }
    if (c === '-' && next === '-') {
      while (i < n && sql[i] !== '\n' && sql[i] !== '\r') i++;
      continue;
    }
    if (c === '/' && next === '*') {
      let nest = 1;
      i += 2;
      while (i < n && nest > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') { nest++; i += 2; } else if (sql[i] === '*' && sql[i + 1] === '/') { nest--; i += 2; } else i++;
      }
      continue;
    }
    // E'...' (backslash escapes) — the prefix letter must start a token.
    if ((c === 'e' || c === 'E') && next === "'") {
      const start = i + 2;
      let j = start;
      let content = '';
      const at: number[] = [];
      while (j < n) {
        const d = sql[j]!;
        at.push(j);
        if (d === '\\' && j + 1 < n) { content += sql[j + 1]; j += 2; continue; }
        if (d === "'") {
          if (sql[j + 1] === "'") { content += "'"; j += 2; continue; }
          at.pop();
          break;
        }
        content += d;
        j++;
      }
      literal(start, j, content, at);
      i = j + 1;
      continue;
    }
    if (c === "'" || ((c === 'n' || c === 'N' || c === 'b' || c === 'B' || c === 'x' || c === 'X') && next === "'") || ((c === 'u' || c === 'U') && next === '&' && sql[i + 2] === "'")) {
      const start = c === "'" ? i + 1 : next === "'" ? i + 2 : i + 3;
      let j = start;
      let content = '';
      const at: number[] = [];
      while (j < n) {
        const d = sql[j]!;
        if (d === '\\') return undefined;
        at.push(j);
        if (d === "'") {
          if (sql[j + 1] === "'") { content += "'"; j += 2; continue; }
          at.pop();
          break;
        }
        content += d;
        j++;
      }
      literal(start, j, content, at);
      i = j + 1;
      continue;
    }
    if (c === '"') {
      let j = i + 1;
      let ident = '';
      while (j < n) {
        if (sql[j] === '"') {
          if (sql[j + 1] === '"') { ident += '"'; j += 2; continue; }
          break;
        }
        ident += sql[j];
        j++;
      }
      word(ident, true);
      i = j + 1;
      continue;
    }
    if (c === '$') {
      // A dollar quote ($$ or $tag$), or a parameter ($1), or a lone $.
      let j = i + 1;
      if (j < n && isIdentStart(sql[j]!)) {
        j++;
        while (j < n && isIdentChar(sql[j]!) && sql[j] !== '$') j++;
      }
      if (sql[j] === '$') {
        const tag = sql.slice(i, j + 1);
        const start = j + 1;
        const end = sql.indexOf(tag, start);
        const stop = end < 0 ? n : end;
        literal(start, stop, sql.slice(start, stop));
        i = end < 0 ? n : end + tag.length;
        continue;
      }
      i++;
      while (i < n && /[0-9]/.test(sql[i]!)) i++;
      afterPassword = false;
      continue;
    }
    if (isIdentStart(c)) {
      let j = i + 1;
      while (j < n && isIdentChar(sql[j]!)) j++;
      word(sql.slice(i, j).toLowerCase(), false);
      i = j;
      continue;
    }
    if (c === '(' || c === '[') depth++;
    else if ((c === ')' || c === ']') && depth > 0) depth--;
    else if (c === ';' && depth === 0) words = [];
    afterPassword = false;
    i++;
  }
  return spans;

  function word(w: string, quoted: boolean): void {
    if (words.length < 2) words.push(quoted ? `"${w}` : w);
    afterPassword = w.toLowerCase() === 'password' && (!quoted || w === 'password');
  }
}

/**
 * In a literal that is a whole libpq connection string, the [from, to) of its password's value;
 * undefined otherwise. Values are bare (`password=x`) or single-quoted with backslash escapes.
 */
function conninfoPassword(s: string): [number, number] | undefined {
  if (!MAY_HOLD_PASSWORD.test(s)) return undefined;
  let found: [number, number] | undefined;
  let i = 0;
  const n = s.length;
  const skipSpace = (): void => { while (i < n && isSpace(s[i]!)) i++; };
  skipSpace();
  if (i === n) return undefined;
  while (i < n) {
    const keyStart = i;
    while (i < n && /[A-Za-z0-9_]/.test(s[i]!)) i++;
    if (i === keyStart) return undefined;
    const key = s.slice(keyStart, i);
    skipSpace();
    if (s[i] !== '=') return undefined;
    i++;
    skipSpace();
    let from: number;
    let to: number;
    if (s[i] === "'") {
      from = i + 1;
      i++;
      while (i < n && s[i] !== "'") i += s[i] === '\\' ? 2 : 1;
      if (i >= n) return undefined;
      to = i;
      i++;
    } else {
      from = i;
      while (i < n && !isSpace(s[i]!)) i++;
      to = i;
    }
    if (key.toLowerCase() === 'password' && to > from) found = [from, to];
    if (i < n && !isSpace(s[i]!)) return undefined;
    skipSpace();
  }
  return found;
}
