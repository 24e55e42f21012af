import type { Command } from 'commander';
import { runDemo } from '../server/demo.js';
import { runServer } from '../server/run.js';

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
    .option('--port <port>', 'API port', '8470')
    .option('--keep', 'keep the demo data directory on exit')
    .action(async (opts: { port: string; keep?: boolean }) => {
      await runDemo({ apiPort: Number(opts.port), keep: opts.keep === true });
    });
}
