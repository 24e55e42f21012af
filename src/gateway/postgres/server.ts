import { createServer, type Server, type Socket } from 'node:net';
import { AuditBatcher, type AuditBatcherOptions } from '../../audit/batcher.js';
import { systemClock, type Clock } from '../../domain/clock.js';
import { ConfigError } from '../../domain/errors.js';
import type { GatewayAuditEvent, GatewayAuditSink, GatewayAuthority } from '../authority.js';
import { CancelRegistry } from './cancel.js';
import { GuardrailChecker, loadGuardrailParser } from './guardrails.js';
import { ParsePool } from './parse-pool.js';
import { addressKey, RefusalAudit, type RefusalAuditOptions } from './refusals.js';
import { errorResponse } from './serializer.js';
import { ClientSession, type SessionContext } from './session.js';
import { loadGatewayTls, type GatewayTlsConfig, type LoadedTls } from './tls.js';

export interface PostgresGatewayOptions {
  readonly authority: GatewayAuthority;
  readonly audit: GatewayAuditSink;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 15432; 0 picks a free port (see address()). */
  readonly port?: number;
  /** Certificate source; `false` disables TLS (then only `insecureAllowPasswordWithoutTls` lets anyone in). */
  readonly tls: GatewayTlsConfig | false;
  /** Refuse clients that do not negotiate TLS. Default true. */
  readonly requireTls?: boolean;
  /** Accept a gateway token in cleartext outside TLS. Default false: never in production. */
  readonly insecureAllowPasswordWithoutTls?: boolean;
  /** Largest protocol message accepted after login, either direction. Default 64 MiB. */
  readonly maxMessageBytes?: number;
  /** Default 10 s. */
  readonly upstreamConnectTimeoutMs?: number;
  /** Startup + authentication + upstream login must finish within this. Default 15 s. */
  readonly loginTimeoutMs?: number;
  /** Most simultaneous client connections. Default 1000. */
  readonly maxConnections?: number;
  /**
   * Most connections from one client address (an IPv6 /64 counts as one) that have not finished
   * logging in (TLS, token, upstream login). Default 64: one address cannot hold every connection
   * slot for the login timeout without a token.
   */
  readonly maxLoginsPerAddress?: number;
  /** How refused attempts are audited one by one up to a budget, then counted (refusals.ts). */
  readonly refusalAudit?: RefusalAuditOptions;
  readonly auditBatch?: AuditBatcherOptions;
  readonly clock?: Clock;
}

export interface GatewaySessionInfo {
  readonly sessionId: string;
  readonly grantId: string;
  readonly userName: string;
  readonly resource: string;
  readonly clientAddress: string;
}

/**
 * The PostgreSQL gateway: one listener, its sessions indexed by grant so a grant's end cuts
 * them all at once, and its audit batcher. Each session also holds its own timer at the grant's
 * end, so it is cut even if endGrant is never called.
 */
export class PostgresGateway {
  readonly #opts: PostgresGatewayOptions;
  readonly #audit: AuditBatcher<GatewayAuditEvent>;
  readonly #refusals: RefusalAudit;
  readonly #byGrant = new Map<string, Set<ClientSession>>();
  readonly #all = new Set<ClientSession>();
  readonly #sockets = new Set<Socket>();
  /** Grants ended here recently: a session that finishes logging in after endGrant is cut too. */
  readonly #ended = new Map<string, 'expired' | 'revoked'>();
  #server: Server | undefined;
  #tls: LoadedTls | undefined;
  #ctx: SessionContext | undefined;
  #closing = false;
  readonly #parser = new ParsePool();

  constructor(opts: PostgresGatewayOptions) {
    if (opts.tls === false && (opts.requireTls ?? true)) {
      throw new ConfigError('gateway: requireTls is on but TLS is disabled; configure tls (cert/key or selfSignedDir)');
    }
    this.#opts = opts;
    this.#audit = new AuditBatcher(opts.audit, opts.auditBatch);
    this.#refusals = new RefusalAudit((e) => this.#audit.add(e), opts.clock ?? systemClock, opts.refusalAudit);
  }

  /** Loads TLS and the SQL parser, then listens. Resolves with the bound address. */
  async start(): Promise<{ host: string; port: number }> {
    const o = this.#opts;
    this.#tls = o.tls === false ? undefined : await loadGatewayTls(o.tls);
    await loadGuardrailParser();
    this.#ctx = {
      authority: o.authority,
      tls: this.#tls,
      requireTls: o.requireTls ?? true,
      allowPasswordWithoutTls: o.insecureAllowPasswordWithoutTls ?? false,
      audit: this.#audit,
      refusals: this.#refusals,
      cancelKeys: new CancelRegistry<ClientSession>(),
      // Statements are parsed on the parser thread, off the event loop that relays and cuts off.
      guardrails: new GuardrailChecker(10_000, this.#parser),
      clock: o.clock ?? systemClock,
      maxMessageBytes: o.maxMessageBytes ?? 64 * 1024 * 1024,
      upstreamConnectTimeoutMs: o.upstreamConnectTimeoutMs ?? 10_000,
      loginTimeoutMs: o.loginTimeoutMs ?? 15_000,
      attach: (s) => this.#attach(s),
      detach: (s) => this.#detach(s),
    };
    const server = createServer(
      // A client may half-close (shutdown(SHUT_WR)) and still read the answers to what it sent:
      // the relay passes that on (relay.ts, #onClientEnd). TLS sockets inherit it.
      { noDelay: true, pauseOnConnect: false, allowHalfOpen: true },
      (socket) => this.#onConnection(socket),
    );
    server.maxConnections = o.maxConnections ?? 1000;
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port ?? 15432, o.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return this.address();
  }

