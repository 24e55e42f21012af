/**
 * PostgreSQL gateway benchmark: pgbench -S side by side in one run through
 * - direct PostgreSQL;
 * - PgBouncer, its pool emptied before each run, so that it starts on fresh backends like every
 *   other target (`pgbouncer`), and a second PgBouncer whose pool stays warm from run to run
 *   (`pgbouncer-warm`, for reference: see the comment at emptyPool);
 * - a bare Node.js TLS relay (bare-relay.ts: the simplest proxy on Node's socket and TLS stack);
 * - a native relay inside this Node.js process (native-relay.ts: OpenSSL and libuv poll callbacks,
 *   no Node stream), alone, handing every read to JavaScript's Framer (`native-relay-js`), and
 *   also auditing each statement through the gateway's batcher and sink (`native-relay-audit`);
 * - the hallpass gateway, every statement audited into the state store through the server's own
 *   sink (highVolumeSink), and with an audit sink that drops events.
 * Usage (as root, to install PgBouncer from Debian's packages):
 *   node --import tsx bench/gateway/run.ts   # BENCH_SECONDS=5 BENCH_SCALE=10 BENCH_ROUNDS=3
 *                                            # BENCH_WARMUP_SECONDS=3 (per target and mode, at the most clients)
 *                                            # BENCH_MODES=simple,extended,extended -C
 *                                            # BENCH_CLIENTS=1,4,8 BENCH_TARGETS=direct,...
 *                                            # BENCH_AUDIT_DELAY_MS (the batcher's maxDelayMs, default 25)
 *                                            # BENCH_STORE_DIR: where the audited gateway's SQLite store goes
 *                                            #   (default the bench's temp dir; /dev/shm takes the disk out)
 *                                            # BENCH_HOLD=1: keep the targets up for profiling
 *
 * Each row is the median of BENCH_ROUNDS runs (target order rotated per round); the runs' TPS
 * are printed beside it, with the CPU time per transaction of the proxy (from /proc for
 * PgBouncer, process.cpuUsage() for the Node ones) and of the whole machine (/proc/stat), and the
 * whole machine's page faults per transaction (/proc/vmstat).
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { setAuditHeadKey } from '../../src/audit/head-seal.js';
import { setAuditSealKey } from '../../src/audit/seal.js';
import { highVolumeSink } from '../../src/audit/store-sink.js';
import { auditHeadKey, auditSealKey } from '../../src/secrets/derive.js';
import { AuditBatcher } from '../../src/audit/batcher.js';
import type { GatewayAuditEvent, GatewayAuditSink } from '../../src/gateway/authority.js';
import { openStore } from '../../src/store/db.js';
import { PostgresGateway } from '../../src/gateway/postgres/server.js';
import { TestAuthority } from '../../test/support/gateway-harness.js';
import { startBareRelay } from './bare-relay.js';
import { startNativeRelay } from './native-relay.js';
import { freePort, startPgTarget, type PgTarget } from '../../test/support/pg-target.js';

const run = promisify(execFile);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);
const SCALE = Number(process.env.BENCH_SCALE ?? 10);
const CLIENTS = (process.env.BENCH_CLIENTS ?? '1,4,8').split(',').map(Number);
const MODES = (process.env.BENCH_MODES ?? 'simple,extended,extended -C').split(',');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TARGETS = (process.env.BENCH_TARGETS ?? 'direct,pgbouncer,pgbouncer-warm,node-tls-relay,native-relay,native-relay-js,native-relay-audit,gateway,gateway-noaudit').split(',');

class DropSink implements GatewayAuditSink {
  async record(): Promise<void> {}
}

interface Result {
  target: string;
  mode: string;
  clients: number;
  tps: number;
  p50us: number;
  avgMs: number;
  /** CPU time of the proxy (this process for the gateway and its audit sink; PgBouncer's process) per transaction. */
  cpuUsPerTx: number;
  /** CPU time of the whole machine (pgbench, PostgreSQL, the proxy) per transaction. */
  machineUsPerTx: number;
  /** Page faults of the whole machine per transaction (/proc/vmstat). */
  faultsPerTx: number;
}

