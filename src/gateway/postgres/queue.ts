import type { Socket } from 'node:net';
import type { Framer } from './framing.js';
import { ProtocolError } from './messages.js';

/**
 * Awaitable messages from a socket, for the short request/response phases (startup, login).
 * The relay phase does not use it: it handles frames straight from the data event.
 */
export class FrameQueue {
  readonly #queue: Array<[number, Buffer]> = [];
  #waiter: { resolve: (m: [number, Buffer]) => void; reject: (e: Error) => void } | undefined;
  #failure: Error | undefined;
  readonly #onData = (chunk: Buffer) => {
    try {
      this.framer.push(chunk, (t, f) => this.#queue.push([t, f]));
    } catch (e) {
      this.#fail(e instanceof Error ? e : new ProtocolError(String(e)));
    }
    this.#wake();
  };
  readonly #onClose = () => this.#fail(new ClosedError(this.closedMessage));
  readonly #onError = (e: Error) => this.#fail(e);

  constructor(
    readonly socket: Socket,
    readonly framer: Framer,
    readonly closedMessage = 'connection closed',
  ) {
    socket.on('data', this.#onData);
    socket.on('close', this.#onClose);
    socket.on('error', this.#onError);
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
    this.socket.off('close', this.#onClose);
    this.socket.off('error', this.#onError);
    this.socket.pause();
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
      this.#waiter = undefined;
      w.resolve(m);
    } else if (this.#failure) {
      this.#waiter = undefined;
      w.reject(this.#failure);
    }
  }
}

/** The peer went away: not a fault worth reporting. */
export class ClosedError extends Error {
  override name = 'ClosedError';
}
