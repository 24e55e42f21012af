import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve, dirname, join } from 'node:path';
import { parse } from 'yaml';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { IdentitySchema, resolveIdentityConfig } from '../auth/config-schema.js';
import { ConfigError } from '../domain/errors.js';
import { DEFAULT_API_PORT, DEFAULT_GATEWAY_PORT, type HallpassConfig } from './config.js';

const HostPort = Type.String({ pattern: '^(\\[[0-9a-fA-F:]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$' });

/** The server config file (YAML). Every field is optional; env vars and flags override it. */
export const ServerFileSchema = Type.Object({
  dataDir: Type.Optional(Type.String()),
  policy: Type.Optional(Type.String()),
  listen: Type.Optional(HostPort),
  publicUrl: Type.Optional(Type.String()),
  trustedProxies: Type.Optional(Type.Array(Type.String(), { description: 'addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is believed' })),
  databaseUrl: Type.Optional(Type.String({ description: 'prefer the HALLPASS_DATABASE_URL env var: it may hold a password' })),
  reconcileInterval: Type.Optional(Type.Integer({ minimum: 1, description: 'seconds' })),
  gateway: Type.Optional(Type.Object({
    enabled: Type.Optional(Type.Boolean()),
    listen: Type.Optional(HostPort),
    requireTls: Type.Optional(Type.Boolean()),
    certFile: Type.Optional(Type.String()),
    keyFile: Type.Optional(Type.String()),
    caFile: Type.Optional(Type.String({ description: 'the CA that issued certFile, handed to clients to verify the gateway; default certFile (self-signed)' })),
  }, { additionalProperties: false })),
  identity: Type.Optional(IdentitySchema),
}, { additionalProperties: false });
export type ServerFile = Static<typeof ServerFileSchema>;

export function parseHostPort(text: string, what: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 0 || port > 65535) throw new ConfigError(`${what} must be host:port (got ${JSON.stringify(text)})`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/** An address or CIDR range (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`) for trustedProxies. */
export function checkProxy(text: string): string {
  const [addr = '', bits, extra] = text.split('/');
  const family = isIP(addr);
  const max = family === 4 ? 32 : 128;
  const ok = family !== 0 && extra === undefined && (bits === undefined || (/^[0-9]{1,3}$/.test(bits) && Number(bits) <= max));
  if (!ok) throw new ConfigError(`trustedProxies: ${JSON.stringify(text)} is not an IP address or CIDR range`);
  return text;
}

export interface ServerFlags {
  config?: string | undefined;
  data?: string | undefined;
  policy?: string | undefined;
  listen?: string | undefined;
}

/** Flags > env > config file > defaults. */
export function resolveServerConfig(flags: ServerFlags, env: Readonly<Record<string, string | undefined>>): HallpassConfig {
  let file: ServerFile = {};
  let base = process.cwd();
  if (flags.config) {
    const path = resolve(flags.config);
    let raw: unknown;
    try {
      raw = parse(readFileSync(path, 'utf8'));
    } catch (err) {
      throw new ConfigError(`cannot read config ${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
    const errors = [...Value.Errors(ServerFileSchema, raw ?? {})];
    if (errors.length > 0) {
      throw new ConfigError(`config ${path}: ${errors.slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`).join('; ')}`);
    }
    file = (raw ?? {}) as ServerFile;
    base = dirname(path);
  }
  const dataDir = resolve(base, flags.data ?? env.HALLPASS_DATA_DIR ?? file.dataDir ?? '.hallpass');
  const policyFile = resolve(base, flags.policy ?? env.HALLPASS_POLICY ?? file.policy ?? join(dataDir, 'policy.yaml'));
  const listen = parseHostPort(flags.listen ?? env.HALLPASS_LISTEN ?? file.listen ?? `127.0.0.1:${DEFAULT_API_PORT}`, 'listen');
  const gw = file.gateway ?? {};
  const gatewayListen = parseHostPort(env.HALLPASS_GATEWAY_LISTEN ?? gw.listen ?? `127.0.0.1:${DEFAULT_GATEWAY_PORT}`, 'gateway.listen');
  return {
    dataDir,
    policyFile,
    databaseUrl: env.HALLPASS_DATABASE_URL ?? file.databaseUrl,
    listen,
    publicUrl: file.publicUrl,
    trustedProxies: file.trustedProxies?.map((p) => checkProxy(p)),
    gateway: gw.enabled === false ? undefined : {
      ...gatewayListen, requireTls: gw.requireTls ?? true,
      certFile: gw.certFile ? resolve(base, gw.certFile) : undefined, keyFile: gw.keyFile ? resolve(base, gw.keyFile) : undefined,
      caFile: gw.caFile ? resolve(base, gw.caFile) : undefined,
    },
    env,
    reconcileIntervalMs: file.reconcileInterval ? file.reconcileInterval * 1000 : undefined,
    identity: resolveIdentityConfig(file.identity, env),
  };
}
