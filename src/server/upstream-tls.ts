import { readFile } from 'node:fs/promises';
import type { UpstreamTls } from '../gateway/authority.js';
import type { ConnectionInfo } from '../providers/provider.js';

/**
 * The gateway's TLS to the target, with the meaning the provider's own admin connections give the
 * resource's settings (libpq's sslmode and sslrootcert): `require` encrypts only, or checks the
 * chain (not the host name) against a CA file; `verify-full` checks the chain (the CA file, else
 * the system CAs) and the host name. The CA file is read for each session, so a replaced file
 * takes effect without a restart.
 */
export async function upstreamTls(tls: ConnectionInfo['tls']): Promise<UpstreamTls | false> {
  if (!tls) return false;
  if (tls.caFile === undefined) return { rejectUnauthorized: tls.mode === 'verify-full' };
  const ca = await readFile(tls.caFile, 'utf8');
  return { ca, rejectUnauthorized: true, verifyHostname: tls.mode === 'verify-full' };
}
