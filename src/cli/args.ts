import { InvalidArgumentError } from 'commander';
import { parseCheckpoint } from '../audit/checkpoint.js';
import { parseDuration } from '../domain/duration.js';

/** Option/argument parsers: bad input is a usage error (exit 2) before any call to the server. */

/** "30m", "1h30m", "2d" -> kept as text after checking it parses (the API takes the text). */
export function durationArg(text: string): string {
  if (parseDuration(text) === undefined) throw new InvalidArgumentError('not a duration (use e.g. 30m, 1h, 1h30m, 2d)');
  return text.trim();
}

const idArg = (prefix: string, what: string) => (text: string): string => {
  if (!new RegExp(`^${prefix}_[0-9a-z]{16}$`).test(text)) throw new InvalidArgumentError(`not a ${what} id (${prefix}_ followed by 16 characters)`);
  return text;
};
export const requestIdArg = idArg('req', 'request');
export const grantIdArg = idArg('grt', 'grant');
export const reviewIdArg = idArg('rev', 'review');

/** An audit checkpoint as `audit verify` prints it: SEQ:HASH. */
export function checkpointArg(text: string): string {
  if (parseCheckpoint(text) === undefined) throw new InvalidArgumentError('not a checkpoint (use SEQ:HASH as audit verify prints it)');
  return text;
}

/** An ISO time, or "+10m" meaning that long from now. */
export function futureTimeArg(now: () => number) {
  return (text: string): string => {
    if (text.startsWith('+')) {
      const s = parseDuration(text.slice(1));
      if (s === undefined) throw new InvalidArgumentError('not a time (use an ISO time such as 2026-01-31T09:00:00Z, or +10m)');
      return new Date(now() + s * 1000).toISOString();
    }
    return isoArg(text);
  };
}

/** An ISO time, or a duration ("1h", "-1h") meaning that long ago. */
export function pastTimeArg(now: () => number) {
  return (text: string): string => {
    const s = parseDuration(text.replace(/^-/, ''));
    if (s !== undefined) return new Date(now() - s * 1000).toISOString();
    return isoArg(text);
  };
}

function isoArg(text: string): string {
  // Require a date; Date.parse alone accepts too much ("1", "March").
  const ms = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(ms)) throw new InvalidArgumentError('not a time (use an ISO time such as 2026-01-31T09:00:00Z, or a duration such as 1h)');
  return new Date(ms).toISOString();
}

export function positiveIntArg(max: number) {
  return (text: string): number => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`not a whole number from 1 to ${max}`);
    return n;
  };
}

/** Free text for reasons, comments and notes: the API refuses control characters; say so first. */
export function textArg(text: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(text)) throw new InvalidArgumentError('must be one line without control characters');
  if (text.trim() === '') throw new InvalidArgumentError('must not be empty');
  return text;
}

/** An audit event type, or a prefix ending in * (grant.*). */
export function auditTypeArg(text: string): string {
  if (!/^[a-z_.*]{1,64}$/.test(text)) throw new InvalidArgumentError('not an event type (e.g. grant.revoked, or grant.* for a family)');
  return text;
}
