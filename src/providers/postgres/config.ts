import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ProviderError } from '../provider.js';

/**
 * Names a policy author writes (roles, schemas, tables): plain identifiers only. They are
 * ALSO always double-quoted when sent, so this pattern is a second, independent layer.
 * At most 63 bytes: PostgreSQL silently truncates longer names, which could alias two names.
 */
export const IDENTIFIER_PATTERN = '^[A-Za-z_][A-Za-z0-9_]{0,62}$';
const Identifier = Type.String({ pattern: IDENTIFIER_PATTERN, description: 'A PostgreSQL identifier, used exactly as written (quoted, so case-sensitive)' });

const SecretRefSchema = Type.Union(
  [
    Type.Object({ env: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
    Type.Object({ file: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
  ],
  { description: 'Where the admin password lives: an environment variable or a file. Never the password itself.' },
);

export const connectionSchema = Type.Object(
  {
    host: Type.String({ minLength: 1 }),
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 5432 }),
    database: Type.String({ minLength: 1, maxLength: 63 }),
    sslmode: Type.Optional(Type.Union([Type.Literal('disable'), Type.Literal('require'), Type.Literal('verify-full')])),
    /** libpq's meaning, for hallpass's own connections (admin, gateway); not handed to clients. */
    sslrootcert: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'CA file (PEM) that signed the target certificate. verify-full: used instead of the system CAs; require: the chain is checked against it, the host name is not (libpq verify-ca)',
      }),
    ),
    admin: Type.Object(
      {
        user: Type.String({ minLength: 1, maxLength: 63 }),
        password: SecretRefSchema,
      },
      { additionalProperties: false },
    ),
    /** Role that inherits objects a revoked principal created (see docs/providers/postgres.md). */
    orphanOwner: Type.Optional(Identifier),
  },
  { additionalProperties: false },
);
export type PostgresConnection = Static<typeof connectionSchema>;

/** Privileges that make sense on tables, sequences or schemas; each is sent only where it applies. */
export const TABLE_PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'] as const;
export const SEQUENCE_PRIVILEGES = ['USAGE', 'SELECT', 'UPDATE'] as const;
export const SCHEMA_PRIVILEGES = ['USAGE', 'CREATE'] as const;
const ALL_PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER', 'USAGE', 'CREATE'] as const;
export type Privilege = (typeof ALL_PRIVILEGES)[number];

const GrantSchema = Type.Object(
  {
    privileges: Type.Array(Type.Union(ALL_PRIVILEGES.map((p) => Type.Literal(p))), { minItems: 1, uniqueItems: true }),
    on: Type.Object(
      {
        schema: Identifier,
        tables: Type.Optional(Type.Union([Type.Literal('all'), Type.Array(Identifier, { minItems: 1, uniqueItems: true })])),
        sequences: Type.Optional(Type.Literal('all')),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export const privilegesSchema = Type.Object(
  {
    /** Existing roles to join, e.g. pg_read_all_data, pg_write_all_data. */
    memberOf: Type.Optional(Type.Array(Identifier, { uniqueItems: true })),
    grants: Type.Optional(Type.Array(GrantSchema)),
    connectionLimit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    /** Sets default_transaction_read_only for the role: a guardrail on top of the grants, not a boundary. */
    readOnly: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type PostgresPrivileges = Static<typeof privilegesSchema>;
export type PostgresGrant = NonNullable<PostgresPrivileges['grants']>[number];

/** Validates (applying defaults) or throws a non-retryable ProviderError naming every problem. */
function parse<T extends TSchema>(schema: T, what: string, input: unknown): Static<T> {
  const value = Value.Default(schema, Value.Clone(input));
  if (Value.Check(schema, value)) return value;
  const problems = [...Value.Errors(schema, value)].slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`);
  throw new ProviderError(`invalid postgres ${what}: ${problems.join('; ')}`, false);
}

export const parseConnection = (input: unknown): PostgresConnection => parse(connectionSchema, 'connection', input);

export function parsePrivileges(input: unknown): PostgresPrivileges {
  const p = parse(privilegesSchema, 'privileges', input);
  for (const role of p.memberOf ?? []) {
    if (role.startsWith('hp_') || role === 'hallpass_orphans') {
      throw new ProviderError(`invalid postgres privileges: memberOf must not name a hallpass-managed role (${role})`, false);
    }
  }
  return p;
}
