import { Alias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Document, Node } from 'yaml';
import type { Path } from './errors.js';

/** Policy files are small; anything bigger is a mistake or an attack. */
export const MAX_POLICY_BYTES = 1024 * 1024;
/** Bounds alias expansion ("billion laughs"); plenty for reusing a few lists. */
export const MAX_ALIAS_COUNT = 100;

export interface SourceProblem {
  readonly line: number;
  readonly message: string;
}

export type ParsedSource =
  | { readonly ok: true; readonly data: unknown; readonly lines: LineMap }
  | { readonly ok: false; readonly problems: readonly SourceProblem[] };

/** Parses YAML text into plain data, keeping a map from field paths back to lines. */
export function parseSource(text: string): ParsedSource {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_POLICY_BYTES) {
    return { ok: false, problems: [{ line: 1, message: `file is ${bytes} bytes; the limit is ${MAX_POLICY_BYTES}` }] };
  }
  const counter = new LineCounter();
  let doc: Document;
  try {
    doc = parseDocument(text, { lineCounter: counter, uniqueKeys: true, prettyErrors: false, strict: true });
  } catch (err) {
    // The parser reports its own failures as errors; this is for anything it lets escape.
    return { ok: false, problems: [{ line: 1, message: `invalid YAML: ${err instanceof Error ? err.message : String(err)}` }] };
  }
  const line = (offset: number) => counter.linePos(offset).line;
  const problems: SourceProblem[] = [...doc.errors, ...doc.warnings].map((e) => ({
    line: line(e.pos[0]),
    message: `invalid YAML: ${e.message.split('\n')[0] ?? e.code}`,
  }));
  if (problems.length > 0) return { ok: false, problems };
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return { ok: false, problems: [{ line: 1, message: `refused: ${message} (at most ${MAX_ALIAS_COUNT} aliases)` }] };
  }
  return { ok: true, data, lines: new LineMap(doc, line) };
}

/** Finds the line of the node at a field path, or of its nearest existing ancestor. */
export class LineMap {
  constructor(
    private readonly doc: Document,
    private readonly lineAt: (offset: number) => number,
  ) {}

  /** Line of the value at `path`; with `key`, the line of the last segment's key instead. */
  lineOf(path: Path, key = false): number {
    let node: unknown = this.doc.contents;
    let line = this.startLine(node) ?? 1;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i];
      node = this.resolve(node);
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
        if (!pair) return line;
        const keyLine = this.startLine(pair.key);
        if (keyLine !== undefined) line = keyLine;
        if (key && i === path.length - 1) return line;
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        node = node.items[seg];
      } else {
        return line;
      }
      const valueLine = this.startLine(node);
      if (valueLine === undefined) return line;
      line = valueLine;
    }
    return line;
  }

  private resolve(node: unknown): unknown {
    return node instanceof Alias ? node.resolve(this.doc) : node;
  }

  private startLine(node: unknown): number | undefined {
    const range = (node as Node | null | undefined)?.range;
    return range ? this.lineAt(range[0]) : undefined;
  }
}
