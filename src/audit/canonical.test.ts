import { describe, expect, it } from 'vitest';
import { canonicalJSON } from './canonical.js';

describe('canonicalJSON', () => {
  it('sorts keys at every depth and drops whitespace', () => {
    expect(canonicalJSON({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 'x' } })).toBe('{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}');
  });

  it('is independent of insertion order', () => {
    expect(canonicalJSON({ x: 1, y: 2 })).toBe(canonicalJSON({ y: 2, x: 1 }));
  });

  it('follows JSON.stringify for strings, undefined, dates and null', () => {
    const v = { s: 'line\n"quoted"\u2028', u: undefined, arr: [undefined, null], d: new Date(0), n: null };
    expect(canonicalJSON(v)).toBe('{"arr":[null,null],"d":"1970-01-01T00:00:00.000Z","n":null,"s":"line\\n\\"quoted\\"\u2028"}');
    expect(JSON.parse(canonicalJSON(v))).toEqual(JSON.parse(JSON.stringify(v)));
  });

  it('refuses what JSON cannot carry faithfully', () => {
    expect(() => canonicalJSON({ n: Number.NaN })).toThrow('non-finite');
    expect(() => canonicalJSON({ n: 1n })).toThrow('bigint');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalJSON(cyclic)).toThrow('cyclic');
  });

  it('allows the same object twice when it is not a cycle', () => {
    const shared = { a: 1 };
    expect(canonicalJSON([shared, shared])).toBe('[{"a":1},{"a":1}]');
  });
});
