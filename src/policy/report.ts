import { parseDuration } from '../domain/duration.js';
import { formatPath } from './errors.js';
import type { Path, PolicyError } from './errors.js';
import { quote } from './names.js';
import type { LineMap } from './source.js';
import type { SchemaProblem } from './schema-errors.js';

/** Collects problems with their file, line and path while the loader walks the document. */
export class Reporter {
  readonly errors: PolicyError[] = [];

  constructor(
    readonly file: string,
    readonly lines: LineMap,
  ) {}

  at(path: Path, message: string, atKey = false): void {
    this.errors.push({ file: this.file, line: this.lines.lineOf(path, atKey), path: formatPath(path), message });
  }

  /** Reports a structural problem at the line that shows it best. */
  problem(p: SchemaProblem): void {
    const line =
      p.anchor === 'parent' && p.path.length > 1 ? this.lines.lineOf(p.path.slice(0, -1), true) : this.lines.lineOf(p.path, p.anchor === 'key');
    this.errors.push({ file: this.file, line, path: formatPath(p.path), message: p.message });
  }

  /** Reports `message` when it is defined (the shape of the names.ts checkers). */
  check(path: Path, message: string | undefined): boolean {
    if (message === undefined) return true;
    this.at(path, message);
    return false;
  }

  /** Parses a duration field, reporting it when it is not one. */
  duration(path: Path, text: string): number | undefined {
    const seconds = parseDuration(text);
    if (seconds === undefined) this.at(path, `${quote(text)} is not a duration (use 30m, 1h, 2d)`);
    return seconds;
  }

  /** Reports a second definition of a name, pointing back at the first. */
  unique(seen: Map<string, Path>, name: string, path: Path, what: string): boolean {
    const first = seen.get(name);
    if (first) {
      this.at(path, `duplicate ${what} ${quote(name)} (first defined on line ${this.lines.lineOf(first)})`);
      return false;
    }
    seen.set(name, path);
    return true;
  }
}
