import { describe, expect, it } from 'vitest';
import { csvField, csvRecord } from './csv.js';

describe('CSV (RFC 4180)', () => {
  it('leaves plain fields bare and renders null as empty', () => {
    expect(csvRecord(['a', 1, null, 'b c'])).toBe('a,1,,b c\r\n');
  });

  it('quotes fields with commas, quotes, CR or LF and doubles quotes', () => {
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('l1\nl2')).toBe('"l1\nl2"');
    expect(csvField('l1\r\nl2')).toBe('"l1\r\nl2"');
  });

  it('neutralises spreadsheet formulas with a leading apostrophe', () => {
    expect(csvField('=1+1')).toBe("'=1+1");
    expect(csvField('+1')).toBe("'+1");
    expect(csvField('-1')).toBe("'-1");
    expect(csvField('@SUM(A1)')).toBe("'@SUM(A1)");
    expect(csvField('\tx')).toBe("'\tx");
    expect(csvField('=HYPERLINK("http://x","y")')).toBe('"\'=HYPERLINK(""http://x"",""y"")"');
    expect(csvField('a=1')).toBe('a=1');
  });

  it('writes control characters as \\uXXXX text, so an export printed to a terminal cannot drive it (review 2026-12-02)', () => {
    expect(csvField('mallory\u001b[2K\u001b]0;owned\u0007\u009b')).toBe('mallory\\u001b[2K\\u001b]0;owned\\u0007\\u009b');
    expect(csvField('a\tb')).toBe('a\tb');
    expect(csvField('line\nbreak')).toBe('"line\nbreak"');
  });

  it('does not touch numbers', () => {
    expect(csvField(-5)).toBe('-5');
  });
});
