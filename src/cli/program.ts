import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { auditCommands } from './audit.js';
import { readClientConfig } from './config.js';
import { connectCommand } from './connect.js';
import { grantCommands } from './grants.js';
import { HallpassClient, normaliseServerUrl } from './http.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE, type CliIo } from './io.js';
import { miscCommands } from './misc.js';
import { requestCommands } from './requests.js';
import { renewSavedLogin } from './saved-login.js';

export const DEFAULT_SERVER = 'http://127.0.0.1:8470';

/** What every command action needs: output, the API client, the clock, a way to set the exit code. */
export interface CliContext {
  readonly io: CliIo;
  /** The API client for --server / HALLPASS_SERVER / saved config, with --token / HALLPASS_TOKEN / saved token. */
  client(): HallpassClient;
  /** The server URL the client would use (no network). */
  serverUrl(): string;
  now(): number;
  out(text: string): void;
  err(text: string): void;
  /** Exit with this code once the action returns (e.g. a child's exit code); failures should throw CliError. */
  setExitCode(code: number): void;
}

interface RunState {
  readonly io: CliIo;
  exitCode: number;
}

const states = new WeakMap<Command, RunState>();

function rootOf(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

/** The context of the program a command belongs to. Other command files (login, server) use it too. */
export function cliContext(cmd: Command): CliContext {
  const root = rootOf(cmd);
  const state = states.get(root);
  if (!state) throw new Error('cliContext: this command was not built by buildProgram()');
  const { io } = state;
  const opts = root.opts<{ server?: string; token?: string }>();
  const serverUrl = () => {
    const explicit = opts.server ?? io.env.HALLPASS_SERVER;
    if (explicit) return normaliseServerUrl(explicit);
    const saved = readClientConfig(io.env);
    return normaliseServerUrl(saved?.server ?? DEFAULT_SERVER);
  };
  return {
    io,
    serverUrl,
    client() {
      const server = serverUrl();
      const token = opts.token ?? io.env.HALLPASS_TOKEN;
      if (token) return new HallpassClient(server, token, io);
      // The saved token goes only to the server it was issued by, never to another --server;
      // when it has expired the client renews it with the saved refresh token.
      const saved = readClientConfig(io.env);
      if (!saved || normaliseServerUrl(saved.server) !== server) return new HallpassClient(server, undefined, io);
      return new HallpassClient(server, saved.token || undefined, io, async (stale) => (await renewSavedLogin(io, server, stale)).token);
    },
    now: () => (io.now ? io.now() : Date.now()),
    out: (t) => io.stdout(t),
    err: (t) => io.stderr(t),
    setExitCode(code) {
      state.exitCode = code;
    },
  };
}

export function cliVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}

/**
 * The `hallpass` program with the client commands. main.ts adds `server`/`demo` and
 * `login`/`logout` on top; tests build one per run with an in-memory CliIo.
 */
export function buildProgram(io: CliIo): Command {
  const program = new Command('hallpass');
  states.set(program, { io, exitCode: 0 });
  program
    .description('just-in-time, time-boxed, audited access to production systems')
    .version(cliVersion(), '-V, --version')
    .addOption(new Option('--server <url>', `hallpass server URL (env HALLPASS_SERVER, else the saved login, else ${DEFAULT_SERVER})`))
    .addOption(new Option('--token <token>', 'API token (env HALLPASS_TOKEN, else the saved login)'))
    .exitOverride()
    .showSuggestionAfterError()
    .configureOutput({
      writeOut: (s) => io.stdout(s),
      writeErr: (s) => io.stderr(s),
      outputError: (s, write) => write(`hallpass: ${s.replace(/^error: /, '')}`),
    });
  requestCommands(program);
  grantCommands(program);
  connectCommand(program);
  auditCommands(program);
  miscCommands(program);
  return program;
}

/** Runs the program on argv (without node and script); returns the exit code, never throws. */
export async function runCli(program: Command, args: readonly string[]): Promise<number> {
  const state = states.get(program);
  if (!state) throw new Error('runCli: the program was not built by buildProgram()');
  try {
    await program.parseAsync([...args], { from: 'user' });
    return state.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed its message (help, version, or a usage error).
      return err.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (err instanceof CliError) {
      state.io.stderr(`hallpass: ${err.message}\n`);
      return err.exitCode;
    }
    const e = err instanceof Error ? err : new Error(String(err));
    state.io.stderr(`hallpass: ${e.message}\n`);
    if (state.io.env.HALLPASS_DEBUG) state.io.stderr(`${e.stack ?? ''}\n`);
    return EXIT_FAILURE;
  }
}
