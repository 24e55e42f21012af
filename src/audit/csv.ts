/** Characters that make a spreadsheet treat a cell as a formula (plus tab and CR, per OWASP). */
const FORMULA_START = /^[=+\-@\t\r]/;
/** C0 and C1 controls but tab, CR and LF (which RFC 4180 quoting carries), and DEL. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/g;

/**
 * One CSV field per RFC 4180: quoted when it holds a comma, quote, CR or LF, with quotes doubled.
 * A text cell that a spreadsheet would run as a formula gets a leading apostrophe.
 */
export function csvField(value: string | number | null): string {
  if (value === null) return '';
  if (typeof value === 'number') return String(value);
  // Control characters (an ESC sequence in a claimed user name) are written as \uXXXX text: an
  // export printed to a terminal must not drive it (review 2026-12-02). JSONL keeps them exactly.
  const text = value.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const safe = FORMULA_START.test(text) ? `'${text}` : text;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** One CSV record, CRLF-terminated as RFC 4180 says. */
export function csvRecord(fields: ReadonlyArray<string | number | null>): string {
  return `${fields.map(csvField).join(',')}\r\n`;
}
