import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { AuditBatcher } from '../../audit/batcher.js';
import type { Clock } from '../../domain/clock.js';
import type { AuthorizedSession, GatewayAuditEvent } from '../authority.js';
import type { CancelRegistry } from './cancel.js';
import { Framer } from './framing.js';
import { lexingHazard, type GuardrailChecker } from './guardrails.js';
import { acceptClient, type LoginOptions } from './login.js';
import { Relay, type RelayEnd } from './relay.js';
import { ProtocolError, readParameterStatus } from './messages.js';
import { claimed, MAX_CLAIMED, type RefusalAudit } from './refusals.js';
import * as ser from './serializer.js';
import { forwardedSettings } from './settings.js';
import { StatementTracker } from './tracker.js';
import { cancelUpstream, resetUpstream, connectWithConnectionCheck, UpstreamError, type UpstreamConnection } from './upstream.js';

export interface SessionContext extends LoginOptions {
  readonly audit: AuditBatcher<GatewayAuditEvent>;
  /** Refused attempts that never logged in: audited one by one up to a budget, then counted. */
  readonly refusals: RefusalAudit;
  readonly cancelKeys: CancelRegistry<ClientSession>;
  readonly guardrails: GuardrailChecker;
  readonly clock: Clock;
  readonly upstreamConnectTimeoutMs: number;
  /** Startup, TLS, authentication and the upstream login must finish within this. */
  readonly loginTimeoutMs: number;
  attach(session: ClientSession): void;
  detach(session: ClientSession): void;
}

export type EndReason = 'expired' | 'revoked' | 'shutdown' | RelayEnd['kind'];