/**
 * Busy CPU time of the whole machine so far, in µs, from /proc/stat: user, nice, system, irq and
 * softirq (idle, iowait and steal are not this machine's work; guest time is inside user already).
 */
function machineBusyUs(): number {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const busy = [0, 1, 2, 5, 6].reduce((sum, i) => sum + (f[i] ?? 0), 0);
  return (busy * 1e6) / CLOCK_TICKS;
}

/** Page faults of the whole machine so far (a fresh PostgreSQL backend faults in every shared buffer page it touches). */
function machineFaults(): number {
  return Number(/^pgfault (\d+)$/m.exec(readFileSync('/proc/vmstat', 'utf8'))?.[1] ?? NaN);
}

/** CPU time (user + system) of process `pid` so far, in µs. */
function processCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1e6) / CLOCK_TICKS;
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);

function ensurePgBouncer(): string {
  const found = spawnSync('sh', ['-c', 'command -v pgbouncer || ls /usr/sbin/pgbouncer'], { encoding: 'utf8' }).stdout.trim().split('\n')[0];
  if (found) return found;
  console.log('installing pgbouncer from Debian packages ...');
  const r = spawnSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer'], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('could not install pgbouncer (run as root with apt-get available)');
  return '/usr/sbin/pgbouncer';
}

/** PgBouncer for clients logging in as `user`; it logs in to the target as `serverUser`. */
async function startPgBouncer(bin: string, dir: string, target: { port: number }, user: string, password: string, serverUser: string, cert: string, key: string) {
  const port = await freePort();
  writeFileSync(join(dir, 'cert.pem'), cert);
  writeFileSync(join(dir, 'key.pem'), key);
  writeFileSync(join(dir, 'userlist.txt'), `"${user}" "${password}"\n`);
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `app = host=127.0.0.1 port=${target.port} dbname=app user=${serverUser} password=${password}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = plain',
      `auth_file = ${join(dir, 'userlist.txt')}`,
      'pool_mode = session',
      'max_client_conn = 200',
      'default_pool_size = 20',
      'client_tls_sslmode = require',
      `client_tls_cert_file = ${join(dir, 'cert.pem')}`,
      `client_tls_key_file = ${join(dir, 'key.pem')}`,
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      'ignore_startup_parameters = extra_float_digits',
      '',
    ].join('\n'),
  );
  for (const f of readdirSync(dir)) chmodSync(join(dir, f), 0o644);
  chmodSync(dir, 0o777); // pgbouncer drops root for the postgres user and writes its log here
  const args = process.getuid?.() === 0 ? ['-u', 'postgres', join(dir, 'pgbouncer.ini')] : [join(dir, 'pgbouncer.ini')];
  const child: ChildProcess = spawn(bin, args, { stdio: 'ignore' });
  for (let i = 0; i < 50; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = spawnSync('pg_isready', ['-h', '127.0.0.1', '-p', String(port)]);
      r(s.status === 0);
    });
    if (ok) break;
    if (child.exitCode !== null) throw new Error(`pgbouncer exited: ${readFileSync(join(dir, 'pgbouncer.log'), 'utf8').slice(-500)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { port, pid: child.pid ?? 0, stop: () => child.kill('SIGTERM') };
}

/** How to read the proxy's CPU time (µs) for a target; undefined for direct. */
type CpuClock = (() => number) | undefined;
const ownCpu: CpuClock = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

async function pgbench(env: NodeJS.ProcessEnv, mode: string, clients: number, reconnect: boolean, logDir: string, seconds = SECONDS, proxyCpu: CpuClock = undefined): Promise<Omit<Result, 'target'>> {
  for (const f of readdirSync(logDir)) rmSync(join(logDir, f));
  const args = ['-n', '-S', '-M', mode, '-c', String(clients), '-j', String(Math.min(clients, 2)), '-T', String(seconds), '-l', '--log-prefix', join(logDir, 'tx')];
  if (reconnect) args.push('-C');
  const cpu0 = proxyCpu?.() ?? 0;
  const machine0 = machineBusyUs();
  const faults0 = machineFaults();
  const { stdout } = await run('pgbench', args, { env, maxBuffer: 1 << 24 });
  const cpu = (proxyCpu?.() ?? 0) - cpu0;
  const machine = machineBusyUs() - machine0;
  const faults = machineFaults() - faults0;
  const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? NaN);
  const avgMs = Number(/latency average = ([\d.]+) ms/.exec(stdout)?.[1] ?? NaN);
  const lat: number[] = [];
  for (const f of readdirSync(logDir)) {
    for (const line of readFileSync(join(logDir, f), 'utf8').split('\n')) {
      const us = Number(line.split(' ')[2]);
      if (Number.isFinite(us) && line) lat.push(us);
    }
  }
  lat.sort((a, b) => a - b);
  const p50us = lat[Math.floor(lat.length / 2)] ?? NaN;
  const txs = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? NaN);
  return { mode: reconnect ? `${mode} -C` : mode, clients, tps, p50us, avgMs, cpuUsPerTx: proxyCpu ? cpu / txs : NaN, machineUsPerTx: machine / txs, faultsPerTx: faults / txs };
}

