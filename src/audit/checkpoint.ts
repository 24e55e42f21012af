/** A head recorded earlier and kept elsewhere: the log must still hold this event, with this hash. */
export interface Checkpoint {
  readonly seq: number;
  readonly hash: string;
}

/** `SEQ:HASH` as `audit verify` prints a head; undefined when it is not one. No dependencies: the CLI checks its argument with it. */
export function parseCheckpoint(text: string): Checkpoint | undefined {
  const m = /^([1-9][0-9]{0,15}):([0-9a-f]{64})$/.exec(text);
  const seq = m ? Number(m[1]) : NaN;
  return m && Number.isSafeInteger(seq) ? { seq, hash: m[2] as string } : undefined;
}
