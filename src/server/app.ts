import type { FastifyInstance } from 'fastify';
import type { AccessDeps, GrantEventBus } from '../access/context.js';
import type { GatewayAccess } from '../api/context.js';
import type { PostgresGateway } from '../gateway/postgres/server.js';
import { buildApi } from '../api/server.js';
import { appendEvents, setAuditHeadKey, setAuditSealKey } from '../audit/index.js';
import { Identity } from '../auth/identity.js';
import { systemClock } from '../domain/clock.js';
import { providerFactories } from '../providers/registry.js';
import { reconcile, startReconciler, type ReconcileResult } from '../scheduler/reconciler.js';
import { Scheduler } from '../scheduler/scheduler.js';
import { auditHeadKey, auditSealKey, deriveKey, envelopeKey, loadMasterKey, secretBoxFor } from '../secrets/index.js';
import { resealStoredSecrets } from './reseal.js';
import { startAuditAnchor } from './audit-anchor.js';
import { openStore, type StoreConnection } from '../store/db.js';
import { bootstrapAdmin } from './bootstrap.js';
import { defaultInstanceId, storeUrl, type HallpassConfig } from './config.js';
import { LocalGrantEvents, PgGrantEvents } from './events.js';
import { Metrics } from './metrics.js';
import { PolicyHolder } from './policy-holder.js';
import { endAccessOfDisabledUsers } from '../access/offboard.js';
import { ProviderPool, secretResolver } from './provider-pool.js';

/** A running hallpass: API, scheduler, reconciler (and, when wired, the gateway). */
export interface Hallpass {
  readonly url: string;
  readonly deps: AccessDeps;
  readonly api: FastifyInstance;
  readonly scheduler: Scheduler;
  readonly policy: PolicyHolder;
  readonly metrics: Metrics;
  readonly masterKey: Buffer;
  readonly dataDir: string;
  /** The PostgreSQL gateway, when enabled. */
  readonly gateway?: PostgresGateway | undefined;
  /** Set only on the very first start when no HALLPASS_ADMIN_TOKEN was given: print it once. */
  readonly generatedAdminToken?: string | undefined;
  reconcileNow(): Promise<ReconcileResult[]>;
  close(): Promise<void>;
}

export interface StartOptions {
  /** Adds listeners on top of the API (the gateway plugs in here). */
  readonly extensions?: ReadonlyArray<HallpassExtension>;
}

/** Something that runs beside the API and hears about grant changes (e.g. the gateway). */
export interface HallpassExtension {
  start(h: Omit<Hallpass, 'close' | 'url' | 'api' | 'gateway'> & { readonly log: (line: string) => void }): Promise<{
    gatewayAccess?: GatewayAccess;
    gateway?: PostgresGateway;
    close(): Promise<void>;
  }>;
}

