import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatPolicyError } from './errors.js';
import { loadPolicy, loadPolicyFile, type KindSchemas } from './loader.js';
import { testKinds } from './test-kinds.js';

const EXAMPLE = new URL('../../examples/policy.yaml', import.meta.url);

// Line numbers below are the ones the assertions name.
const BASE = [
  /* 1 */ 'groups:',
  /* 2 */ '  - { name: engineers }',
  /* 3 */ '  - { name: sre }',
  /* 4 */ 'users:',
  /* 5 */ '  - { name: alice, groups: [engineers] }',
  /* 6 */ 'resources:',
  /* 7 */ '  - name: orders-db',
  /* 8 */ '    kind: postgres',
  /* 9 */ '    labels: { env: prod }',
  /* 10 */ '    connection: { host: db, port: 5432, database: orders, admin: { user: postgres, password: { env: PW } } }',
  /* 11 */ '    roles:',
  /* 12 */ '      read: { privileges: { memberOf: [pg_read_all_data] } }',
  /* 13 */ '      write: { privileges: { memberOf: [pg_write_all_data] } }',
  /* 14 */ 'rules:',
  /* 15 */ '  - name: engineers-read',
  /* 16 */ '    who: { groups: [engineers] }',
  /* 17 */ '    resources: { labels: { env: prod } }',
  /* 18 */ '    roles: [read]',
  /* 19 */ '    duration: { default: 5m, max: 1h }',
  /* 20 */ '    approval: auto',
  /* 21 */ '    reason: { required: false }',
].join('\n');

/** BASE with line `n` (1-based) replaced; extra lines may follow in `text`. */
function withLine(n: number, text: string): string {
  const lines = BASE.split('\n');
  lines[n - 1] = text;
  return lines.join('\n');
}

function errors(text: string): string[] {
  const result = loadPolicy(text, { file: 'policy.yaml', kinds: testKinds });
  if (result.ok) throw new Error('expected the policy to be refused');
  return result.errors.map(formatPolicyError);
}

