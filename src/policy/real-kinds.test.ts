import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { providerFactories } from '../providers/registry.js';
import { formatPolicyError } from './errors.js';
import { loadPolicy } from './loader.js';

const example = readFileSync(join(import.meta.dirname, '../../examples/policy.yaml'), 'utf8');

describe('policy against the real provider kinds', () => {
  it('accepts examples/policy.yaml', () => {
    const r = loadPolicy(example, { file: 'policy.yaml', kinds: providerFactories });
    expect(r.ok ? [] : r.errors.map(formatPolicyError)).toEqual([]);
  });

  // Regression: a misspelt guardrail used to load and then guard nothing.
  it('refuses a guardrail the gateway does not know, naming the line', () => {
    const text = example.replace('guardrails: [ddl, truncate]', 'guardrails: [ddl, update_without_where]');
    const r = loadPolicy(text, { file: 'policy.yaml', kinds: providerFactories });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const line = text.split('\n').findIndex((l) => l.includes('update_without_where')) + 1;
    expect(r.errors.map(formatPolicyError)).toContainEqual(expect.stringMatching(new RegExp(`^policy\\.yaml:${line}: .*guardrails.*unknown guardrail "update_without_where"`)));
  });
});
