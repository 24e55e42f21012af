import type { Socket } from 'node:net';
import type { Framer } from './framing.js';
import { FrontendCode } from './messages.js';
import * as ser from './serializer.js';

/** How a relay ended, seen from the relay (the session adds cut-offs and shutdowns). */
export type RelayEnd =
  | { readonly kind: 'client_terminate' }
  | { readonly kind: 'client_closed' }
  | { readonly kind: 'upstream_closed' }
  | { readonly kind: 'protocol_error'; readonly side: 'client' | 'upstream'; readonly message: string };

export interface RelayHooks {
  /** Client -> target message; returns the bytes to forward. */
  fromClient(type: number, frame: Buffer): Buffer;
  /** Target -> client message; returns the bytes to forward. */
  fromServer(type: number, frame: Buffer): Buffer;
  /** Client messages held back earlier and now due upstream (asked after each chunk from the target). */
  takeForUpstream?(): Buffer[];
  /** Called before each chunk is relayed; false stops the relay (the grant just ended). */
  mayRelay(): boolean;
  /** After each client chunk: a promise means "read no more from the client until it settles". */
  throttle(): Promise<void> | undefined;
  /**
   * Client messages taken (fromClient) but not yet forwarded (waiting for a statement's check, or
   * behind a COPY the client ended): a promise that settles once they went on. The client's Terminate
   * or close ends the relay only then, so that what it sent before still reaches the target.
   */
  unsent?(): Promise<void> | undefined;
  /**
   * The target owes an answer to a request in flight: it will send more by itself (not so inside
   * a COPY waiting for the client's data). After the client's FIN or Terminate, see #onClientEnd
   * and #afterTerminate.
   */
  busy?(): boolean;
  /** The target ended the session itself (sent a FATAL). */
  targetEnded?(): boolean;
  /**
   * A message the client may get at any time and ignore (a ParameterStatus repeating a value that
   * never changes), written to probe a client that sent its FIN while something runs.
   */
  readonly probe?: Buffer;
  onEnd(end: RelayEnd): void;
}

/**
 * Moves whole messages between a client and its target. Each direction is framed so that only
 * whole messages are ever forwarded (a cut-off can always inject a clean FATAL), consecutive
 * messages of a chunk go out in one write, and a slow reader pauses its peer (backpressure), so
 * memory per session stays bounded by the socket buffers plus one message.
 */
export class Relay {
  bytesFromClient = 0;
  bytesToClient = 0;
  #stopped = false;

  constructor(
    readonly client: Socket,
    readonly upstream: Socket,
    readonly clientFramer: Framer,
    readonly upstreamFramer: Framer,
    readonly hooks: RelayHooks,
  ) {}

