import pg from 'pg';
import type { PgTarget } from './pg-target.js';

/** Does this role exist on the target? (asked as the admin) */
export async function roleExists(target: PgTarget, role: string): Promise<boolean> {
  const c = await target.admin();
  try {
    const r = await c.query('select 1 from pg_roles where rolname = $1', [role]);
    return r.rowCount === 1;
  } finally {
    await c.end();
  }
}

export async function managedRoles(target: PgTarget): Promise<string[]> {
  const c = await target.admin();
  try {
    const r = await c.query<{ rolname: string }>("select rolname from pg_roles where rolname like 'hp\\_%' order by 1");
    return r.rows.map((x) => x.rolname);
  } finally {
    await c.end();
  }
}

/** Opens a connection with these credentials, or returns the error. */
export async function tryConnect(dsn: string): Promise<{ client: pg.Client } | { error: Error }> {
  const client = new pg.Client({ connectionString: dsn, connectionTimeoutMillis: 5000 });
  client.on('error', () => {});
  try {
    await client.connect();
    return { client };
  } catch (error) {
    return { error: error as Error };
  }
}

/** Polls `fn` until it returns true or `ms` pass; returns the last result. */
export async function eventually(fn: () => Promise<boolean>, ms = 10_000, step = 50): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, step));
  }
}
