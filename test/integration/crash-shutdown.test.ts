import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryEvents, verifyChain } from '../../src/audit/index.js';
import { openStore } from '../../src/store/db.js';
import { FATAL_EXIT_CODE } from '../../src/server/run.js';
import { startPgTarget, type PgTarget } from '../support/pg-target.js';

/**
 * A server that dies of an exception nothing caught still stores the audit events its gateway had
 * queued (they wait up to 25 ms in memory), records the crash, and cuts its sessions cleanly.
 */
describe('a fatal error in the server', () => {
  let target: PgTarget;
  let dataDir: string;
  beforeAll(async () => {
    target = await startPgTarget();
    dataDir = mkdtempSync(join(tmpdir(), 'hp-crash-'));
  });
  afterAll(async () => {
    await target?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('stores the queued gateway events, records server.crashed, and exits with code 70', async () => {
    const { host, port, database, adminUser, adminPassword } = target;
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../support/crash-child.ts')], {
      env: { ...process.env, CRASH_TARGET: JSON.stringify({ host, port, database, adminUser, adminPassword }), CRASH_DATA_DIR: dataDir },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(stderr).toContain('hallpass: fatal error: Error: boom: a bug nothing caught');
    expect(code, stderr).toBe(FATAL_EXIT_CODE);
    const grantId = /grant (\S+)/.exec(stdout)?.[1];
    expect(grantId, stdout).toBeDefined();

    const store = await openStore({ url: join(dataDir, 'hallpass.db') });
    try {
      const events = await queryEvents(store.db, { grantId, limit: 100 });
      const gateway = events.filter((e) => e.type.startsWith('gateway.'));
      expect(gateway.map((e) => e.type)).toEqual(['gateway.session.start', 'gateway.query', 'gateway.session.end']);
      expect(gateway[1]?.data).toMatchObject({ sql: "select 'ran before the crash' as x", tags: ['SELECT 1'] });
      const crashed = await queryEvents(store.db, { type: 'server.crashed', limit: 5 });
      expect(crashed).toHaveLength(1);
      expect(crashed[0]).toMatchObject({ actor: 'system', data: { error: 'Error: boom: a bug nothing caught' } });
      expect((await verifyChain(store.db)).ok).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('exits (code 70) when an error breaks a shutdown a signal began, instead of hanging (second review)', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../support/crash-child-hang.ts')]);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((r) => child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && r()));
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(stderr).toContain('boom inside close');
    expect(stderr).toContain('shutdown did not finish in 1 s');
    expect(code).toBe(FATAL_EXIT_CODE);
  });
});