/** The run with the median TPS, with the median of each other figure. */
function median(runs: Array<Omit<Result, 'target'>>): Omit<Result, 'target'> {
  const mid = <T>(xs: T[], key: (x: T) => number): number => xs.map(key).sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const first = runs[0];
  if (!first) throw new Error('no runs');
  return { mode: first.mode, clients: first.clients, tps: mid(runs, (r) => r.tps), p50us: mid(runs, (r) => r.p50us), avgMs: mid(runs, (r) => r.avgMs), cpuUsPerTx: mid(runs, (r) => r.cpuUsPerTx), machineUsPerTx: mid(runs, (r) => r.machineUsPerTx), faultsPerTx: mid(runs, (r) => r.faultsPerTx) };
}

async function main(): Promise<void> {
  const bouncerBin = ensurePgBouncer();
  const work = mkdtempSync(join(tmpdir(), 'hp-gwbench-'));
  chmodSync(work, 0o755);
  const storeDir = process.env.BENCH_STORE_DIR ? mkdtempSync(join(process.env.BENCH_STORE_DIR, 'hp-gwstore-')) : work;
  const target = await startPgTarget({ database: 'app' });
  try {
    await benchAgainst(target, bouncerBin, work, storeDir);
  } finally {
    await target.stop();
    rmSync(work, { recursive: true, force: true });
    rmSync(storeDir, { recursive: true, force: true });
  }
}

