/**
 * Runs the benchmarks one after another, each in its own process (each starts its own targets and
 * measures on a quiet machine), streaming their output; exits non-zero if any of them failed.
 *
 *   npm run bench                   # time-to-access, expiry-lag, audit, policy
 *   npm run bench -- --gateway      # and the gateway benchmark (installs PgBouncer; or BENCH_GATEWAY=1)
 *   npm run bench -- --quick        # small N for each, to check that they all run
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';

interface Bench {
  readonly file: string;
  /** Arguments for --quick (a smoke run), for the benches that take a size. */
  readonly quick: readonly string[];
}

const BENCHES: readonly Bench[] = [
  { file: 'time-to-access.ts', quick: ['10'] },
  { file: 'expiry-lag.ts', quick: ['20'] },
  { file: 'audit.ts', quick: ['5000'] },
  { file: 'policy.ts', quick: [] },
];
const GATEWAY: Bench = { file: 'gateway/run.ts', quick: [] };

function runOne(bench: Bench, quick: boolean): Promise<number> {
  const args = ['--import', 'tsx', join(import.meta.dirname, bench.file), ...(quick ? bench.quick : [])];
  process.stdout.write(`\n=== bench/${bench.file}${quick && bench.quick.length ? ` ${bench.quick.join(' ')}` : ''} ===\n`);
  const child = spawn(process.execPath, args, { stdio: 'inherit' });
  return new Promise((resolve) => {
    child.once('error', (err) => {
      process.stderr.write(`bench/${bench.file}: ${err.message}\n`);
      resolve(1);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const unknown = argv.filter((a) => a !== '--gateway' && a !== '--quick');
  if (unknown.length > 0) {
    process.stderr.write(`unknown argument(s): ${unknown.join(' ')}\nusage: bench/run.ts [--gateway] [--quick]\n`);
    return 2;
  }
  const quick = argv.includes('--quick');
  const gateway = argv.includes('--gateway') || process.env.BENCH_GATEWAY === '1';
  const results: { file: string; code: number }[] = [];
  for (const bench of gateway ? [...BENCHES, GATEWAY] : BENCHES) {
    results.push({ file: bench.file, code: await runOne(bench, quick) });
  }
  process.stdout.write('\n=== summary ===\n');
  for (const r of results) process.stdout.write(`${r.code === 0 ? 'ok    ' : `FAILED (exit ${r.code})`} bench/${r.file}\n`);
  if (!gateway) process.stdout.write('(gateway benchmark skipped: pass --gateway or BENCH_GATEWAY=1; it installs PgBouncer)\n');
  return results.some((r) => r.code !== 0) ? 1 : 0;
}

process.exitCode = await main();
