/**
 * One sample's value from a Prometheus text exposition, or undefined when there is no such
 * sample. `labels` must be a substring of the sample's label set, e.g. 'resource="app-db"'.
 */
export function metricValue(text: string, name: string, labels?: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    if (labels !== undefined && !(m[2] ?? '').includes(labels)) continue;
    return Number(m[3]);
  }
  return undefined;
}
