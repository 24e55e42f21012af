import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase } from '../../test/support/services.js';
import { auditConformance } from './audit.conformance.js';

// The same suite on both store dialects.
const dir = mkdtempSync(join(tmpdir(), 'hp-audit-'));
let n = 0;
auditConformance({
  name: 'sqlite',
  newUrl: async () => join(dir, `audit-${++n}.db`),
  cleanup: async () => rmSync(dir, { recursive: true, force: true }),
});

const drops: Array<() => Promise<void>> = [];
auditConformance({
  name: 'postgres',
  newUrl: async () => {
    const d = await createTestDatabase('hp_audit');
    drops.push(d.drop);
    return d.url;
  },
  cleanup: async () => {
    for (const drop of drops) await drop();
  },
});
