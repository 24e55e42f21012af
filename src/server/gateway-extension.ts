import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../domain/errors.js';
import type { GatewayAccess } from '../api/context.js';
import { PostgresGateway } from '../gateway/postgres/server.js';
import { mintGatewayToken } from '../gateway/tokens.js';
import { deriveKey } from '../secrets/index.js';
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
          unsubscribe();
          await gateway.close(); // drains its audit batcher into the sink
          await audit.close();
        },
      };
    },
  };
}
