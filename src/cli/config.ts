import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { CliError } from './io.js';

/** What `hallpass login` saves: where the server is and the API token to present to it. */
export interface ClientConfig {
  readonly server: string;
  readonly token: string;
  readonly user: string;
}

type Env = Readonly<Record<string, string | undefined>>;

/** `$XDG_CONFIG_HOME/hallpass/config.json`, else `~/.config/hallpass/config.json`. */
export function clientConfigPath(env: Env = process.env): string {
  const base = env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME.startsWith('/')
    ? env.XDG_CONFIG_HOME
    : join(env.HOME || homedir(), '.config');
  return join(base, 'hallpass', 'config.json');
}

/** The saved config, or undefined when there is none. A file that is not ours is an error, not silence. */
export function readClientConfig(env: Env = process.env): ClientConfig | undefined {
  const path = clientConfigPath(env);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError(`cannot read ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CliError(`${path} is not valid JSON; remove it or run \`hallpass login\` again`);
  }
  const o = parsed as Partial<Record<keyof ClientConfig, unknown>>;
  if (typeof o !== 'object' || o === null || typeof o.server !== 'string' || typeof o.token !== 'string') {
    throw new CliError(`${path} lacks "server" and "token"; run \`hallpass login\` again`);
  }
  return { server: o.server, token: o.token, user: typeof o.user === 'string' ? o.user : '' };
}

/** Saves the config readable by its owner only (file 0600, directory 0700), replacing it atomically. */
export function writeClientConfig(config: ClientConfig, env: Env = process.env): string {
  const path = clientConfigPath(env);
  writePrivateFile(path, JSON.stringify({ server: config.server, token: config.token, user: config.user }, null, 2) + '\n');
  return path;
}

/** Writes a file only its owner can read (0600, directory 0700), replacing it atomically. */
export function writePrivateFile(path: string, body: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, body, { mode: 0o600 });
  chmodSync(tmp, 0o600); // the mode above is filtered by the umask; make it exact
  renameSync(tmp, path);
}

/** Forgets the saved token (logout). Returns whether there was one. */
export function clearClientConfig(env: Env = process.env): boolean {
  const path = clientConfigPath(env);
  try {
    rmSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new CliError(`cannot remove ${path}: ${(err as Error).message}`);
  }
}
