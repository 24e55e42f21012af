/** Where a CLI run reads its environment and writes its output; injectable so tests run in-process. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Delay between polls of `request --wait` (default 1000 ms). */
  readonly pollIntervalMs?: number;
  /** Clock for relative times; defaults to Date.now. */
  now?(): number;
}

export function processIo(): CliIo {
  return {
    stdout: (t) => void process.stdout.write(t),
    stderr: (t) => void process.stderr.write(t),
    env: process.env,
  };
}

/** Exit codes: 1 a failure (the server said no, the chain is broken), 2 bad usage. */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** An expected failure: printed as `hallpass: message`, never with a stack trace. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: number = EXIT_FAILURE,
    /** The server's error code, when the failure came from the API. */
    readonly code?: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

export const usageError = (message: string) => new CliError(message, EXIT_USAGE);

/** A CliIo that keeps the output in memory (tests, and callers that embed the CLI). */
export function memoryIo(env: Record<string, string | undefined> = {}, opts: { pollIntervalMs?: number } = {}): CliIo & { out: string; err: string } {
  const io = {
    out: '',
    err: '',
    env,
    ...(opts.pollIntervalMs !== undefined ? { pollIntervalMs: opts.pollIntervalMs } : {}),
    stdout(t: string) {
      io.out += t;
    },
    stderr(t: string) {
      io.err += t;
    },
  };
  return io;
}