async function benchAgainst(target: PgTarget, bouncerBin: string, work: string, storeDir: string): Promise<void> {
  const user = 'hp_bench';
  // The warm PgBouncer's own login to the target, so that emptying the other's pool spares it.
  const warmUser = 'hp_bench_warm';
  const password = 'bench-pw-0123456789';
  const admin = await target.admin();
  for (const u of [user, warmUser]) await admin.query(`create role ${u} login password '${password}'`);
  await admin.end();
  await run('pgbench', ['-i', '-q', '-s', String(SCALE), '-I', 'dtgvp', target.adminUrl()]);
  const a2 = await target.admin();
  await a2.query(`grant select on all tables in schema public to ${user}, ${warmUser}`);
  await a2.end();

  const authority = new TestAuthority();
  const store = await openStore({ url: join(storeDir, 'state.sqlite') });
  // Full auditing exactly as the server does it (gatewayAuditSink): the gateway's AuditBatcher
  // into highVolumeSink, a writer thread appending one transaction per batch to the hash chain in
  // the SQLite state store, sealing secrets in SQL with a key of a master key (as app.ts sets it).
  const master = randomBytes(32);
  setAuditSealKey(auditSealKey(master));
  setAuditHeadKey(auditHeadKey(master)); // the server seals the chain head too (head-seal.ts)
  const audited = highVolumeSink(store);
  const gwOn = new PostgresGateway({ authority, audit: audited, ...(process.env.BENCH_AUDIT_DELAY_MS ? { auditBatch: { maxDelayMs: Number(process.env.BENCH_AUDIT_DELAY_MS) } } : {}), port: 0, tls: { selfSignedDir: join(work, 'tls') } });
  const gwOff = new PostgresGateway({ authority, audit: new DropSink(), port: 0, tls: { selfSignedDir: join(work, 'tls') } });
  const on = await gwOn.start();
  const off = await gwOff.start();
  const cert = gwOn.certificatePem ?? '';
  const key = readFileSync(join(work, 'tls', 'gateway-key.pem'), 'utf8');
  const bouncerDir = join(work, 'pgbouncer');
  spawnSync('mkdir', ['-p', bouncerDir]);
  const bouncer = await startPgBouncer(bouncerBin, bouncerDir, target, user, password, user, cert, key);
  const warmDir = join(work, 'pgbouncer-warm');
  spawnSync('mkdir', ['-p', warmDir]);
  const warmBouncer = await startPgBouncer(bouncerBin, warmDir, target, user, password, warmUser, cert, key);
  const bare = await startBareRelay(target, cert, key);
  // Reference rows only: without a C compiler they are left out, loudly.
  const nativeRelay = await startNativeRelay(target, cert, key, 'native').catch((e: Error) => console.log(`native relay rows skipped: ${e.message}`));
  const nativeRelayJs = nativeRelay ? await startNativeRelay(target, cert, key, 'native-js') : undefined;
  const nativeAudit = new AuditBatcher<GatewayAuditEvent>(audited);
  const nativeRelayAudit = nativeRelay ? await startNativeRelay(target, cert, key, 'native-js-audit', nativeAudit) : undefined;
  const grantId = authority.addGrant({
    userId: 'usr_bench',
    userName: 'bench',
    resource: 'app',
    role: 'read',
    expiresAt: new Date(Date.now() + 24 * 3_600_000),
    upstream: { host: target.host, port: target.port, database: 'app', user, password },
    guardrails: ['ddl', 'truncate', 'write_without_where', 'copy_program', 'set_role'],
    readOnly: false,
    storeParameters: false,
  });
  const base = { ...process.env, PGDATABASE: 'app', PGHOST: '127.0.0.1' };
  const bouncerCpu: CpuClock = () => processCpuUs(bouncer.pid);
  // Every target but the warm PgBouncer starts each run on fresh backends: direct, the relays and
  // the gateway open theirs per client connection, and the PgBouncer row has its pool emptied
  // first. A fresh backend page-faults in each shared-buffer page it touches, which on this VM
  // costs more CPU per transaction than the proxy in front of it; a pool kept warm from earlier
  // runs skips that, which is a property of the run order, not of the proxy (the warm row shows it).
  const emptyPool = async (): Promise<void> => {
    const c = await target.admin();
    try {
      const backends = `from pg_stat_activity where usename = '${user}' and backend_type = 'client backend' and pid <> pg_backend_pid()`;
      await c.query(`select pg_terminate_backend(pid) ${backends}`);
      for (let i = 0; i < 100; i++) {
        const { rows } = await c.query<{ n: string }>(`select count(*) as n ${backends}`);
        if (Number(rows[0]?.n) === 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 200)); // PgBouncer notices its closed server connections
    } finally {
      await c.end();
    }
  };
  type Target = [string, () => NodeJS.ProcessEnv, CpuClock, (() => Promise<void>)?];
  const targets: Target[] = [
    ['direct', () => ({ ...base, PGPORT: String(target.port), PGUSER: user, PGPASSWORD: password, PGSSLMODE: 'disable' }), undefined],
    ['pgbouncer', () => ({ ...base, PGPORT: String(bouncer.port), PGUSER: user, PGPASSWORD: password, PGSSLMODE: 'require' }), bouncerCpu, emptyPool],
    ['pgbouncer-warm', () => ({ ...base, PGPORT: String(warmBouncer.port), PGUSER: user, PGPASSWORD: password, PGSSLMODE: 'require' }), () => processCpuUs(warmBouncer.pid)],
    ['node-tls-relay', () => ({ ...base, PGPORT: String(bare.port), PGUSER: user, PGPASSWORD: password, PGSSLMODE: 'require' }), ownCpu],
    ...(nativeRelay && nativeRelayJs && nativeRelayAudit
      ? ([
          ['native-relay', () => ({ ...base, PGPORT: String(nativeRelay.port), PGUSER: user, PGPASSWORD: password, PGSSLMODE: 'require' }), ownCpu],
          ['native-relay-js', () => ({ ...base, PGPORT: String(nativeRelayJs.port), PGUSER: user, PGPASSWORD: password, PGSSLMODE: 'require' }), ownCpu],
          ['native-relay-audit', () => ({ ...base, PGPORT: String(nativeRelayAudit.port), PGUSER: user, PGPASSWORD: password, PGSSLMODE: 'require' }), ownCpu],
        ] satisfies Target[])
      : []),
    ['gateway', () => ({ ...base, PGPORT: String(on.port), PGUSER: 'bench', PGPASSWORD: authority.token(grantId, undefined, true), PGSSLMODE: 'require' }), ownCpu],
    ['gateway-noaudit', () => ({ ...base, PGPORT: String(off.port), PGUSER: 'bench', PGPASSWORD: authority.token(grantId, undefined, true), PGSSLMODE: 'require' }), ownCpu],
  ];
  const hold = process.env.BENCH_HOLD === '1';
  if (hold) {
    // Profiling aid: keep every target up and print how to reach each, until Ctrl-C.
    for (const [name, env] of targets) {
      const e = env();
      // Held gateway tokens last as long as the grant, so a profiling session can outlast the default TTL.
      if (e.PGUSER === 'bench') e.PGPASSWORD = authority.token(grantId, 24 * 3_600_000, true);
      console.log(`${name}: PGHOST=127.0.0.1 PGPORT=${e.PGPORT} PGDATABASE=app PGUSER=${e.PGUSER} PGPASSWORD='${e.PGPASSWORD}' PGSSLMODE=${e.PGSSLMODE}`);
    }
    console.log(`gateway pid ${process.pid}, pgbouncer pid ${bouncer.pid}, pgbouncer-warm pid ${warmBouncer.pid}`);
    await new Promise((resolve) => process.once('SIGINT', resolve));
  }
  const logDir = join(work, 'logs');
  spawnSync('mkdir', ['-p', logDir]);
  const results: Result[] = [];
  let eventsStored = 0;
  try {
    // Warm-up, so that no measured run pays for V8 compiling the hot paths on its worker threads or
    // for the audit writer thread starting: in a fresh process the audited gateway's first 6 s at 8
    // clients cost 2-3x the CPU per transaction of the next (its V8 threads ~50 µs/tx, then ~3).
    // Backends are still fresh for every measured run (see emptyPool).
    const warmClients = Math.max(...CLIENTS);
    if (!hold) for (const [, env] of targets) for (const m of ['simple', 'extended']) await pgbench(env(), m, warmClients, false, logDir, WARMUP_SECONDS);
    for (const m of hold ? [] : MODES) {
      const [mode = 'simple', flag] = m.split(' ');
      const reconnect = flag === '-C';
      for (const clients of CLIENTS) {
        // ROUNDS rounds, the order of the targets rotated each round, and the median kept: on a
        // shared two-core machine one 5-second run of a target can be off by a third.
        const rows = new Map<string, Array<Omit<Result, 'target'>>>();
        const active = targets.filter(([name]) => TARGETS.includes(name));
        for (let round = 0; round < ROUNDS; round++) {
          for (let k = 0; k < active.length; k++) {
            const [name, env, cpu, before] = active[(k + round) % active.length] as (typeof active)[number];
            await before?.();
            const r = await pgbench(env(), mode, clients, reconnect, logDir, SECONDS, cpu);
            rows.set(name, [...(rows.get(name) ?? []), r]);
          }
        }
        for (const [name] of active) {
          const runs = rows.get(name) ?? [];
          const r = median(runs);
          results.push({ target: name, ...r });
          const spread = runs.map((x) => x.tps.toFixed(0)).join('/');
          console.log(`${name.padEnd(16)} ${r.mode.padEnd(12)} c=${String(clients).padEnd(2)} tps=${r.tps.toFixed(0).padStart(7)} (${spread})  p50=${r.p50us.toFixed(0).padStart(6)} µs  avg=${r.avgMs.toFixed(3)} ms  CPU µs/tx: proxy ${Number.isNaN(r.cpuUsPerTx) ? '   -' : r.cpuUsPerTx.toFixed(1).padStart(5)}, machine ${r.machineUsPerTx.toFixed(1).padStart(5)}  faults/tx ${r.faultsPerTx.toFixed(2)}`);
        }
      }
    }
  } finally {
    bouncer.stop();
    warmBouncer.stop();
    await bare.close();
    await nativeRelay?.close();
    await nativeRelayJs?.close();
    await nativeRelayAudit?.close();
    await nativeAudit.drain();
    await gwOn.close();
    await gwOff.close();
    await audited.close();
    const stored = await store.db.selectFrom('audit_events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    eventsStored = Number(stored.n);
    await store.close();
  }
  const get = (t: string, m: string, c: number) => results.find((r) => r.target === t && r.mode === m && r.clients === c);
  console.log('\nratios');
  for (const m of ['simple', 'extended', 'extended -C']) {
    for (const c of CLIENTS) {
      const g = get('gateway', m, c);
      const b = get('pgbouncer', m, c);
      const d = get('direct', m, c);
      const n = get('gateway-noaudit', m, c);
      if (!g || !b || !d || !n) continue;
      console.log(
        `${m.padEnd(12)} c=${String(c).padEnd(2)} gateway/pgbouncer TPS ${(g.tps / b.tps).toFixed(2)}  gateway/direct TPS ${(g.tps / d.tps).toFixed(2)}  ` +
          `audit on/off TPS ${(g.tps / n.tps).toFixed(2)}  added p50 vs direct ${(g.p50us - d.p50us).toFixed(0)} µs`,
      );
    }
  }
  const g8 = get('gateway', 'extended', 8);
  const b8 = get('pgbouncer', 'extended', 8);
  const g1 = get('gateway', 'simple', 1);
  const d1 = get('direct', 'simple', 1);
  const g1e = get('gateway', 'extended', 1);
  const d1e = get('direct', 'extended', 1);
  if (g8 && b8 && g1 && d1 && g1e && d1e) {
    console.log('\ntargets');
    console.log(`  gateway ≥ 0.9× PgBouncer TPS at 8 clients extended: ${(g8.tps / b8.tps).toFixed(2)}×`);
    console.log(`  added p50 ≤ 100 µs over direct at 1 client: simple ${(g1.p50us - d1.p50us).toFixed(0)} µs, extended ${(g1e.p50us - d1e.p50us).toFixed(0)} µs`);
    const ratios = ['simple', 'extended'].flatMap((m) => CLIENTS.map((c) => (get('gateway', m, c)?.tps ?? 0) / (get('gateway-noaudit', m, c)?.tps ?? 1)));
    console.log(`  auditing on ≥ 0.9× off: min ${Math.min(...ratios).toFixed(2)}×, events stored ${eventsStored}`);
  }
}

await main();
