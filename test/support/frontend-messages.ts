/**
 * Frontend messages the gateway never originates (so serializer.ts has no builder for them), for
 * tests that drive the protocol by hand.
 */
export const typed = (type: string, body: Buffer): Buffer => {
  const out = Buffer.alloc(5 + body.length);
  out.write(type, 0, 'latin1');
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
};
export const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf8');
/** Bind with no parameters and no result formats. */
export const bind = (portal: string, statement: string): Buffer => typed('B', Buffer.concat([cstr(portal), cstr(statement), Buffer.from([0, 0, 0, 0, 0, 0])]));
export const execute = (portal: string): Buffer => typed('E', Buffer.concat([cstr(portal), Buffer.alloc(4)]));
export const closeStatement = (name: string): Buffer => typed('C', Buffer.concat([Buffer.from('S'), cstr(name)]));
export const sync = (): Buffer => typed('S', Buffer.alloc(0));
/** CopyData, CopyDone, CopyFail. */
export const copyData = (text: string): Buffer => typed('d', Buffer.from(text));
export const copyDone = (): Buffer => typed('c', Buffer.alloc(0));
export const copyFail = (why: string): Buffer => typed('f', cstr(why));