describe('loadPolicy: happy path', () => {
  it('loads examples/policy.yaml into a validated Policy', () => {
    const text = readFileSync(EXAMPLE, 'utf8');
    const result = loadPolicy(text, { file: 'policy.yaml', kinds: testKinds });
    if (!result.ok) throw new Error(result.errors.map(formatPolicyError).join('\n'));
    const { policy } = result;
    expect(policy.version).toBe(createHash('sha256').update(text).digest('hex'));
    expect([...policy.resources.keys()]).toEqual(['orders-db', 'billing-db']);
    expect([...policy.groups.keys()]).toEqual(['engineers', 'sre', 'oncall', 'dba']);
    expect(policy.users.get('carol')).toMatchObject({ admin: true, groups: ['sre', 'dba'] });
    expect(policy.users.get('alice')?.attributes).toEqual({ department: 'payments' });
    const orders = policy.resources.get('orders-db');
    expect(orders?.roles.get('read')).toMatchObject({ readOnly: true, guardrails: ['ddl', 'truncate'] });
    expect(orders?.connection).toMatchObject({ port: 5432, admin: { password: { env: 'ORDERS_DB_ADMIN_PASSWORD' } } });
    expect(policy.settings.pendingTtlSeconds).toBe(3600);
    expect(policy.breakGlass).toEqual({ groups: ['oncall'], maxDurationSeconds: 3600 });
    const write = policy.rules.find((r) => r.name === 'engineers-write-orders');
    expect(write).toMatchObject({
      defaultDurationSeconds: 1800,
      maxDurationSeconds: 7200,
      approval: { kind: 'approvals', count: 2, from: ['sre'] },
      reasonRequired: true,
      ticketPattern: '^OPS-[0-9]+$',
      pendingTtlSeconds: 1800,
      mfa: { request: false, approve: true, connect: false, freshnessSeconds: 300 },
    });
    expect(text.split('\n')[write!.line - 1]).toContain('name: engineers-write-orders');
    // duration.default falls back to max; reason.required defaults to true, here turned off.
    expect(policy.rules.find((r) => r.name === 'ci-billing-export')).toMatchObject({
      defaultDurationSeconds: 600,
      reasonRequired: false,
      who: { users: [], groups: [], workloads: ['billing-export'] },
    });
  });

  it('gateway.storeParameters: off unless the resource sets it', () => {
    const load = (text: string) => {
      const r = loadPolicy(text, { file: 'policy.yaml', kinds: testKinds });
      if (!r.ok) throw new Error(r.errors.map(formatPolicyError).join('\n'));
      return r.policy.resources.get('orders-db')?.gateway;
    };
    expect(load(BASE)).toEqual({ storeParameters: false });
    const conn = BASE.split('\n')[9];
    expect(load(withLine(10, `${conn}\n    gateway: {}`))).toEqual({ storeParameters: false });
    expect(load(withLine(10, `${conn}\n    gateway: { storeParameters: true }`))).toEqual({ storeParameters: true });
  });

  it('accepts the base fixture used by the error cases', () => {
    expect(loadPolicy(BASE, { file: 'policy.yaml', kinds: testKinds }).ok).toBe(true);
  });

  it('loadPolicyFile hashes the bytes on disk and names the path in errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hallpass-policy-'));
    const good = join(dir, 'good.yaml');
    writeFileSync(good, BASE);
    const ok = await loadPolicyFile(good, testKinds);
    expect(ok.ok && ok.policy.version).toBe(createHash('sha256').update(BASE).digest('hex'));
    expect(ok.ok && ok.policy.source).toBe(good);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, withLine(19, '    duration: { default: 5m, max: 90x }'));
    const refused = await loadPolicyFile(bad, testKinds);
    expect(refused.ok ? [] : refused.errors.map(formatPolicyError)).toEqual([
      `${bad}:19: rules[0].duration.max: "90x" is not a duration (use 30m, 1h, 2d)`,
    ]);
    const missing = await loadPolicyFile(join(dir, 'nope.yaml'), testKinds);
    expect(missing.ok).toBe(false);
  });
});

