/** One problem in a policy file, pointing at the line a person must edit. */
export interface PolicyError {
  readonly file: string;
  /** 1-based line. */
  readonly line: number;
  /** Field path such as `rules[2].duration.max`; empty for the document itself. */
  readonly path: string;
  readonly message: string;
}

export type PathSegment = string | number;
export type Path = readonly PathSegment[];

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `['rules', 2, 'duration', 'max']` -> `rules[2].duration.max`; odd keys are JSON-quoted. */
export function formatPath(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENT.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** `policy.yaml:14: rules[2].duration.max: "90x" is not a duration` */
export function formatPolicyError(e: PolicyError): string {
  return e.path === '' ? `${e.file}:${e.line}: ${e.message}` : `${e.file}:${e.line}: ${e.path}: ${e.message}`;
}