const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * One client connection: login, upstream login with the grant's credential, relay, and the end
 * (by the client, the target, or a cut-off at the grant's end). run() never throws.
 */
export class ClientSession {
  readonly id = `gws_${randomBytes(9).toString('base64url')}`;
  readonly clientAddress: string;
  auth: AuthorizedSession | undefined;
  #client: Socket;
  #tls = false;
  #upstream: UpstreamConnection | undefined;
  #relay: Relay | undefined;
  #tracker: StatementTracker | undefined;
  #key: { pid: number; secret: number } | undefined;
  #expiresMs = Infinity;
  #timer: NodeJS.Timeout | undefined;
  #ending = false;
  #pendingCut: 'expired' | 'revoked' | 'shutdown' | undefined;
  /** Calls off the upstream login when the grant ends (or the gateway stops) during it. */
  readonly #loginAbort = new AbortController();
  #startedAt = new Date(0);
  readonly #done: Promise<void>;
  #resolveDone!: () => void;

  constructor(
    readonly socket: Socket,
    readonly ctx: SessionContext,
  ) {
    this.#client = socket;
    this.clientAddress = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    this.#done = new Promise((r) => (this.#resolveDone = r));
    socket.on('error', noop);
    socket.setNoDelay(true);
  }

  /** Resolves once both connections are closed and the end is audited. */
  get done(): Promise<void> {
    return this.#done;
  }

  get grantId(): string | undefined {
    return this.auth?.grantId;
  }

  async run(): Promise<void> {
    const loginTimer = setTimeout(() => this.socket.destroy(), this.ctx.loginTimeoutMs);
    try {
      await this.#login();
    } catch (e) {
      // A malformed or abandoned login: answer if we still can, close this connection only.
      this.#stopTimer();
      if (this.auth) this.ctx.detach(this);
      this.#upstream?.socket.destroy();
      if (e instanceof ProtocolError) {
        this.ctx.refusals.refused(this.socket.remoteAddress ?? '?', {
          type: 'gateway.refused',
          actor: this.auth?.userName ?? '',
          ...(this.auth ? { grantId: this.auth.grantId } : {}),
          data: { code: 'protocol_error', message: e.message, clientAddress: this.clientAddress, tls: this.#tls },
          at: this.ctx.clock.now(),
        });
        if (this.#client.writable) this.#client.end(ser.errorResponse({ severity: 'FATAL', code: '08P01', message: `hallpass: ${e.message}` }));
      }
      await this.#closeSoon(this.#client);
      this.#resolveDone();
    } finally {
      clearTimeout(loginTimer);
    }
  }

  async #login(): Promise<void> {
    const ctx = this.ctx;
    const r = await acceptClient(this.socket, this.clientAddress, ctx, (secure) => {
      this.#client = secure;
      this.#tls = true;
    });
    if (r.kind === 'cancel') {
      this.socket.destroy();
      const target = ctx.cancelKeys.lookup(r.pid, r.secret);
      if (target) await target.cancelQuery();
      this.#resolveDone();
      return;
    }
    if (r.kind === 'refused') {
      ctx.refusals.refused(this.socket.remoteAddress ?? '?', {
        type: 'gateway.refused',
        actor: claimed(r.user),
        ...(r.grantId === undefined ? {} : { grantId: r.grantId }),
        // The message may quote the claimed database too (the core's wrong_resource).
        data: { code: r.code, message: claimed(r.message, 2 * MAX_CLAIMED), resource: claimed(r.resource), clientAddress: this.clientAddress, tls: r.tls },
        at: ctx.clock.now(),
      });
      await this.#closeSoon(this.socket);
      this.#resolveDone();
      return;
    }
    if (r.client.destroyed) {
      // Cut (shutdown) or gone while the authority was deciding.
      this.#resolveDone();
      return;
    }
    this.#client = r.client;
    this.#tls = r.tls;
    const auth = r.auth;
    this.auth = auth;
    this.#expiresMs = auth.expiresAt.getTime();
    ctx.attach(this);
    this.#armTimer();
    const params = forwardedSettings(r.startup);
    const requested = [...params].map(([k, v]) => `${k}=${v}`);
    if (auth.readOnly) params.set('default_transaction_read_only', 'on');
    // A checked session is read as UTF-8 (guardrails.ts, lexingHazard): without a client encoding
    // of the client's own it starts in UTF8, not in the database's encoding, and RESET goes back to it.
    if ((auth.guardrails.length > 0 || auth.readOnly) && !params.has('client_encoding')) params.set('client_encoding', 'UTF8');
    try {
      this.#upstream = await connectWithConnectionCheck(auth.upstream, params, ctx.upstreamConnectTimeoutMs, this.#loginAbort.signal);
    } catch (e) {
      if (this.#pendingCut) {
        await this.#refuseCut(r.client, this.#pendingCut);
        return;
      }
      const sqlstate = e instanceof UpstreamError && e.sqlstate ? e.sqlstate : '08006';
      this.#audit('gateway.refused', { code: 'upstream_failed', sqlstate, resource: auth.resource, clientAddress: this.clientAddress, tls: this.#tls });
      // The target's message may name the injected principal: the client gets a generic one.
      r.client.end(ser.errorResponse({ severity: 'FATAL', code: sqlstate, message: `hallpass: could not log in to ${auth.resource} (SQLSTATE ${sqlstate})` }));
      await this.#closeSoon(r.client);
      this.#stopTimer();
      ctx.detach(this);
      this.#resolveDone();
      return;
    }
    const upstream = this.#upstream;
    // The guardrails parse SQL as UTF-8 with standard conforming strings; a session the target
    // starts otherwise (a role or database default, a client encoding asked for at startup)
    // would read the same bytes as other statements than the guardrails checked.
    const hazard = auth.guardrails.length > 0 || auth.readOnly
      ? upstream.parameterStatus.map((f) => readParameterStatus(f)).map(({ name, value }) => lexingHazard(name, value)).find((h) => h !== undefined)
      : undefined;
    if (hazard !== undefined) {
      upstream.socket.end(ser.terminate());
      this.#audit('gateway.refused', { code: 'unsafe_settings', message: hazard, resource: auth.resource, clientAddress: this.clientAddress, tls: this.#tls });
      r.client.end(ser.errorResponse({ severity: 'FATAL', code: '22021', message: `hallpass: the gateway cannot check statements in this session: ${hazard}`, hint: 'Connect with client_encoding UTF8 (PGCLIENTENCODING=UTF8).' }));
      await this.#closeSoon(r.client);
      this.#stopTimer();
      ctx.detach(this);
      this.#resolveDone();
      return;
    }
    if (this.#pendingCut || ctx.clock.now().getTime() >= this.#expiresMs) {
      // The grant ended while we were logging in upstream (a cut calls the login off; this is one
      // that came as it finished).
      upstream.socket.end(ser.terminate());
      void this.#closeSoon(upstream.socket);
      await this.#refuseCut(r.client, this.#pendingCut ?? 'expired');
      return;
    }
    if (this.#client.destroyed) {
      // The client left while we were logging in upstream.
      upstream.socket.end(ser.terminate());
      this.#startedAt = ctx.clock.now();
      this.#relay = undefined;
      this.#finish('client_closed');
      return;
    }
    this.#key = ctx.cancelKeys.register(this);
    this.#client.cork();
    this.#client.write(ser.authenticationOk());
    for (const p of upstream.parameterStatus) this.#client.write(p);
    this.#client.write(ser.backendKeyData(this.#key.pid, this.#key.secret));
    this.#client.write(ser.readyForQuery('I'));
    this.#client.uncork();
    this.#startedAt = ctx.clock.now();
    this.#audit('gateway.session.start', {
      sessionId: this.id,
      resource: auth.resource,
      role: auth.role,
      clientAddress: this.clientAddress,
      tls: this.#tls,
      applicationName: params.get('application_name') ?? null,
      // What the client had the target set at login: a setting can be read back and run
      // (`EXECUTE current_setting('search_path')`), so it is on the record as sent.
      settings: requested,
      principal: auth.upstream.user,
      readOnly: auth.readOnly,
      guardrails: auth.guardrails,
    });
    const tracker = new StatementTracker(this.id, auth, ctx.guardrails, (type, data) => this.#audit(type, data), undefined, {
      mayRelay: () => this.#mayRelay(),
      released: () => this.#relay?.sendDue(),
      failed: (message) => this.#relay?.failClient(message),
    });
    this.#tracker = tracker;
    r.framer.maxLength = ctx.maxMessageBytes;
    upstream.socket.on('error', noop);
    this.#relay = new Relay(this.#client, upstream.socket, r.framer, new Framer(ctx.maxMessageBytes), {
      fromClient: (t, f) => tracker.fromClient(t, f),
      fromServer: (t, f) => tracker.fromServer(t, f),
      mayRelay: () => this.#mayRelay(),
      takeForUpstream: () => tracker.takeForUpstream(),
      unsent: () => tracker.checking() ?? tracker.unsentHeld(),
      busy: () => tracker.busy && !tracker.waitsForClient,
      targetEnded: () => tracker.targetEnded,
      // server_version never changes in a session: repeating it is a message every client accepts at any time.
      ...probeOf(upstream.parameterStatus),
      throttle: () => {
        const held = tracker.checking() ?? tracker.held();
        if (held) return held;
        if (ctx.audit.overloaded) return ctx.audit.whenRelieved();
        const wait = tracker.parseBackoffMs();
        return wait > 0 ? new Promise((resolve) => setTimeout(resolve, wait)) : undefined;
      },
      onEnd: (end) => this.#finish(end.kind, end.kind === 'protocol_error' ? end.message : undefined),
    });
    this.#relay.start(r.early);
    // Bytes behind the password that did not frame: a protocol error once what came before went on
    // (not after a Terminate: PostgreSQL reads nothing past it).
    if (r.failure && !this.#relay.terminated) this.#relay.failClient(r.failure.message);
  }

  /** Whether bytes may still pass: not once the grant has ended (the session is cut then). */
  #mayRelay(): boolean {
    if (this.#ending) return false;
    if (this.ctx.clock.now().getTime() < this.#expiresMs) return true;
    this.#finish('expired');
    return false;
  }

  /** Cuts the session now (grant ended, or the gateway is shutting down). Resolves when closed. */
  cut(reason: 'expired' | 'revoked' | 'shutdown'): Promise<void> {
    if (this.#relay) this.#finish(reason);
    else if (!this.auth) this.socket.destroy(); // not logged in yet: nothing to tell
    else this.#cutLogin(reason);
    return this.#done;
  }

  /**
   * The grant ended (or the gateway stops) while this session logs in upstream: the login is
   * called off at once and the client refused with the cut's FATAL (until a review on 2026-12-02
   * the cut waited for the target's answer, up to the 10 s connect timeout, and a slow target's
   * failure was then reported as the reason).
   */
  #cutLogin(reason: 'expired' | 'revoked' | 'shutdown'): void {
    this.#pendingCut ??= reason;
    this.#loginAbort.abort();
  }

  /**
   * Ends a session whose grant ended during its upstream login: it never started, so it is a
   * refusal (`expired`, `revoked` or `shutdown`) with the FATAL a cut sends.
   */
  async #refuseCut(client: Socket, cut: 'expired' | 'revoked' | 'shutdown'): Promise<void> {
    const auth = this.auth as AuthorizedSession;
    this.#ending = true;
    this.#stopTimer();
    const { reason, at } = this.#endedBy(cut);
    this.ctx.audit.add({
      type: 'gateway.refused', actor: auth.userName, grantId: auth.grantId,
      data: { code: reason, message: `the grant ended during the login: access ${reason === 'shutdown' ? 'refused, the gateway is shutting down' : reason}`, resource: auth.resource, clientAddress: this.clientAddress, tls: this.#tls },
      at,
    });
    const fatal = clientMessage(reason, auth.resource, undefined);
    if (fatal && client.writable) client.end(fatal);
    await this.#closeSoon(client);
    this.ctx.detach(this);
    this.#resolveDone();
  }

  /** When this session's grant ends, as this session knows it (epoch ms). */
  get expiresMs(): number {
    return this.#expiresMs;
  }

  /** The grant was extended (or shortened): re-arm this session's own timer. */
  updateExpiry(expiresAt: Date): void {
    if (expiresAt.getTime() === this.#expiresMs) return; // a resync re-reads unchanged ends
    this.#expiresMs = expiresAt.getTime();
    // While logging in upstream too: a grant shortened meanwhile must not be cut at its old end.
    if (this.auth && !this.#ending) this.#armTimer();
  }

  /** Ctrl-C: cancel the query running upstream (the client used the gateway's cancel key). */
  async cancelQuery(): Promise<void> {
    const u = this.#upstream;
    if (!u || !this.auth || this.#ending) return;
    this.#audit('gateway.cancel', { sessionId: this.id });
    await cancelUpstream(this.auth.upstream, u.pid, u.secret);
  }

  #armTimer(): void {
    this.#stopTimer();
    const delay = this.#expiresMs - this.ctx.clock.now().getTime();
    if (delay <= 0) {
      if (this.#relay) this.#finish('expired');
      else this.#cutLogin('expired');
      return;
    }
    this.#timer = setTimeout(() => this.#armTimer(), Math.min(delay, MAX_TIMER_MS));
    this.#timer.unref();
  }

  #stopTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Why and when a session (or a login) ended, as recorded. Whatever ends it at or after its
   * grant's end (the client closing, the target, a protocol error or a cut noticed before the
   * session's own timer fired), the grant's end ended it: no byte is relayed after it (mayRelay),
   * what still runs is cancelled as at a cut-off, and the record says `expired` at the grant's end
   * (a review saw `client_closed` stamped 8-12 ms late).
   */
  #endedBy<R extends EndReason>(ended: R): { reason: R | 'expired'; at: Date } {
    const now = this.ctx.clock.now();
    if (now.getTime() < this.#expiresMs) return { reason: ended, at: now };
    return { reason: 'expired', at: new Date(this.#expiresMs) };
  }

  #finish(ended: EndReason, detail?: string): void {
    if (this.#ending) return;
    this.#ending = true;
    const { reason, at: endedAt } = this.#endedBy(ended);
    this.#stopTimer();
    this.#relay?.stop();
    // A query still running upstream would outlive the session: it is cancelled below.
    const busy = this.#tracker?.busy ?? false;
    this.#tracker?.flush();
    if (this.#key) this.ctx.cancelKeys.unregister(this.#key.pid);
    const auth = this.auth as AuthorizedSession;
    const client = this.#client;
    const upstream = this.#upstream as UpstreamConnection;
    const fatal = clientMessage(reason, auth.resource, detail);
    if (fatal && client.writable) client.end(fatal);
    else client.end();
    const clientClosed = this.#closeSoon(client);
    // Cancel what still runs upstream, then log out.
    const upstreamClosed = (async () => {
      // A cut-off stops what still runs. After the client's Terminate the relay ended once the
      // target had answered everything (it closes on the Terminate). A client gone without one
      // does not cancel it either: the target finishes a statement that ends within about a second
      // (a pool closing mid-write); a longer one is stopped by its connection check once we have closed.
      if (busy && (reason === 'expired' || reason === 'revoked' || reason === 'shutdown' || reason === 'protocol_error')) {
        // The reset first: statements pipelined behind the running one must not run once the cancel
        // has stopped it. The cancel then stops the running one (a reset is noticed only at the
        // backend's next write or connection check). A pooler finds the session to cancel by its
        // client connection, so there the cancel goes first (a review saw pg_sleep(600) run on
        // behind PgBouncer after the reset); a few pipelined statements may run before the reset.
        if (upstream.connectionCheck === true) {
          resetUpstream(upstream);
          await cancelUpstream(auth.upstream, upstream.pid, upstream.secret, 1000);
        } else {
          await cancelUpstream(auth.upstream, upstream.pid, upstream.secret, 1000);
          resetUpstream(upstream);
        }
      }
      if (upstream.socket.writable) upstream.socket.end(ser.terminate());
      await this.#closeSoon(upstream.socket);
    })();
    this.ctx.audit.add({
      type: 'gateway.session.end',
      actor: auth.userName,
      grantId: auth.grantId,
      data: {
        sessionId: this.id,
        resource: auth.resource,
        reason,
        ...(detail !== undefined ? { detail } : {}),
        clientAddress: this.clientAddress,
        tls: this.#tls,
        startedAt: this.#startedAt.toISOString(),
        bytesFromClient: this.#relay?.bytesFromClient ?? 0,
        bytesToClient: this.#relay?.bytesToClient ?? 0,
      },
      at: endedAt,
    });
    this.ctx.detach(this);
    void Promise.all([clientClosed, upstreamClosed]).finally(() => this.#resolveDone());
  }

  /** Resolves when `s` has closed; destroys it if the peer does not close within 500 ms. */
  #closeSoon(s: Socket): Promise<void> {
    return new Promise((resolve) => {
      if (s.destroyed) return resolve();
      if (!s.writableEnded) s.end(); // a half-open client socket stays open until we end our side
      const t = setTimeout(() => s.destroy(), 500);
      s.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  #audit(type: string, data: Record<string, unknown>): void {
    const auth = this.auth as AuthorizedSession;
    this.ctx.audit.add({ type, actor: auth.userName, grantId: auth.grantId, data, at: this.ctx.clock.now() });
  }
}

function clientMessage(reason: EndReason, resource: string, detail: string | undefined): Buffer | undefined {
  switch (reason) {
    case 'expired':
    case 'revoked':
      return ser.errorResponse({ severity: 'FATAL', code: '57P01', message: `hallpass: access to ${resource} ${reason}` });
    case 'shutdown':
      return ser.errorResponse({ severity: 'FATAL', code: '57P01', message: 'hallpass: the gateway is shutting down' });
    case 'protocol_error':
      return ser.errorResponse({ severity: 'FATAL', code: '08P01', message: `hallpass: protocol violation: ${detail ?? ''}` });
    default:
      return undefined;
  }
}

const noop = (): void => {};

/** The target's server_version ParameterStatus, as the relay's probe of a client that sent its FIN. */
function probeOf(parameterStatus: readonly Buffer[]): { probe?: Buffer } {
  const frame = parameterStatus.find((f) => readParameterStatus(f).name === 'server_version');
  return frame === undefined ? {} : { probe: frame };
}
