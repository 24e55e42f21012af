import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../domain/errors.js';
import type { GatewayAccess } from '../api/context.js';
import { PostgresGateway } from '../gateway/postgres/server.js';
import { mintGatewayToken } from '../gateway/tokens.js';
import { deriveKey } from '../secrets/index.js';
import type { AccessDeps } from '../access/context.js';
import type { HallpassExtension } from './app.js';
import type { GatewayListenConfig } from './config.js';
import { gatewayAuditSink, gatewayAuthority, pruneNonces } from './gateway-authority.js';

/** The PostgreSQL gateway as a part of the server: authority, audit, grant-event wiring. */
export function gatewayExtension(cfg: GatewayListenConfig, opts: { insecureAllowPasswordWithoutTls?: boolean } = {}): HallpassExtension {
  return {
    async start(h) {
      const { deps } = h;
      const tokenKey = deriveKey(h.masterKey, 'gateway-token-hmac');
      const caFilePem = cfg.caFile ? readFileSync(cfg.caFile, 'utf8') : undefined;
      const audit = gatewayAuditSink(deps);
      const gateway = new PostgresGateway({
        authority: gatewayAuthority(deps, tokenKey),
        audit,
        host: cfg.host,
        port: cfg.port,
        tls: cfg.certFile && cfg.keyFile
          ? { certFile: cfg.certFile, keyFile: cfg.keyFile }
          : { selfSignedDir: join(h.dataDir, 'gateway-tls'), hostnames: [cfg.host, 'localhost'] },
        requireTls: cfg.requireTls,
        insecureAllowPasswordWithoutTls: opts.insecureAllowPasswordWithoutTls ?? false,
        clock: deps.clock,
        // A failing batch stays queued and is retried with backoff; say so, or sessions would just
        // stall at the high-water mark with nothing in the log.
        auditBatch: { onError: (e) => h.log(`gateway audit: storing a batch failed, retrying: ${e instanceof Error ? e.message : String(e)}`) },
      });
      const bound = await gateway.start();
      const caPem = caFilePem ?? gateway.certificatePem;
      if (caPem === undefined) {
        await gateway.close();
        throw new ConfigError('gateway: no certificate to hand to clients');
      }
      const unsubscribe = deps.events.subscribe((ev) => {
        if (ev.type === 'ended') void gateway.endGrant(ev.grantId, ev.reason).catch(() => undefined);
        else gateway.updateGrantExpiry(ev.grantId, new Date(ev.expiresAt));
      });
      // Grant events can be missed (another instance's NOTIFY while this one's LISTEN was down, a
      // publish that failed): the store is the truth, re-read for every grant with a session here
      // after the bus reconnects and every RESYNC_MS anyway.
      let resyncing = false;
      const resync = () => {
        if (resyncing) return; // a slow store: one read at a time
        resyncing = true;
        void resyncGateway(deps, gateway).catch((e: unknown) => h.log(`gateway resync: ${String(e)}`)).finally(() => (resyncing = false));
      };
      const stopResyncOnReconnect = deps.events.onReconnect(resync);
      const resyncTimer = setInterval(resync, RESYNC_MS);
      resyncTimer.unref();
      const prune = setInterval(() => void pruneNonces(deps).catch(() => undefined), 60_000);
      prune.unref();
      // Clients verify the gateway (verify-full): the host they are told to use is one the
      // certificate names (the self-signed pair covers the listen host and localhost).
      const advertisedHost = cfg.host === '0.0.0.0' || cfg.host === '::' ? 'localhost' : cfg.host;
      const gatewayAccess: GatewayAccess = {
        connectionFor(grant, user, opts = {}) {
          const minted = mintGatewayToken(tokenKey, {
            grantId: grant.id, now: deps.clock.now(), notAfter: grant.expires_at === null ? undefined : new Date(grant.expires_at),
            reusable: opts.reusable === true,
          });
          // verify-full needs sslrootcert, a file on the client's machine: the client saves caPem
          // and adds it (the CLI does); without it libpq refuses rather than trusting anyone.
          const sslmode = 'verify-full';
          const urlHost = advertisedHost.includes(':') ? `[${advertisedHost}]` : advertisedHost;
          const dsn = `postgres://${encodeURIComponent(user.name)}:${encodeURIComponent(minted.token)}@${urlHost}:${bound.port}/${encodeURIComponent(grant.resource)}?sslmode=${sslmode}`;
          return {
            kind: 'postgres', host: advertisedHost, port: bound.port, database: grant.resource, user: user.name, password: minted.token, dsn,
            env: { PGHOST: advertisedHost, PGPORT: String(bound.port), PGDATABASE: grant.resource, PGUSER: user.name, PGPASSWORD: minted.token, PGSSLMODE: sslmode },
            caPem,
          };
        },
      };
      return {
        gatewayAccess,
        gateway,
        async close() {
          clearInterval(prune);
          clearInterval(resyncTimer);
          stopResyncOnReconnect();
          unsubscribe();
          await gateway.close(); // drains its audit batcher into the sink
          await audit.close();
        },
      };
    },
  };
}

/** How often the gateway re-reads its sessions' grants from the store, in case an event was missed. */
const RESYNC_MS = 5000;

/**
 * Brings the gateway in line with the store: sessions of a grant that is no longer active are cut
 * (as expired or revoked, by its end reason), and sessions of an active grant whose end moved later
 * get the new end (never an earlier one: the read may predate an extension). Returns how many grants were cut.
 */
export async function resyncGateway(deps: AccessDeps, gateway: Pick<PostgresGateway, 'liveGrantIds' | 'endGrant' | 'lengthenGrant'>): Promise<number> {
  const ids = gateway.liveGrantIds();
  if (ids.length === 0) return 0;
  const rows = await deps.store.db.selectFrom('grants').select(['id', 'status', 'expires_at', 'end_reason']).where('id', 'in', ids).execute();
  const found = new Map(rows.map((r) => [r.id, r]));
  let cut = 0;
  for (const id of ids) {
    const g = found.get(id);
    if (g?.status === 'active' && g.expires_at !== null) {
      gateway.lengthenGrant(id, new Date(g.expires_at));
      continue;
    }
    cut++;
    void gateway.endGrant(id, g?.end_reason === 'expired' ? 'expired' : 'revoked').catch(() => undefined);
  }
  return cut;
}
