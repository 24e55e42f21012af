import type { Socket } from 'node:net';
import type { Framer } from './framing.js';
import { ProtocolError } from './messages.js';

/** Bytes (whole messages and a partial one) a FrameQueue keeps before it stops reading the socket. */
const HIGH_WATER = 64 * 1024;
/**
 * What a queued message costs beyond its bytes (its entry and Buffer view), counted against
 * HIGH_WATER: 5-byte messages behind a password cost ~45 times their size (review).
 */
const MESSAGE_OVERHEAD = 128;

/**
 * Awaitable messages from a socket, for the short request/response phases (startup, login).
 * The relay phase does not use it: it handles frames straight from the data event.
 * It stops reading while more than HIGH_WATER bytes wait to be taken: a client pipelines its first
 * queries behind the password, and kept reading while the authority decides, a review pushed
 * 430 MiB into the gateway in 3 s.
 */
export class FrameQueue {
  readonly #queue: Array<[number, Buffer]> = [];
  #bytes = 0;
  #paused = false;
  #waiter: { resolve: (m: [number, Buffer]) => void; reject: (e: Error) => void } | undefined;
  #failure: Error | undefined;
  readonly #onData = (chunk: Buffer) => {
    try {
      this.framer.push(chunk, (t, f) => {
        this.#queue.push([t, f]);
        this.#bytes += f.length + MESSAGE_OVERHEAD;
        if (this.#limitAfterNext !== undefined) {
          this.framer.maxLength = this.#limitAfterNext;
          this.#limitAfterNext = undefined;
        }
      });
    } catch (e) {
      this.#fail(e instanceof Error ? e : new ProtocolError(String(e)));
    }
    if (this.#bytes + this.framer.buffered > HIGH_WATER && !this.#paused) {
      this.#paused = true;
      this.socket.pause();
    }
    this.#wake();
  };
  /** The peer's FIN (a client socket is half-open: 'close' would not come until we end too) or close. */
  readonly #onClose = () => this.#fail(new ClosedError(this.closedMessage));
  readonly #onError = (e: Error) => this.#fail(e);

  constructor(
    readonly socket: Socket,
    readonly framer: Framer,
    readonly closedMessage = 'connection closed',
  ) {
    socket.on('data', this.#onData);
    socket.on('end', this.#onClose);
    socket.on('close', this.#onClose);
    socket.on('error', this.#onError);
  }

  #limitAfterNext: number | undefined;
  /**
   * Frames after the next whole message with `maxLength` (it applies within the chunk that carries
   * that message: a client pipelines its first queries behind its password, in one write).
   */
  limitAfterNext(maxLength: number): void {
    this.#limitAfterNext = maxLength;
  }

  /** Why the queue stopped (a framing error, the peer closing), if it did. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  next(): Promise<[number, Buffer]> {
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
      this.#wake();
    });
  }

  /** Stops listening; returns whole messages received but not yet taken (partial bytes stay in the framer). */
  detach(): Array<[number, Buffer]> {
    this.socket.off('data', this.#onData);
    this.socket.off('end', this.#onClose);
    this.socket.off('close', this.#onClose);
    this.socket.off('error', this.#onError);
    this.socket.pause();
    this.#bytes = 0;
    return this.#queue.splice(0);
  }

  #fail(e: Error): void {
    this.#failure ??= e;
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    if (!w) return;
    const m = this.#queue.shift();
    if (m) {
      this.#bytes -= m[1].length + MESSAGE_OVERHEAD;
      if (this.#paused && this.#bytes + this.framer.buffered <= HIGH_WATER) {
        this.#paused = false;
        this.socket.resume();
      }
      this.#waiter = undefined;
      w.resolve(m);
    } else if (this.#failure) {
      this.#waiter = undefined;
      w.reject(this.#failure);
    } else if (this.#paused) {
      // Someone waits for the rest of a message longer than HIGH_WATER (a target's long NOTICE at
      // login: the login hung, review): read on, the framer's maxLength bounds it.
      this.#paused = false;
      this.socket.resume();
    }
  }
}

/** The peer went away: not a fault worth reporting. */
export class ClosedError extends Error {
  override name = 'ClosedError';
}
