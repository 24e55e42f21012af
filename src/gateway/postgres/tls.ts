import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { promisify } from 'node:util';
import { ConfigError } from '../../domain/errors.js';

export type GatewayTlsConfig =
  /** PEM text. */
  | { readonly cert: string | Buffer; readonly key: string | Buffer }
  /** PEM files. */
  | { readonly certFile: string; readonly keyFile: string }
  /** Generate a self-signed pair at first start and keep it in this directory. */
  | { readonly selfSignedDir: string; readonly hostnames?: readonly string[] };

export interface LoadedTls {
  readonly context: SecureContext;
  /** The certificate (PEM), e.g. to give clients as sslrootcert for a self-signed pair. */
  readonly certPem: string;
}

const run = promisify(execFile);

/** Builds the TLS context the gateway answers SSLRequest with. */
export async function loadGatewayTls(config: GatewayTlsConfig): Promise<LoadedTls> {
  let cert: string;
  let key: string;
  if ('cert' in config) {
    cert = config.cert.toString();
    key = config.key.toString();
  } else if ('certFile' in config) {
    cert = readFileSync(config.certFile, 'utf8');
    key = readFileSync(config.keyFile, 'utf8');
  } else {
    ({ cert, key } = await selfSigned(config.selfSignedDir, config.hostnames ?? ['localhost', '127.0.0.1']));
  }
  try {
    return { context: createSecureContext({ cert, key, minVersion: 'TLSv1.2' }), certPem: cert };
  } catch (e) {
    throw new ConfigError(`gateway TLS certificate or key is invalid: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * A self-signed P-256 certificate made with the system's openssl at first start, then reused
 * (the key file is 0600) as long as it names every host clients are told to use (clients verify
 * it with verify-full): a changed listen host gets a new pair. Written to temporary names and
 * renamed, so a crash leaves no half pair.
 */
async function selfSigned(dir: string, hostnames: readonly string[]): Promise<{ cert: string; key: string }> {
  const certFile = join(dir, 'gateway-cert.pem');
  const keyFile = join(dir, 'gateway-key.pem');
  if (!existsSync(certFile) || !existsSync(keyFile) || !covers(readFileSync(certFile, 'utf8'), hostnames)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const san = hostnames.map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
    const tmpKey = `${keyFile}.${process.pid}.tmp`;
    const tmpCert = `${certFile}.${process.pid}.tmp`;
    const oldUmask = process.umask(0o077);
    try {
      await run('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', tmpKey, '-out', tmpCert, '-days', '825', '-subj', '/CN=hallpass gateway',
        '-addext', `subjectAltName=${san}`,
      ]);
    } catch (e) {
      throw new ConfigError(
        `could not generate the gateway's self-signed certificate with openssl (${e instanceof Error ? e.message : String(e)}); ` +
          'install openssl or configure gateway TLS cert/key files',
      );
    } finally {
      process.umask(oldUmask);
    }
    renameSync(tmpKey, keyFile);
    renameSync(tmpCert, certFile);
  }
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}

/** Whether the certificate's subjectAltName names every host (DNS name or IP address). */
function covers(certPem: string, hostnames: readonly string[]): boolean {
  try {
    const cert = new X509Certificate(certPem);
    return hostnames.every((h) => (isIP(h) ? cert.checkIP(h) : cert.checkHost(h, { subject: 'never' })) !== undefined);
  } catch {
    return false;
  }
}
