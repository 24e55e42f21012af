import { ProtocolError } from './messages.js';

/** Called for every complete message: its type byte (0 for startup packets) and its raw bytes. */
export type FrameHandler = (type: number, frame: Buffer) => void;

/**
 * Incremental message framing for one direction of one connection.
 *
 * Typed messages are `type(1) length(4, includes itself) body`; startup-phase packets have no
 * type byte. Chunks may split a message anywhere: the incomplete tail is carried over and the
 * message is handed on once whole. A frame that lies inside one chunk is a view of it (no copy);
 * only a frame spanning chunks is copied once. The declared length is checked against `max`
 * as soon as the header is known, so a hostile length never makes us buffer more than `max`.
 */
export class Framer {
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Total length of the frame being assembled across chunks (header included), 0 if unknown. */
  #need = 0;

  constructor(
    /** Largest accepted message, header included. */
    public maxLength: number,
    /** true while the peer is in the startup phase (untyped packets). */
    public startup = false,
  ) {}

  /** Bytes held back waiting for the rest of a message. */
  get buffered(): number {
    return this.#pendingBytes;
  }

  /**
   * Feeds one chunk; calls `onFrame` for each complete message in order. Throws ProtocolError on
   * a bad length. `onFrame` may flip `startup` (e.g. after the startup message) and it applies to
   * the next message.
   */
  push(chunk: Buffer, onFrame: FrameHandler): void {
    let buf = chunk;
    if (this.#pendingBytes > 0) {
      const headerLen = this.startup ? 4 : 5;
      if (this.#need === 0) {
        // Still missing part of a header: join just enough to read it.
        const take = Math.min(headerLen - this.#pendingBytes, chunk.length);
        this.#pending.push(chunk.subarray(0, take));
        this.#pendingBytes += take;
        chunk = chunk.subarray(take);
        if (this.#pendingBytes < headerLen) return;
        const header = Buffer.concat(this.#pending, this.#pendingBytes);
        this.#pending = [header];
        this.#need = this.#frameLength(header, 0);
      }
      const want = this.#need - this.#pendingBytes;
      if (chunk.length < want) {
        if (chunk.length > 0) {
          this.#pending.push(chunk);
          this.#pendingBytes += chunk.length;
        }
        return;
      }
      this.#pending.push(chunk.subarray(0, want));
      const frame = Buffer.concat(this.#pending, this.#need);
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#need = 0;
      onFrame(this.startup ? 0 : (frame[0] ?? 0), frame);
      buf = chunk.subarray(want);
    }
    let off = 0;
    const len = buf.length;
    for (;;) {
      const headerLen = this.startup ? 4 : 5;
      if (len - off < headerLen) break;
      const total = this.#frameLength(buf, off);
      if (len - off < total) {
        this.#need = total;
        break;
      }
      const type = this.startup ? 0 : (buf[off] ?? 0);
      const frame = buf.subarray(off, off + total);
      off += total;
      onFrame(type, frame);
    }
    if (off < len) {
      const rest = buf.subarray(off);
      this.#pending = [rest];
      this.#pendingBytes = rest.length;
    }
  }

  #frameLength(buf: Buffer, off: number): number {
    if (this.startup) {
      const n = buf.readInt32BE(off);
      if (n < 8 || n > this.maxLength) throw new ProtocolError(`invalid startup packet length ${n}`);
      return n;
    }
    const n = buf.readInt32BE(off + 1);
    if (n < 4 || n + 1 > this.maxLength) {
      throw new ProtocolError(
        n < 4 ? `invalid message length ${n}` : `message of ${n + 1} bytes exceeds the limit of ${this.maxLength}`,
      );
    }
    return n + 1;
  }
}
