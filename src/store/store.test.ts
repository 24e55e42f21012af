import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase } from '../../test/support/services.js';
import { storeConformance } from './store.conformance.js';

storeConformance('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hp-store-'));
  return { url: join(dir, 'hallpass.db'), drop: async () => rmSync(dir, { recursive: true, force: true }) };
});
storeConformance('postgres', () => createTestDatabase('hp_store'));
