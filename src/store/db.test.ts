import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from './db.js';
import { createTestDatabase } from '../../test/support/services.js';

describe('openStore', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups) await c();
  });

  it('migrates SQLite and PostgreSQL to the same tables', async () => {
    const pgdb = await createTestDatabase();
    cleanups.push(pgdb.drop);
    for (const url of [':memory:', pgdb.url]) {
      const store = await openStore({ url });
      const head = await store.db.selectFrom('audit_head').selectAll().executeTakeFirstOrThrow();
      expect(head.seq).toBe(0);
      // migrating twice is a no-op
      await store.close();
      const again = await openStore({ url: url === ':memory:' ? ':memory:' : url });
      await again.close();
    }
  });
});
