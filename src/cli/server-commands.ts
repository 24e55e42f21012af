import type { Command } from 'commander';
import { runDemo } from '../server/demo.js';
import { runServer } from '../server/run.js';
import { DEFAULT_API_PORT, DEFAULT_GATEWAY_PORT } from '../server/config.js';
import { usageError } from './io.js';

function port(text: string): number {
  const n = Number(text);
  if (!/^[0-9]{1,5}$/.test(text) || n > 65535) throw usageError(`port must be 0-65535 (got ${JSON.stringify(text)})`);
  return n;
}

/** `hallpass server` and `hallpass demo`: the commands that run hallpass itself. */
export function registerServerCommands(program: Command): void {
  program
    .command('server')
    .description('run the hallpass server (API, scheduler, reconciler, gateway)')
    .option('--config <file>', 'server config file (YAML)')
    .option('--data <dir>', 'data directory (state store, master key, TLS files)')
    .option('--policy <file>', 'policy file (default: <data>/policy.yaml)')
    .option('--listen <host:port>', 'API address (default 127.0.0.1:8470)')
    .action(async (opts: { config?: string; data?: string; policy?: string; listen?: string }) => {
      await runServer(opts);
    });

  program
    .command('demo')
    .description('run hallpass with an embedded demo PostgreSQL, a sample policy and demo users, and print a tour')
    .option('--port <port>', 'API port', String(DEFAULT_API_PORT))
    .option('--gateway-port <port>', 'PostgreSQL gateway port', String(DEFAULT_GATEWAY_PORT))
    .option('--keep', 'keep the demo data directory on exit')
    .action(async (opts: { port: string; gatewayPort: string; keep?: boolean }) => {
      await runDemo({ apiPort: port(opts.port), gatewayPort: port(opts.gatewayPort), keep: opts.keep === true });
    });
}