  /** Starts relaying; `early` are whole client messages already read during login. */
  start(early: ReadonlyArray<readonly [number, Buffer]>): void {
    const c = this.client;
    const u = this.upstream;
    c.on('data', this.#onClientData);
    u.on('data', this.#onUpstreamData);
    c.on('end', this.#onClientEnd);
    c.on('close', this.#onClientClose);
    u.on('close', this.#onUpstreamClose);
    c.on('error', noop);
    u.on('error', noop);
    this.#resume(u);
    if (early.length > 0) {
      try {
        for (const [t, f] of early) this.#clientFrame(t, f);
      } catch (e) {
        this.#write(u, c, this.#toUpstream.take());
        return this.#end({ kind: 'protocol_error', side: 'client', message: e instanceof Error ? e.message : String(e) });
      }
      this.#write(u, c, this.#toUpstream.take());
      // A Terminate pipelined with the login: what came before it goes on, then the session ends.
      if (this.#terminated) return this.#afterTerminate();
    }
    // A FIN the login already read (review: the session and its backend stayed until the grant's end).
    if (c.readableEnded) this.#onClientEnd();
    const wait = this.hooks.throttle();
    if (wait) this.#pauseClientFor(wait);
    else this.#resume(c);
  }

  /** Sends the client messages due upstream now (takeForUpstream), unless the relay ended or the grant did. */
  sendDue(): void {
    if (this.#stopped || !this.hooks.mayRelay()) return;
    const due = this.hooks.takeForUpstream?.();
    if (due !== undefined && due.length > 0) this.#write(this.upstream, this.client, due);
  }

  /** The client sent its Terminate: nothing after it is read. */
  get terminated(): boolean {
    return this.#terminated;
  }

  /** Ends the relay over a message from the client that breaks the protocol (found after it was taken). */
  failClient(message: string): void {
    this.#end({ kind: 'protocol_error', side: 'client', message });
  }

  /** Stops relaying in both directions; the sockets stay open for the caller to finish. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.client.off('data', this.#onClientData);
    this.upstream.off('data', this.#onUpstreamData);
    this.client.off('end', this.#onClientEnd);
    clearInterval(this.#probing);
    this.client.off('close', this.#onClientClose);
    this.upstream.off('close', this.#onUpstreamClose);
  }

  #terminated = false;
  readonly #toUpstream = new Outbox();
  readonly #toClient = new Outbox();
  readonly #clientFrame = (type: number, frame: Buffer): void => {
    if (this.#terminated) return;
    this.#toUpstream.add(this.hooks.fromClient(type, frame));
    // Once taken: a Terminate the tracker refused (a queue over its bound) is still a protocol error.
    if (type === FrontendCode.Terminate) this.#terminated = true;
  };
  readonly #serverFrame = (type: number, frame: Buffer): void => {
    this.#toClient.add(this.hooks.fromServer(type, frame));
  };

  readonly #onClientData = (chunk: Buffer): void => {
    if (this.#stopped || !this.hooks.mayRelay()) return;
    this.bytesFromClient += chunk.length;
    try {
      this.clientFramer.push(chunk, this.#clientFrame);
    } catch (e) {
      this.#write(this.upstream, this.client, this.#toUpstream.take());
      // PostgreSQL reads nothing after a Terminate: bytes there that do not frame change nothing
      // (review: they ended the session as a protocol error, and the cut stopped its last statement).
      if (this.#terminated) return this.#afterTerminate();
      return this.#end({ kind: 'protocol_error', side: 'client', message: e instanceof Error ? e.message : String(e) });
    }
    this.#write(this.upstream, this.client, this.#toUpstream.take());
    if (this.#terminated) return this.#afterTerminate();
    const wait = this.hooks.throttle();
    if (wait) this.#pauseClientFor(wait);
  };

  /**
   * Reads no more from the client until `wait` settles, and then until throttle() has nothing more
   * to wait for (a check's replay may start the next statement's check: resuming at once would let
   * a chunk in per statement, and a long pipeline would pile up behind the checks).
   */
  #pauseClientFor(wait: Promise<void>): void {
    this.#clientHeld = true;
    this.client.pause();
    void wait.then(() => {
      if (this.#stopped) return;
      const again = this.hooks.throttle();
      if (again) return this.#pauseClientFor(again);
      this.#clientHeld = false;
      this.#resume(this.client);
    });
  }

  /** The client is not read: a throttle() wait, or its Terminate or close waits for unsent messages. */
  #clientHeld = false;
  /** Sockets whose write buffer is full: the other side is not read until they drain. */
  readonly #full = new Set<Socket>();

  /** Reads from `s` again, unless something still holds it back (every resume goes through here). */
  #resume(s: Socket): void {
    if (this.#stopped) return;
    if (s === this.client ? this.#clientHeld || this.#full.has(this.upstream) : this.#full.has(this.client)) return;
    s.resume();
  }

  readonly #onUpstreamData = (chunk: Buffer): void => {
    if (this.#stopped || !this.hooks.mayRelay()) return;
    try {
      this.upstreamFramer.push(chunk, this.#serverFrame);
    } catch (e) {
      this.#write(this.client, this.upstream, this.#toClient.take());
      return this.#end({ kind: 'protocol_error', side: 'upstream', message: e instanceof Error ? e.message : String(e) });
    }
    this.#write(this.client, this.upstream, this.#toClient.take());
    const due = this.hooks.takeForUpstream?.();
    if (due !== undefined && due.length > 0) this.#write(this.upstream, this.client, due);
    if (this.#draining) this.#endIfAnswered();
  };

  readonly #onClientClose = (): void => {
    // Nobody reads the answers any more: read the target again (what it still sends is dropped), so
    // that messages waiting for its answers (behind a COPY) go on and the wait below ends (review:
    // a client that had stopped reading and then left hung its session, and its backend, in ClientWrite).
    if (this.#full.delete(this.client)) this.#resume(this.upstream);
    // After its Terminate the client may go: what it sent still runs to its end (#afterTerminate).
    if (this.#terminated) return;
    this.#endAfterUnsent({ kind: 'client_closed' });
  };

  /**
   * The target closed. After the client's Terminate or FIN that is the client's doing, unless the
   * target ended the session itself with a FATAL (an admin's pg_terminate_backend; before, after a
   * half-close any close was recorded as the client's).
   */
  readonly #onUpstreamClose = (): void => {
    const kind = this.hooks.targetEnded?.() === true ? 'upstream_closed' : this.#terminated ? 'client_terminate' : this.#clientEnded ? 'client_closed' : 'upstream_closed';
    this.#end({ kind });
  };

  /**
   * The client's Terminate. What it sent before it goes on (unsent), and then, as on a direct
   * connection, the target runs it to its end and closes: the relay passes the answers on (to a
   * client still reading; dropped once it is gone) until the target owes none, and a cut-off at
   * the grant's end still stops it. Ending at once, as before, closed the target's connection
   * 500 ms later, and its connection check stopped a statement still running: `insert …; select
   * pg_sleep(2)` sent with a Terminate was rolled back where a direct connection commits it (review).
   * Nothing waits on a COPY the client never ended (busy() is false then): it ends now, and the
   * target, reading the Terminate inside the COPY, rolls it back as PostgreSQL would.
   */
  #draining = false;
  #afterTerminate(): void {
    if (this.#stopped) return;
    this.#clientHeld = true;
    this.client.pause();
    const unsent = this.hooks.unsent?.();
    if (unsent !== undefined) {
      void unsent.then(() => this.#afterTerminate());
      return;
    }
    this.#draining = true;
    this.#endIfAnswered();
  }

  #endIfAnswered(): void {
    if (!(this.hooks.busy?.() ?? false)) this.#end({ kind: 'client_terminate' });
  }

  /**
   * The client sends nothing more (its FIN), but may still read: a client that half-closes gets the
   * answers to what it sent, as from PostgreSQL. Once that has gone on, the target gets a
   * Terminate; it answers everything before it, then closes, and the relay ends as client_closed.
   * A client that closed altogether looks the same until a write to it fails, and a long statement
   * writes nothing: so while something runs the client is probed every second (`probe`). A gone
   * client answers the probe with a reset, the next write fails, its socket closes, and the cut
   * path closes the target's connection, whose connection check stops the statement (review: a
   * killed client's pg_sleep ran to its end). Not a FIN to the target at the client's FIN: the
   * connection check would stop a half-closed client's statements after a second (review: a
   * 20 MB answer was cut at 8.7 MB).
   */
  #clientEnded = false;
  #probing: NodeJS.Timeout | undefined;
  readonly #onClientEnd = (): void => {
    if (this.#stopped || this.#terminated) return;
    this.#clientEnded = true;
    this.#terminateUpstreamAfterUnsent();
    const probe = this.hooks.probe;
    if (probe === undefined || this.#probing !== undefined) return;
    this.#probing = setInterval(() => {
      if (this.#stopped || this.client.destroyed) return clearInterval(this.#probing);
      if (this.hooks.busy?.() === true && this.hooks.mayRelay()) this.client.write(probe);
    }, 1000);
    this.#probing.unref();
  };

  #terminateUpstreamAfterUnsent(): void {
    if (this.#stopped || !this.hooks.mayRelay()) return;
    const unsent = this.hooks.unsent?.();
    if (unsent !== undefined) {
      void unsent.then(() => this.#terminateUpstreamAfterUnsent());
      return;
    }
    this.#write(this.upstream, this.client, [TERMINATE]);
  }

  /** Ends once what the client sent before its Terminate or close has gone on (unsent). */
  #endAfterUnsent(end: RelayEnd): void {
    const unsent = this.hooks.unsent?.();
    if (unsent === undefined) return this.#end(end);
    this.#clientHeld = true;
    this.client.pause();
    void unsent.then(() => this.#endAfterUnsent(end));
  }

  #end(end: RelayEnd): void {
    if (this.#stopped) return;
    this.stop();
    this.hooks.onEnd(end);
  }

  /**
   * Writes `out` to `to`; if `to` is full, pauses `from` until it drains, however `from` came to be
   * paused already (a check's messages go upstream while the client is held for the next check).
   */
  #write(to: Socket, from: Socket, out: Buffer[]): void {
    if (out.length === 0 || to.destroyed) return;
    let n = 0;
    for (const b of out) n += b.length;
    if (to === this.client) this.bytesToClient += n;
    if (out.length === 1) to.write(out[0] as Buffer);
    else {
      to.cork();
      for (const b of out) to.write(b);
      to.uncork();
    }
    if (to.writableNeedDrain && !this.#full.has(to)) {
      this.#full.add(to);
      from.pause();
      to.once('drain', () => {
        this.#full.delete(to);
        this.#resume(from);
      });
    }
  }
}

/**
 * The messages of one chunk on their way out. Messages that directly follow each other in memory
 * (whole messages of the same chunk, forwarded unchanged) become one view: one write, one
 * allocation per chunk rather than per message.
 */
class Outbox {
  #parts: Buffer[] = [];
  #run: Buffer | undefined;
  #runEnd = 0;
  #runStart = 0;

  add(b: Buffer): void {
    if (b.length === 0) return; // a message held back (or dropped) by the hook
    if (this.#run !== undefined && b.buffer === this.#run.buffer && b.byteOffset === this.#runEnd) {
      this.#runEnd += b.length;
      return;
    }
    this.#close();
    this.#run = b;
    this.#runStart = b.byteOffset;
    this.#runEnd = b.byteOffset + b.length;
  }

  /** Everything added since the last take(), as few buffers as possible. */
  take(): Buffer[] {
    this.#close();
    const parts = this.#parts;
    this.#parts = [];
    return parts;
  }

  #close(): void {
    const r = this.#run;
    if (r === undefined) return;
    this.#parts.push(r.byteOffset === this.#runStart && r.length === this.#runEnd - this.#runStart ? r : Buffer.from(r.buffer, this.#runStart, this.#runEnd - this.#runStart));
    this.#run = undefined;
  }
}

const noop = (): void => {};
const TERMINATE = ser.terminate();
