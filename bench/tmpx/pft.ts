import { readFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { openStore } from '../../src/store/db.js';
import { highVolumeSink } from '../../src/audit/store-sink.js';
const dir = mkdtempSync(join(tmpdir(), 'pf-'));
const store = await openStore({ url: join(dir, 's.sqlite') });
const sink = highVolumeSink(store);
let k = 0;
const batch = () => Array.from({ length: 128 }, () => ({ type: 'gateway.execute', actor: 'usr_bench', at: new Date(1_767_225_600_000 + k), grantId: 'grt_0123456789abcdef', data: { sessionId: 'gws_abc', statementId: k++, sql: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;', durationMs: 0.1, tag: 'SELECT 1', rows: 1 } }));
for (let i = 0; i < 100; i++) await sink.record(batch() as any);
console.log('START', process.pid);
const N = Number(process.env.N ?? 300);
for (let i = 0; i < N; i++) { await sink.record(batch() as any); if (process.env.SLEEP) await new Promise((r) => setTimeout(r, Number(process.env.SLEEP))); }
await sink.close(); await store.close();
