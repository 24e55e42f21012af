import { describe, expect, it } from 'vitest';
import { formatPolicyError } from './errors.js';
import { loadPolicy } from './loader.js';
import { checkLabelKey, checkName, checkReason, checkTicket, MAX_REASON_LENGTH } from './names.js';
import { MAX_POLICY_BYTES } from './source.js';
import { testKinds } from './test-kinds.js';

function errors(text: string): string[] {
  const result = loadPolicy(text, { file: 'evil.yaml', kinds: testKinds });
  if (result.ok) throw new Error('expected the policy to be refused');
  return result.errors.map(formatPolicyError);
}

const RESOURCE = [
  'resources:',
  '  - name: db',
  '    kind: postgres',
  '    connection: { host: h, port: 1, database: d, admin: { user: u, password: { env: P } } }',
  '    roles: { read: { privileges: { memberOf: [] } } }',
].join('\n');

describe('hostile policy files', () => {
  it('refuses a "billion laughs" alias bomb instead of expanding it', () => {
    const bomb = [
      'a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]',
      'e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]',
      'f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]',
      'rules: [*f, *f, *f, *f, *f, *f, *f, *f, *f]',
    ].join('\n');
    const [e, ...rest] = errors(bomb);
    expect(rest).toEqual([]);
    expect(e).toMatch(/^evil\.yaml:1: refused: .*alias/i);
  });

  it('still allows a few aliases for reuse', () => {
    const text = `${RESOURCE}\ngroups: [{ name: sre }]\nrules:\n  - name: r\n    who: { groups: &g [sre] }\n    resources: { names: [db] }\n    roles: [read]\n    duration: { max: 5m }\n    approval: { approvals: 1, from: *g }\n`;
    expect(loadPolicy(text, { file: 'ok.yaml', kinds: testKinds }).ok).toBe(true);
  });

  it('refuses files over 1 MiB before parsing them', () => {
    const huge = `# ${'x'.repeat(MAX_POLICY_BYTES)}\n${RESOURCE}\nrules: []\n`;
    expect(errors(huge)).toEqual([`evil.yaml:1: file is ${Buffer.byteLength(huge)} bytes; the limit is ${MAX_POLICY_BYTES}`]);
  });

  it('refuses names with quotes, semicolons and spaces', () => {
    const text = RESOURCE.replace('name: db', `name: "db'; DROP ROLE x; --"`).replace('read:', '"re ad":');
    expect(errors(`${text}\nrules: []`)).toEqual([
      `evil.yaml:2: resources[0].name: "db'; DROP ROLE x; --" is not a valid name (a lowercase letter, then up to 62 of a-z 0-9 _ -)`,
      'evil.yaml:5: resources[0].roles["re ad"]: role "re ad" is not a valid name (a lowercase letter, then up to 62 of a-z 0-9 _ -)',
    ]);
  });

  it('refuses a __proto__ label key rather than touching prototypes', () => {
    const text = RESOURCE.replace('kind: postgres', 'kind: postgres\n    labels: { __proto__: { polluted: yes } }');
    expect(errors(`${text}\nrules: []`)).toEqual(['evil.yaml:4: resources[0].labels.__proto__: expected a string, got a mapping']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('refuses control characters in error output by quoting them', () => {
    const text = RESOURCE.replace('name: db', 'name: "db\\u001b[31m"');
    const [e] = errors(`${text}\nrules: []`);
    expect(e).toContain('\\u001b[31m');
    expect(e).not.toContain('\u001b');
  });

  it('refuses custom YAML tags instead of constructing anything', () => {
    expect(errors("resources: []\nrules: !!js/function 'function(){ return 1 }'\n")).toEqual([
      'evil.yaml:2: invalid YAML: Unresolved tag: tag:yaml.org,2002:js/function',
    ]);
  });

  it('refuses a document that is not a mapping', () => {
    expect(errors('- just\n- a list\n')).toEqual(['evil.yaml:1: a policy file is a mapping with resources: and rules:']);
  });

  it('refuses an unknown time zone in a condition at load', () => {
    const text = `${RESOURCE}\ngroups: [{ name: sre }]\nrules:\n  - name: r\n    who: { groups: [sre] }\n    resources: { names: [db] }\n    roles: [read]\n    duration: { max: 5m }\n    approval: auto\n    when: 'now.getHours("UTC") > 1 && [1].all(x, now.getDayOfWeek("Mars/Olympus") > x)'\n`;
    expect(errors(text)).toEqual(['evil.yaml:14: rules[0].when: unknown time zone "Mars/Olympus"']);
  });

  it('bounds conditions in size and nesting', () => {
    const deep = `${'('.repeat(100)}true${')'.repeat(100)}`;
    const text = `${RESOURCE}\ngroups: [{ name: sre }]\nrules:\n  - name: r\n    who: { groups: [sre] }\n    resources: { names: [db] }\n    roles: [read]\n    duration: { max: 5m }\n    approval: auto\n    when: '${deep}'\n`;
    const [e] = errors(text);
    expect(e).toBe("evil.yaml:14: rules[0].when: does not compile: Exceeded maxDepth (32)");
  });
});

describe('names and free-text validators', () => {
  it('accepts ordinary names and refuses anything else', () => {
    for (const ok of ['orders-db', 'read', 'a', 'sre_oncall', `a${'b'.repeat(62)}`]) expect(checkName(ok)).toBeUndefined();
    for (const bad of ['', 'Orders', '1db', 'db;', "db'", 'db"', 'a b', 'db/x', '../x', `a${'b'.repeat(63)}`, 'é']) {
      expect(checkName(bad)).toBeDefined();
    }
  });

  it('bounds reasons and refuses control and bidi characters', () => {
    expect(checkReason('investigating INC-7: orders stuck')).toBeUndefined();
    expect(checkReason('x'.repeat(MAX_REASON_LENGTH + 1))).toBe('reason is longer than 1000 characters');
    expect(checkReason('line\nbreak')).toBe('reason contains control characters');
    expect(checkReason('evil\u202etxt.exe')).toBe('reason contains control characters');
    expect(checkReason('   ')).toBe('reason is empty');
  });

  it('bounds tickets', () => {
    expect(checkTicket('OPS-123')).toBeUndefined();
    expect(checkTicket('x'.repeat(101))).toBe('ticket is longer than 100 characters');
    expect(checkTicket('OPS 123')).toBe('ticket must be printable ASCII without spaces');
  });

  it('checks label keys', () => {
    expect(checkLabelKey('app.kubernetes.io/name')).toBeUndefined();
    expect(checkLabelKey('__proto__')).toBeDefined();
  });
});

describe('hostile volumes', () => {
  it('summarises after 100 errors instead of listing thousands', () => {
    const text = `resources: []\nrules: []\n${Array.from({ length: 300 }, (_, i) => `k${i}: v`).join('\n')}\n`;
    const errs = errors(text);
    expect(errs).toHaveLength(101);
    expect(errs[100]).toBe('evil.yaml:103: ... and 200 more');
  });
});