  address(): { host: string; port: number } {
    const a = this.#server?.address();
    if (!a || typeof a === 'string') throw new ConfigError('gateway is not listening');
    return { host: a.address, port: a.port };
  }

  /** The certificate clients should trust (PEM), e.g. for a generated self-signed pair. */
  get certificatePem(): string | undefined {
    return this.#tls?.certPem;
  }

  /** Open sessions (for /metrics and the admin view). */
  sessions(): GatewaySessionInfo[] {
    return [...this.#byGrant.values()].flatMap((set) =>
      [...set].flatMap((s) =>
        s.auth
          ? [{ sessionId: s.id, grantId: s.auth.grantId, userName: s.auth.userName, resource: s.auth.resource, clientAddress: s.clientAddress }]
          : [],
      ),
    );
  }

  /**
   * Moves the end of the grant's sessions later, never earlier: for a resync from the store, whose
   * read may have started before a newer extension arrived (a review had it undo the extension
   * and cut the session at the old end). Grants are never shortened; ending them is endGrant's.
   */
  lengthenGrant(grantId: string, expiresAt: Date): void {
    for (const s of this.#byGrant.get(grantId) ?? []) if (expiresAt.getTime() > s.expiresMs) s.updateExpiry(expiresAt);
  }

  /** Grants with a session open here (or logging in): what a resync after missed grant events re-reads. */
  liveGrantIds(): string[] {
    return [...this.#byGrant.keys()];
  }

  /** Cuts every session of the grant now (FATAL "access to R expired|revoked"). Resolves when all are closed. */
  async endGrant(grantId: string, reason: 'expired' | 'revoked'): Promise<number> {
    this.#ended.set(grantId, reason);
    if (this.#ended.size > 10_000) {
      const oldest = this.#ended.keys().next();
      if (!oldest.done) this.#ended.delete(oldest.value);
    }
    const set = this.#byGrant.get(grantId);
    if (!set) return 0;
    const sessions = [...set];
    await Promise.all(sessions.map((s) => s.cut(reason)));
    return sessions.length;
  }

  /** The grant's end moved (extension): every session re-arms its own timer. */
  updateGrantExpiry(grantId: string, expiresAt: Date): void {
    for (const s of this.#byGrant.get(grantId) ?? []) s.updateExpiry(expiresAt);
  }

  /** Stops listening, ends every session cleanly, and stores every audit event. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    const server = this.#server;
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    await Promise.all([...this.#all].map((s) => s.cut('shutdown')));
    for (const s of this.#sockets) s.destroy();
    await closed;
    await this.#parser.close();
    this.#refusals.flush();
    await this.#audit.drain();
  }

  /** The parser thread the guardrails use (tests hold it to make a check slow). */
  get parser(): ParsePool {
    return this.#parser;
  }

  readonly #loggingIn = new Map<string, number>();

  #onConnection(socket: Socket): void {
    const ctx = this.#ctx;
    if (!ctx || this.#closing) {
      socket.destroy();
      return;
    }
    const address = addressKey(socket.remoteAddress ?? '?');
    const pending = this.#loggingIn.get(address) ?? 0;
    if (pending >= (this.#opts.maxLoginsPerAddress ?? 64)) {
      // Counted, not audited one by one: a flood of these would flood the audit log too.
      this.#refusals.counted(address, 'too_many_logins');
      socket.on('error', () => {});
      // Closed as soon as the answer is out: a socket kept until its peer closes holds a connection
      // slot, and a peer that never does kept the gateway full (a review held every slot from one
      // address at about 1,000 connections a second).
      socket.end(errorResponse({ severity: 'FATAL', code: '53300', message: 'hallpass: too many connections from your address are still logging in; try again shortly' }), () => socket.destroy());
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    this.#loggingIn.set(address, pending + 1);
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    const session = new ClientSession(socket, ctx);
    this.#all.add(session);
    void session.done.then(() => this.#all.delete(session));
    void session.run().finally(() => {
      const n = (this.#loggingIn.get(address) ?? 1) - 1;
      if (n > 0) this.#loggingIn.set(address, n);
      else this.#loggingIn.delete(address);
    });
  }

  #attach(s: ClientSession): void {
    const id = s.grantId;
    if (id === undefined) return;
    let set = this.#byGrant.get(id);
    if (!set) this.#byGrant.set(id, (set = new Set()));
    set.add(s);
    const ended = this.#ended.get(id);
    if (ended) void s.cut(ended);
  }

  #detach(s: ClientSession): void {
    const id = s.grantId;
    if (id === undefined) return;
    const set = this.#byGrant.get(id);
    set?.delete(s);
    if (set?.size === 0) this.#byGrant.delete(id);
  }
}
