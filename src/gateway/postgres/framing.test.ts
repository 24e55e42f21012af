import { describe, expect, it } from 'vitest';
import { Framer } from './framing.js';
import { ProtocolError } from './messages.js';
import * as ser from './serializer.js';

const backendStream = (): Buffer =>
  Buffer.concat([
    ser.authenticationOk(),
    ser.parameterStatus('client_encoding', 'UTF8'),
    ser.backendKeyData(1234, 5678),
    ser.errorResponse({ severity: 'ERROR', code: '42501', message: 'no' }),
    ser.readyForQuery('I'),
  ]);
const frontendStream = (): Buffer =>
  Buffer.concat([
    ser.query('select 1'),
    ser.parse('s1', 'select $1'),
    ser.query(''),
    Buffer.from([0x53, 0, 0, 0, 4]), // Sync: a header-only message
    ser.terminate(),
  ]);

function collect(framer: Framer, chunks: Buffer[]): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  for (const c of chunks) framer.push(c, (t, f) => out.push([t, f.toString('hex')]));
  return out;
}

describe('Framer', () => {
  for (const [name, make] of [
    ['backend', backendStream],
    ['frontend', frontendStream],
  ] as const) {
    it(`yields the same ${name} messages however the stream is split in two`, () => {
      const all = make();
      const expected = collect(new Framer(1 << 20), [all]);
      expect(expected.length).toBe(5);
      for (let i = 0; i <= all.length; i++) {
        expect(collect(new Framer(1 << 20), [all.subarray(0, i), all.subarray(i)])).toEqual(expected);
      }
    });

    it(`yields the same ${name} messages when split at every two offsets and fed byte by byte`, () => {
      const all = make();
      const expected = collect(new Framer(1 << 20), [all]);
      for (let i = 0; i <= all.length; i++) {
        for (let j = i; j <= all.length; j++) {
          const chunks = [all.subarray(0, i), all.subarray(i, j), all.subarray(j)];
          expect(collect(new Framer(1 << 20), chunks)).toEqual(expected);
        }
      }
      const bytes = [...all].map((b) => Buffer.from([b]));
      expect(collect(new Framer(1 << 20), bytes)).toEqual(expected);
    });
  }

  it('frames startup packets and switches to typed messages mid-chunk', () => {
    const startup = ser.startupMessage(new Map([['user', 'u'], ['database', 'd']]));
    const password = ser.passwordMessage('tok');
    const all = Buffer.concat([startup, password]);
    for (let i = 0; i <= all.length; i++) {
      const f = new Framer(10_000, true);
      const out: number[] = [];
      for (const c of [all.subarray(0, i), all.subarray(i)]) {
        f.push(c, (t) => {
          out.push(t);
          f.startup = false;
        });
      }
      expect(out).toEqual([0, 0x70]);
    }
  });

  it('refuses a declared length over the maximum before buffering the body', () => {
    const f = new Framer(1024);
    const header = Buffer.from([0x51, 0, 0x10, 0, 0]);
    expect(() => f.push(header, () => {})).toThrow(ProtocolError);
    expect(f.buffered).toBe(0);
  });

  it('refuses lengths smaller than the header', () => {
    expect(() => new Framer(1024).push(Buffer.from([0x51, 0, 0, 0, 3]), () => {})).toThrow(/invalid message length/);
    expect(() => new Framer(1024, true).push(Buffer.from([0, 0, 0, 2]), () => {})).toThrow(/invalid startup/);
  });

  it('hands out views of the chunk for whole messages (no copy)', () => {
    const all = frontendStream();
    const frames: Buffer[] = [];
    new Framer(1 << 20).push(all, (_t, f) => frames.push(f));
    expect(frames.every((f) => f.buffer === all.buffer)).toBe(true);
  });
});
