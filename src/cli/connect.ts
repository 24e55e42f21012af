import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { Command } from 'commander';
import { fetchPreferGateway } from './credentials.js';
import { CliError } from './io.js';
import { cliContext } from './program.js';
import type { Credentials, Grant } from './views.js';

/** The interactive client for each kind of target; the credentials travel in its environment. */
const CLIENTS: Record<string, { bin: string; install: string }> = {
  postgres: { bin: 'psql', install: 'install the PostgreSQL client (e.g. `apt install postgresql-client` or `brew install libpq`)' },
};

/** Picks the caller's active grant on a resource; several roles need --role. */
export function pickGrant(grants: readonly Grant[], resource: string, role: string | undefined): Grant {
  const live = grants.filter((g) => g.resource === resource && g.status === 'active' && (role === undefined || g.role === role));
  const roles = [...new Set(live.map((g) => g.role))];
  if (live.length === 0) {
    const wanted = role ? `${resource} at role ${role}` : resource;
    throw new CliError(`you have no active grant on ${wanted}: ask for one with \`hallpass request ${resource} --role ROLE --reason TEXT\``);
  }
  if (roles.length > 1) throw new CliError(`you hold several roles on ${resource} (${roles.join(', ')}): choose one with --role`);
  // Several grants of one role (e.g. an extension overlapping): the one that lasts longest.
  return [...live].sort((a, b) => (b.expiresAt ?? '').localeCompare(a.expiresAt ?? ''))[0]!;
}

export function connectCommand(program: Command): void {
  program.command('connect')
    .description('open psql on a resource with your active grant (through the gateway when the server runs one)')
    .argument('<resource>', 'resource name')
    .argument('[args...]', 'extra arguments for the client, after --')
    .option('--role <role>', 'which grant, when you hold several roles on the resource')
    .action(async (resource: string, args: string[], o: { role?: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const client = ctx.client();
      const { grants } = await client.get<{ grants: Grant[] }>('/api/v1/grants', { active: true });
      const grant = pickGrant(grants, resource, o.role);
      const creds = await fetchPreferGateway(client, grant.id, ctx.io.env);
      const tool = CLIENTS[creds.kind];
      if (!tool) throw new CliError(`hallpass connect does not support ${creds.kind} resources yet: use \`hallpass creds ${grant.id}\``);
      ctx.err(`connecting to ${resource} as ${creds.user}${creds.viaGateway ? ' through the hallpass gateway' : ''}; access ends at ${creds.expiresAt}\n`);
      ctx.setExitCode(await run(tool.bin, tool.install, args, childEnv(ctx.io.env, creds)));
    });
}

/**
 * The caller's environment with the target's variables (PGPASSWORD...): never on the command line.
 * The caller's own PG* settings (PGSERVICE, PGSSLMODE, PGPASSFILE...) are dropped so they cannot
 * redirect or override the grant's connection, and HALLPASS_* (the token) is not handed to psql.
 */
function childEnv(base: Readonly<Record<string, string | undefined>>, creds: Credentials): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined && !k.startsWith('HALLPASS_') && !k.startsWith('PG')) env[k] = v;
  return { ...env, ...creds.env };
}

function run(bin: string, install: string, args: readonly string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    // Ctrl-C belongs to the client (psql cancels its query); hallpass must not die under it.
    const ignore = () => {};
    process.on('SIGINT', ignore);
    const child = spawn(bin, [...args], { env, stdio: 'inherit' });
    child.once('close', () => process.off('SIGINT', ignore));
    child.once('error', (err: NodeJS.ErrnoException) => {
      process.off('SIGINT', ignore);
      reject(err.code === 'ENOENT' ? new CliError(`${bin} is not installed (not found on PATH): ${install}`) : new CliError(`cannot start ${bin}: ${err.message}`));
    });
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0)));
  });
}