/** The composition root: builds every part from the config, in order, and tears it down in reverse. */
export async function startHallpass(config: HallpassConfig, opts: StartOptions = {}): Promise<Hallpass> {
  const log = config.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const clock = config.clock ?? systemClock;
  const instanceId = config.instanceId ?? defaultInstanceId(config.dataDir);
  const cleanups: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const c of cleanups.reverse()) await c().catch((e: unknown) => log(`shutdown: ${String(e)}`));
  };
  try {
    const master = loadMasterKey({ env: config.env, dataDir: config.dataDir });
    // Secrets in audited SQL are sealed with a key of this master key (src/audit/seal.ts).
    setAuditSealKey(auditSealKey(master.key), master.previous.map(auditSealKey));
    // ... and the audit chain's head is sealed with another (src/audit/head-seal.ts). Keys of
    // earlier master keys (HALLPASS_PREVIOUS_MASTER_KEYS, a rotation) still open and check what
    // they sealed.
    setAuditHeadKey(auditHeadKey(master.key), master.previous.map(auditHeadKey));
    const store: StoreConnection = await openStore({ url: storeUrl(config) });
    cleanups.push(() => store.close());
    // The newest audit head this server wrote, kept outside the database across restarts.
    const stopAnchor = startAuditAnchor(config.dataDir, storeUrl(config));
    cleanups.push(async () => stopAnchor());
    let events: GrantEventBus;
    if (store.dialect === 'postgres') {
      const bus = new PgGrantEvents(config.databaseUrl!, `${instanceId}:${process.pid}`);
      await bus.start();
      cleanups.push(() => bus.close());
      events = bus;
    } else {
      events = new LocalGrantEvents();
    }
    const metrics = new Metrics();
    const base = { store, clock, appendAudit: appendEvents };
    const policy = await PolicyHolder.load(config.policyFile, providerFactories, base);
    cleanups.push(() => policy.close());
    // What providers make on targets is marked with this deployment's name: the master key's
    // fingerprint (derived, it reveals nothing), shared by every instance of the deployment.
    const deploymentName = (key: Buffer): string => `hallpass ${auditSealKey(key).id}`;
    const providers = new ProviderPool(providerFactories, secretResolver(config.env), () => policy.current, deploymentName(master.key), master.previous.map(deploymentName));
    cleanups.push(() => providers.close());
    const sealer = secretBoxFor(master.key, master.previous);
    // The scheduler needs deps and deps wake the scheduler: tie the knot through a late binding.
    const wake = { to: (_at: number): void => {} };
    const deps: AccessDeps = {
      ...base,
      policy: () => policy.current,
      providers,
      sealer,
      events,
      metrics,
      instanceId,
      wake: (at) => wake.to(at),
      leaseMs: config.leaseMs ?? 30_000,
    };
    const scheduler = new Scheduler(deps, { pollMs: config.schedulerPollMs ?? 1000, onError: (e) => log(`scheduler: ${String(e)}`) });
    wake.to = (at) => scheduler.wake(at);
    // Users removed from the policy lose their grants and pending requests: on each reload, and
    // at start for any the last run disabled without finishing (or while the server was down).
    policy.onUsersDisabled(async () => {
      await endAccessOfDisabledUsers(deps, { inline: true });
    });
    await endAccessOfDisabledUsers(deps, { inline: false });
    if (master.previous.length > 0) {
      // A rotation: what the previous keys sealed in the store is sealed anew with this one.
      const r = await resealStoredSecrets(deps, sealer, envelopeKey(master.key).id);
      const left = r.unopened.grants + r.unopened.totp + r.unopened.sso_logins;
      log(`master key rotation: re-sealed ${r.resealed.grants} grant credentials, ${r.resealed.totp} TOTP secrets and ${r.resealed.sso_logins} pending SSO logins` +
        (left > 0 ? `; ${left} sealed by a key this server was not given are left as they are` : ''));
    }
    const { generatedToken } = await bootstrapAdmin(deps, config.env.HALLPASS_ADMIN_TOKEN);
    if (config.watchPolicy !== false) policy.watch(base, 1000, (e) => log(`policy reload: ${String(e)}`));

    const partial = {
      deps, scheduler, policy, metrics, masterKey: master.key, dataDir: config.dataDir, generatedAdminToken: generatedToken,
      reconcileNow: () => reconcile(deps),
    };
    let gatewayAccess: GatewayAccess | undefined;
    let gateway: PostgresGateway | undefined;
    for (const ext of opts.extensions ?? []) {
      const started = await ext.start({ ...partial, log });
      cleanups.push(() => started.close());
      gatewayAccess = started.gatewayAccess ?? gatewayAccess;
      gateway = started.gateway ?? gateway;
    }

    await scheduler.start({ timers: config.schedulerTimers !== false });
    cleanups.push(() => scheduler.stop());
    if (config.schedulerTimers !== false) {
      const stopReconciler = startReconciler(deps, config.reconcileIntervalMs ?? 60_000, (results) => {
        for (const r of results) if (!r.ok) log(`reconciler: ${r.resource}: ${r.error}`);
      });
      cleanups.push(stopReconciler);
      // And with it, the offboarding sweep again: a sweep that failed (the store was down) or a
      // grant that slipped past one is caught within the reconcile interval, not at the next removal.
      const offboard = setInterval(() => {
        endAccessOfDisabledUsers(deps, { inline: false }).catch((e: unknown) => log(`offboarding: ${String(e)}`));
      }, config.reconcileIntervalMs ?? 60_000);
      offboard.unref();
      cleanups.push(async () => clearInterval(offboard));
    }

    let url = config.publicUrl ?? '';
    const identity = new Identity(deps, config.identity ?? {}, deriveKey(master.key, 'web-csrf'), () => url, { jwksCooldownMs: config.identity?.jwksCooldownMs });
    const api = await buildApi({ deps, metrics, gateway: gatewayAccess, log, identity, trustedProxies: config.trustedProxies });
    cleanups.push(() => api.close());
    await api.listen({ host: config.listen.host, port: config.listen.port });
    const addr = api.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : config.listen.port;
    const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
    url = config.publicUrl ?? `http://${host}:${port}`;
    return { ...partial, gateway, api, url, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
