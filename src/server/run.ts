import { resolveServerConfig, type ServerFlags } from './file-config.js';
import { startHallpass, type Hallpass } from './app.js';
import { gatewayExtension } from './gateway-extension.js';

/** Starts a server from flags/env/config and runs until SIGINT/SIGTERM. */
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

export async function untilSignal(h: Pick<Hallpass, 'close'>, onClose?: () => Promise<void>): Promise<void> {
  await new Promise<void>((resolve) => {
    let closing = false;
    const stop = () => {
      if (closing) return;
      closing = true;
      process.stderr.write('hallpass: shutting down\n');
      void h.close().then(onClose).finally(resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