describe('loadPolicy: every error names file, line and path', () => {
  it('a bad duration', () => {
    expect(errors(withLine(19, '    duration: { default: 5m, max: 90x }'))).toEqual([
      'policy.yaml:19: rules[0].duration.max: "90x" is not a duration (use 30m, 1h, 2d)',
    ]);
  });

  it('a default longer than the max', () => {
    expect(errors(withLine(19, '    duration: { default: 2h, max: 1h }'))).toEqual([
      'policy.yaml:19: rules[0].duration.default: "2h" is longer than max "1h"',
    ]);
  });

  it('a misspelled key is refused, not ignored', () => {
    expect(errors(withLine(20, '    aproval: auto'))).toEqual([
      'policy.yaml:15: rules[0].approval: is required',
      'policy.yaml:20: rules[0].aproval: unknown key "aproval"',
    ]);
  });

  it('a misspelled key in a nested mapping', () => {
    expect(errors(withLine(21, '    reason: { requird: false }'))).toEqual(['policy.yaml:21: rules[0].reason.requird: unknown key "requird"']);
  });

  it('an unknown group in a rule', () => {
    expect(errors(withLine(16, '    who: { groups: [enginers] }'))).toEqual(['policy.yaml:16: rules[0].who.groups[0]: unknown group "enginers"']);
  });

  it('an unknown user in a rule', () => {
    expect(errors(withLine(16, '    who: { users: [alice, mallory] }'))).toEqual(['policy.yaml:16: rules[0].who.users[1]: unknown user "mallory"']);
  });

  it('an unknown resource in a rule', () => {
    expect(errors(withLine(17, '    resources: { names: [order-db] }'))).toEqual([
      'policy.yaml:17: rules[0].resources.names[0]: unknown resource "order-db"',
    ]);
  });

  it('a label selector that selects nothing', () => {
    expect(errors(withLine(17, '    resources: { labels: { env: staging } }'))).toEqual([
      'policy.yaml:17: rules[0].resources.labels: selects no resource',
    ]);
  });

  it('a role no selected resource offers', () => {
    expect(errors(withLine(18, '    roles: [read, admin]'))).toEqual([
      'policy.yaml:18: rules[0].roles[1]: role "admin" is not offered by any resource this rule selects',
    ]);
  });

  it('duplicate names', () => {
    expect(errors(withLine(3, '  - { name: engineers }'))).toEqual([
      'policy.yaml:3: groups[1].name: duplicate group "engineers" (first defined on line 2)',
    ]);
  });

  it('duplicate YAML keys', () => {
    expect(errors(withLine(20, '    approval: auto\n    approval: auto'))).toEqual([
      'policy.yaml:21: invalid YAML: Map keys must be unique',
    ]);
  });

  it('zero approvals and an unknown approver group', () => {
    expect(errors(withLine(20, '    approval: { approvals: 0, from: [sre, dbas] }'))).toEqual([
      'policy.yaml:20: rules[0].approval.approvals: must be between 1 and 10',
      'policy.yaml:20: rules[0].approval.from[1]: unknown group "dbas"',
    ]);
  });

  it('an approval that is neither auto nor a mapping', () => {
    expect(errors(withLine(20, '    approval: manual'))).toEqual([
      "policy.yaml:20: rules[0].approval: must be 'auto' or { approvals: N, from: [group, ...] }",
    ]);
  });

  it('a typo inside the approval mapping', () => {
    expect(errors(withLine(20, '    approval:\n      approvals: 1\n      form: [sre]'))).toEqual([
      'policy.yaml:20: rules[0].approval.from: is required',
      'policy.yaml:22: rules[0].approval.form: unknown key "form"',
    ]);
  });

  it('an invalid ticket pattern', () => {
    expect(errors(withLine(21, "    reason: { required: true, ticketPattern: '^OPS-([0-9]+$' }"))).toEqual([
      'policy.yaml:21: rules[0].reason.ticketPattern: "^OPS-([0-9]+$" is not a valid regular expression: Invalid regular expression: /^OPS-([0-9]+$/u: Unterminated group',
    ]);
  });

  it('a condition that does not parse', () => {
    const [e] = errors(`${BASE}\n    when: 'request.duration <='`);
    expect(e).toMatch(/^policy\.yaml:22: rules\[0\]\.when: does not compile: /);
  });

  it('a condition that uses an unknown variable', () => {
    expect(errors(`${BASE}\n    when: 'user.name == "alice"'`)).toEqual([
      'policy.yaml:22: rules[0].when: does not compile: Unknown variable: user',
    ]);
  });

  it('a condition that uses an unknown field', () => {
    expect(errors(`${BASE}\n    when: 'request.durration < duration("1h")'`)).toEqual([
      'policy.yaml:22: rules[0].when: does not compile: No such key: durration',
    ]);
  });

  it('a condition that is not a bool', () => {
    expect(errors(`${BASE}\n    when: 'role'`)).toEqual(['policy.yaml:22: rules[0].when: must be a bool expression, not string']);
  });

  it('an unknown resource kind', () => {
    expect(errors(withLine(8, '    kind: postgress'))).toEqual(['policy.yaml:8: resources[0].kind: unknown kind "postgress" (known: postgres)']);
  });

  it("a connection the kind's schema refuses", () => {
    expect(errors(withLine(10, '    connection: { host: db, port: "5432x", database: orders, admin: { user: postgres, password: { env: PW } } }'))).toEqual([
      'policy.yaml:10: resources[0].connection.port: expected a number, got string "5432x"',
    ]);
  });

  it('an admin password written inline instead of a secret reference', () => {
    const text = withLine(10, '    connection:\n      host: db\n      port: 5432\n      database: orders\n      admin: { user: postgres, password: hunter2 }');
    const errs = errors(text);
    expect(errs).toHaveLength(1);
    expect(errs[0]).toMatch(/^policy\.yaml:14: resources\[0\]\.connection\.admin\.password: /);
    expect(errs[0]).not.toContain('hunter2');
  });

  it('gateway settings: a misspelt key, a wrong type, and a kind that has no gateway', () => {
    const conn = BASE.split('\n')[9];
    expect(errors(withLine(10, `${conn}\n    gateway: { storeParams: true }`))).toEqual([
      'policy.yaml:11: resources[0].gateway.storeParams: unknown key "storeParams"',
    ]);
    expect(errors(withLine(10, `${conn}\n    gateway: { storeParameters: "yes" }`))).toEqual([
      'policy.yaml:11: resources[0].gateway.storeParameters: expected true or false, got string "yes"',
    ]);
    const noGateway: KindSchemas = new Map([['postgres', { ...testKinds.get('postgres')!, guardrails: undefined }]]);
    const r = loadPolicy(withLine(10, `${conn}\n    gateway: { storeParameters: true }`), { file: 'policy.yaml', kinds: noGateway });
    expect(r.ok ? [] : r.errors.map(formatPolicyError)).toEqual(['policy.yaml:11: resources[0].gateway: kind postgres has no gateway']);
  });

  it("privileges the kind's schema refuses", () => {
    expect(errors(withLine(12, '      read: { privileges: { memberOf: pg_read_all_data } }'))).toEqual([
      'policy.yaml:12: resources[0].roles.read.privileges.memberOf: expected a list, got string "pg_read_all_data"',
    ]);
  });

  it('a user in an unknown group', () => {
    expect(errors(withLine(5, '  - { name: alice, groups: [engineer] }'))).toEqual(['policy.yaml:5: users[0].groups[0]: unknown group "engineer"']);
  });

  it('a plain-text password', () => {
    expect(errors(withLine(5, '  - { name: alice, passwordHash: hunter2 }'))).toEqual([
      'policy.yaml:5: users[0].passwordHash: must be an scrypt hash (scrypt$N$r$p$salt$hash), never a plain password',
    ]);
  });

  it('a required section missing', () => {
    expect(errors(BASE.split('\n').slice(0, 13).join('\n'))).toEqual(['policy.yaml:1: rules: is required']);
  });

  it('a wrong type', () => {
    expect(errors(withLine(21, '    reason: { required: "yes" }'))).toEqual([
      'policy.yaml:21: rules[0].reason.required: expected true or false, got string "yes"',
    ]);
  });

  it('invalid YAML syntax', () => {
    expect(errors(withLine(16, '    who: { groups: [engineers }'))[0]).toMatch(/^policy\.yaml:16: invalid YAML: /);
  });

  it('break-glass with an unknown group and a bad duration', () => {
    expect(errors(`${BASE}\nbreakGlass: { groups: [oncal], maxDuration: forever }`)).toEqual([
      'policy.yaml:22: breakGlass.groups[0]: unknown group "oncal"',
      'policy.yaml:22: breakGlass.maxDuration: "forever" is not a duration (use 30m, 1h, 2d)',
    ]);
  });

  it('collects every error in one pass, in line order', () => {
    let text = withLine(8, '    kind: postgress');
    text = text.replace('max: 1h', 'max: 90x').replace('groups: [engineers] }\nresources', 'groups: [nobody] }\nresources');
    expect(errors(text)).toEqual([
      'policy.yaml:5: users[0].groups[0]: unknown group "nobody"',
      'policy.yaml:8: resources[0].kind: unknown kind "postgress" (known: postgres)',
      'policy.yaml:19: rules[0].duration.max: "90x" is not a duration (use 30m, 1h, 2d)',
    ]);
  });
});
