import { inTx } from '../access/context.js';
import { resolveServerConfig, type ServerFlags } from './file-config.js';
import { startHallpass, type Hallpass } from './app.js';
import { gatewayExtension } from './gateway-extension.js';

/** Starts a server from flags/env/config and runs until SIGINT/SIGTERM (or a fatal error). */
export async function runServer(flags: ServerFlags): Promise<void> {
  const config = resolveServerConfig(flags, process.env);
  const h = await startHallpass(config, { extensions: config.gateway ? [gatewayExtension(config.gateway)] : [] });
  process.stdout.write(`hallpass ${h.url} (store: ${h.deps.store.description}, policy: ${config.policyFile} ${h.policy.current.version.slice(0, 12)})\n`);
  if (config.gateway) process.stdout.write(`gateway: postgres on ${config.gateway.host}:${config.gateway.port}\n`);
  if (h.generatedAdminToken) {
    process.stdout.write(`\nFirst start: the admin API token (shown once, store it now):\n  ${h.generatedAdminToken}\n\n`);
  }
  await untilSignal(h);
}

/** The exit code after a fatal error (EX_SOFTWARE). */
export const FATAL_EXIT_CODE = 70;
/** How long a fatal error's shutdown may take before the process exits without finishing it. */
const FATAL_SHUTDOWN_MS = 35_000; // past the audit drain's own 30 s of retries

/**
 * Runs until SIGINT or SIGTERM, then closes `h` (gateway sessions cut, queued audit events stored)
 * and `onClose`. An exception nothing caught (or a rejection nothing handled) takes the same
 * clean path instead of killing the process where it stands, which would lose the gateway's
 * queued audit events (up to 25 ms or 128 statements that already ran on a target): it is
 * recorded as `server.crashed`, everything is closed (for at most 35 s), and the process exits
 * with code 70. Only a crash that runs no JavaScript (SIGKILL, out of memory) still loses them.
 */
export async function untilSignal(
  h: Pick<Hallpass, 'close'> & Partial<Pick<Hallpass, 'deps'>>,
  onClose?: () => Promise<void>,
  opts: { readonly fatalShutdownMs?: number } = {},
): Promise<void> {
  const fatalShutdownMs = opts.fatalShutdownMs ?? FATAL_SHUTDOWN_MS;
  await new Promise<void>((resolve) => {
    let closing = false;
    const shutdown = async (): Promise<void> => {
      await h.close();
      await onClose?.();
    };
    const stop = () => {
      if (closing) return;
      closing = true;
      process.stderr.write('hallpass: shutting down\n');
      void shutdown().finally(() => {
        if (giveUp) process.exit(FATAL_EXIT_CODE); // a fatal error came during it
        resolve();
      });
    };
    let giveUp: NodeJS.Timeout | undefined;
    const fatal = (err: unknown) => {
      process.stderr.write(`hallpass: fatal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = FATAL_EXIT_CODE;
      // Whatever is under way (this shutdown, or one a signal started, which the error may have
      // broken: a review had that hang for good) gets fatalShutdownMs, then the process exits.
      giveUp ??= setTimeout(() => {
        process.stderr.write(`hallpass: shutdown did not finish in ${fatalShutdownMs / 1000} s; exiting\n`);
        process.exit(FATAL_EXIT_CODE);
      }, fatalShutdownMs);
      if (closing) return;
      closing = true;
      process.stderr.write('hallpass: shutting down after a fatal error (storing queued audit events)\n');
      // A store that hangs must not hold the cut of every session: the crash record gets 2 s.
      void Promise.race([recordCrash(h.deps, err), new Promise<void>((r) => setTimeout(r, 2000).unref())])
        .then(shutdown)
        .catch((e: unknown) => process.stderr.write(`hallpass: shutdown after a fatal error failed: ${String(e)}\n`))
        .finally(() => process.exit(FATAL_EXIT_CODE));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    process.on('uncaughtException', fatal);
  });
}

/** Appends `server.crashed` (the error's name and message) to the audit log; never throws. */
async function recordCrash(deps: Hallpass['deps'] | undefined, err: unknown): Promise<void> {
  if (!deps) return;
  const error = (err instanceof Error ? `${err.name}: ${err.message}` : String(err)).slice(0, 1000);
  try {
    await inTx(deps, async (_tx, audit) => {
      audit({ type: 'server.crashed', actor: 'system', at: deps.clock.now().getTime(), data: { error, pid: process.pid } });
    });
  } catch (e) {
    process.stderr.write(`hallpass: could not record the crash in the audit log: ${String(e)}\n`);
  }
}
