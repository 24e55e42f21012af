import { randomInt, timingSafeEqual } from 'node:crypto';

/**
 * The cancel keys the gateway hands to its clients (BackendKeyData). A client never learns the
 * target's key: a CancelRequest naming a gateway key is mapped to its session, which cancels
 * upstream with the target's key.
 */
export class CancelRegistry<S> {
  readonly #byPid = new Map<number, { secret: Buffer; session: S }>();

  /** A fresh random key for `session`. */
  register(session: S): { pid: number; secret: number } {
    let pid: number;
    do pid = randomInt(1, 0x7fffffff);
    while (this.#byPid.has(pid));
    const secret = randomInt(-0x80000000, 0x7fffffff);
    this.#byPid.set(pid, { secret: int32(secret), session });
    return { pid, secret };
  }

  unregister(pid: number): void {
    this.#byPid.delete(pid);
  }

  /** The session a CancelRequest names, if its secret matches (compared in constant time). */
  lookup(pid: number, secret: number): S | undefined {
    const e = this.#byPid.get(pid);
    if (!e) return undefined;
    return timingSafeEqual(e.secret, int32(secret)) ? e.session : undefined;
  }
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
}
