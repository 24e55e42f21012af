/**
 * Settings a client may pass at startup (as parameters, or as `-c name=value` in `options`).
 * Anything else in `options` (which can set any setting, e.g. a role or read-only switch) is dropped.
 */
const FORWARDED_SETTINGS = new Set([
  'application_name', 'client_encoding', 'DateStyle', 'TimeZone', 'IntervalStyle', 'extra_float_digits',
  'search_path', 'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'work_mem',
]);

/** The allowed settings from a startup message, `options` included. */
export function forwardedSettings(startup: ReadonlyMap<string, string>): Map<string, string> {
  const out = new Map<string, string>();
  const options = startup.get('options');
  if (options !== undefined) {
    // PostgreSQL's syntax: whitespace-separated, a backslash escapes the next character.
    const words = (options.match(/(?:\\.|[^\s\\])+/g) ?? []).map((w) => w.replace(/\\(.)/g, '$1'));
    for (let i = 0; i < words.length; i++) {
      const w = words[i] ?? '';
      const setting = w === '-c' ? words[++i] : w.startsWith('-c') ? w.slice(2) : w.startsWith('--') ? w.slice(2) : undefined;
      const eq = setting?.indexOf('=') ?? -1;
      if (setting === undefined || eq <= 0) continue;
      const name = setting.slice(0, eq).replace(/-/g, '_');
      if (FORWARDED_SETTINGS.has(name)) out.set(name, setting.slice(eq + 1));
    }
  }
  for (const [k, v] of startup) if (FORWARDED_SETTINGS.has(k)) out.set(k, v);
  return out;
}
