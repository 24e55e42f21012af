import { type Kysely, type Migration, type MigrationProvider, sql } from 'kysely';

/** Migrations are code, in order; names sort lexically. Each works on SQLite and PostgreSQL. */
export function migrations(dialect: 'sqlite' | 'postgres'): MigrationProvider {
  const big = dialect === 'postgres' ? 'bigint' : 'integer';
  const all: Record<string, Migration> = {
    '0001_initial': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('users')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull().unique())
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('email', 'text')
          .addColumn('password_hash', 'text')
          .addColumn('groups', 'text', (c) => c.notNull().defaultTo('[]'))
          .addColumn('attributes', 'text', (c) => c.notNull().defaultTo('{}'))
          .addColumn('is_admin', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('source', 'text', (c) => c.notNull())
          .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('created_at', big, (c) => c.notNull())
          .addColumn('updated_at', big, (c) => c.notNull())
          .execute();

        await db.schema
          .createTable('api_tokens')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
          .addColumn('token_hash', 'text', (c) => c.notNull().unique())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('created_at', big, (c) => c.notNull())
          .addColumn('expires_at', big)
          .addColumn('last_used_at', big)
          .addColumn('revoked_at', big)
          .execute();

        await db.schema
          .createTable('requests')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('requester_id', 'text', (c) => c.notNull().references('users.id'))
          .addColumn('resource', 'text', (c) => c.notNull())
          .addColumn('role', 'text', (c) => c.notNull())
          .addColumn('duration_s', 'integer', (c) => c.notNull())
          .addColumn('reason', 'text', (c) => c.notNull())
          .addColumn('ticket', 'text')
          .addColumn('start_at', big)
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('extends_grant_id', 'text')
          .addColumn('decision', 'text', (c) => c.notNull())
          .addColumn('rule', 'text')
          .addColumn('policy_version', 'text', (c) => c.notNull())
          .addColumn('approvals_required', 'integer', (c) => c.notNull())
          .addColumn('approver_groups', 'text', (c) => c.notNull())
          .addColumn('pending_expires_at', big)
          .addColumn('decided_at', big)
          .addColumn('decided_by', 'text')
          .addColumn('decision_note', 'text')
          .addColumn('grant_id', 'text')
          .addColumn('created_at', big, (c) => c.notNull())
          .addColumn('updated_at', big, (c) => c.notNull())
          .execute();
        await db.schema.createIndex('requests_status_ttl').on('requests').columns(['status', 'pending_expires_at']).execute();
        await db.schema.createIndex('requests_requester').on('requests').columns(['requester_id', 'created_at']).execute();

        await db.schema
          .createTable('approvals')
          .addColumn('request_id', 'text', (c) => c.notNull().references('requests.id'))
          .addColumn('approver_id', 'text', (c) => c.notNull().references('users.id'))
          .addColumn('duration_s', 'integer')
          .addColumn('comment', 'text')
          .addColumn('at', big, (c) => c.notNull())
          .addPrimaryKeyConstraint('approvals_pk', ['request_id', 'approver_id'])
          .execute();

        await db.schema
          .createTable('grants')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('request_id', 'text', (c) => c.notNull().references('requests.id'))
          .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
          .addColumn('resource', 'text', (c) => c.notNull())
          .addColumn('role', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('principal', 'text', (c) => c.notNull().unique())
          .addColumn('secret_enc', 'text', (c) => c.notNull())
          .addColumn('duration_s', 'integer', (c) => c.notNull())
          .addColumn('starts_at', big)
          .addColumn('expires_at', big)
          .addColumn('end_reason', 'text')
          .addColumn('ended_at', big)
          .addColumn('revoke_attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('last_error', 'text')
          .addColumn('due_at', big)
          .addColumn('lease_owner', 'text')
          .addColumn('lease_until', big)
          .addColumn('created_at', big, (c) => c.notNull())
          .addColumn('updated_at', big, (c) => c.notNull())
          .execute();
        await db.schema.createIndex('grants_due').on('grants').column('due_at').execute();
        await db.schema.createIndex('grants_user_status').on('grants').columns(['user_id', 'status']).execute();
        await db.schema.createIndex('grants_resource_status').on('grants').columns(['resource', 'status']).execute();

        await db.schema
          .createTable('reviews')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('request_id', 'text', (c) => c.notNull())
          .addColumn('grant_id', 'text')
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('opened_at', big, (c) => c.notNull())
          .addColumn('closed_at', big)
          .addColumn('closed_by', 'text')
          .addColumn('note', 'text')
          .execute();

        await db.schema
          .createTable('audit_events')
          .addColumn('seq', big, (c) => c.primaryKey())
          .addColumn('at', big, (c) => c.notNull())
          .addColumn('type', 'text', (c) => c.notNull())
          .addColumn('actor', 'text', (c) => c.notNull())
          .addColumn('request_id', 'text')
          .addColumn('grant_id', 'text')
          .addColumn('data', 'text', (c) => c.notNull())
          .addColumn('prev_hash', 'text', (c) => c.notNull())
          .addColumn('hash', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('audit_type_at').on('audit_events').columns(['type', 'at']).execute();
        await db.schema.createIndex('audit_at').on('audit_events').column('at').execute();

        await db.schema
          .createTable('audit_head')
          .addColumn('id', 'integer', (c) => c.primaryKey())
          .addColumn('seq', big, (c) => c.notNull())
          .addColumn('hash', 'text', (c) => c.notNull())
          .execute();
        await sql`insert into audit_head (id, seq, hash) values (1, 0, ${'0'.repeat(64)})`.execute(db);

        await db.schema
          .createTable('policy_versions')
          .addColumn('version', 'text', (c) => c.primaryKey())
          .addColumn('source', 'text', (c) => c.notNull())
          .addColumn('loaded_at', big, (c) => c.notNull())
          .execute();

        // Single-use gateway tokens: a token's nonce is recorded when it is first used.
        await db.schema
          .createTable('used_nonces')
          .addColumn('nonce', 'text', (c) => c.primaryKey())
          .addColumn('expires_at', big, (c) => c.notNull())
          .execute();

        await db.schema
          .createTable('meta')
          .addColumn('key', 'text', (c) => c.primaryKey())
          .addColumn('value', 'text', (c) => c.notNull())
          .execute();
      },
    },
    // Identity: TOTP MFA, recovery codes, step-up stamps, web sessions, OIDC logins, refresh tokens.
    '0002_identity': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('mfa_totp')
          .addColumn('user_id', 'text', (c) => c.primaryKey().references('users.id'))
          .addColumn('secret_enc', 'text', (c) => c.notNull())
          .addColumn('created_at', big, (c) => c.notNull())
          .addColumn('confirmed_at', big)
          .addColumn('last_step', big)
          .execute();

        await db.schema
          .createTable('mfa_recovery_codes')
          .addColumn('code_hash', 'text', (c) => c.primaryKey())
          .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
          .addColumn('created_at', big, (c) => c.notNull())
          .addColumn('used_at', big)
          .execute();
        await db.schema.createIndex('mfa_recovery_user').on('mfa_recovery_codes').column('user_id').execute();

        // Step-up: when the holder of an API token last passed MFA.
        await db.schema
          .createTable('token_mfa')
          .addColumn('token_id', 'text', (c) => c.primaryKey())
          .addColumn('mfa_at', big, (c) => c.notNull())
          .execute();

        await db.schema
          .createTable('web_sessions')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
          .addColumn('session_hash', 'text', (c) => c.notNull().unique())
          .addColumn('created_at', big, (c) => c.notNull())
          .addColumn('last_seen_at', big, (c) => c.notNull())
          .addColumn('expires_at', big, (c) => c.notNull())
          .addColumn('revoked_at', big)
          .addColumn('mfa_at', big)
          .execute();
        await db.schema.createIndex('web_sessions_user').on('web_sessions').column('user_id').execute();

        await db.schema
          .createTable('oidc_logins')
          .addColumn('state_hash', 'text', (c) => c.primaryKey())
          .addColumn('nonce', 'text', (c) => c.notNull())
          .addColumn('verifier_enc', 'text', (c) => c.notNull())
          .addColumn('mode', 'text', (c) => c.notNull())
          .addColumn('cli_redirect', 'text')
          .addColumn('cli_challenge', 'text')
          .addColumn('created_at', big, (c) => c.notNull())
          .addColumn('expires_at', big, (c) => c.notNull())
          .addColumn('consumed_at', big)
          .execute();

        // One-time codes handing an SSO login over to the CLI that started it (bound to its PKCE challenge).
        await db.schema
          .createTable('cli_login_codes')
          .addColumn('code_hash', 'text', (c) => c.primaryKey())
          .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
          .addColumn('challenge', 'text', (c) => c.notNull())
          .addColumn('expires_at', big, (c) => c.notNull())
          .addColumn('used_at', big)
          .execute();

        await db.schema
          .createTable('refresh_tokens')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
          .addColumn('token_hash', 'text', (c) => c.notNull().unique())
          .addColumn('access_token_id', 'text', (c) => c.notNull())
          .addColumn('created_at', big, (c) => c.notNull())
          .addColumn('expires_at', big, (c) => c.notNull())
          .addColumn('used_at', big)
          .addColumn('revoked_at', big)
          .execute();
        await db.schema.createIndex('refresh_tokens_user').on('refresh_tokens').column('user_id').execute();

        // Workload JWTs seen (sha256), so each token's first use is audited once.
        await db.schema
          .createTable('workload_tokens_seen')
          .addColumn('token_hash', 'text', (c) => c.primaryKey())
          .addColumn('expires_at', big, (c) => c.notNull())
          .execute();
      },
    },
    '0003_audit_subject_lookups': {
      async up(db: Kysely<unknown>) {
        // A request's events without reading the log: only the few events about a request carry
        // its id, so this partial index costs the gateway's statements nothing. SQLite ends every
        // index with the rowid, which is seq; PostgreSQL is told.
        await db.schema
          .createIndex('audit_request')
          .on('audit_events')
          .columns(dialect === 'postgres' ? ['request_id', 'seq'] : ['request_id'])
          .where(sql.ref('request_id'), 'is not', null)
          .execute();
        if (dialect === 'sqlite') {
          // SQLite ends every index with the rowid (seq), so (type) hands out a type's events in
          // seq order from any seq on, and a time window arrives as a seq range (windowSeqRange):
          // (type, at) made it read and sort every event of the type, all of gateway.execute.
          await db.schema.dropIndex('audit_type_at').execute();
          await db.schema.createIndex('audit_type').on('audit_events').column('type').execute();
        }
        // A grant's events: every gateway statement carries its grant, and an index on grant_id
        // cost the SQLite writer 2-2.5 us more per statement with 10 active grants, 7-10 us with
        // 100 (an entry per event; bench/audit-grant-lookup.ts). Spans cost a row per grant per
        // batch; see AuditGrantSpansTable.
        await db.schema
          .createTable('audit_grant_spans')
          .addColumn('grant_id', 'text', (c) => c.notNull())
          .addColumn('first_seq', big, (c) => c.notNull())
          .addColumn('last_seq', big, (c) => c.notNull())
          .execute();
        await db.schema.createIndex('audit_grant_spans_grant').on('audit_grant_spans').columns(['grant_id', 'last_seq']).execute();
        // Events written before this migration: a grant's events split where more than 256 others
        // (SPAN_MERGE_GAP) lie between two of them, as the appenders split them from now on.
        await sql`insert into audit_grant_spans (grant_id, first_seq, last_seq)
          select grant_id, min(seq), max(seq) from (
            select grant_id, seq, sum(case when seq - prev - 1 > 256 then 1 else 0 end) over (partition by grant_id order by seq) as part
            from (select grant_id, seq, lag(seq) over (partition by grant_id order by seq) as prev from audit_events where grant_id is not null) as gaps
          ) as parts group by grant_id, part`.execute(db);
      },
    },
    '0004_holder_binding': {
      async up(db: Kysely<unknown>) {
        // Which job of a workload made a request / holds a grant (null for people): many jobs share
        // one workload user row, and a grant is theirs only when the binding matches too.
        await db.schema.alterTable('requests').addColumn('holder_binding', 'text').execute();
        await db.schema.alterTable('grants').addColumn('holder_binding', 'text').execute();
      },
    },
    '0005_sso_subject': {
      async up(db: Kysely<unknown>) {
        // The provider identity (iss, sub) an SSO user first signed in as: a later login under the
        // same name (email) but another subject is refused, not merged into this account.
        await db.schema.alterTable('users').addColumn('sso_issuer', 'text').execute();
        await db.schema.alterTable('users').addColumn('sso_subject', 'text').execute();
      },
    },
    '0006_audit_head_seal': {
      async up(db: Kysely<unknown>) {
        // The head's seal (audit/head-seal.ts): an HMAC under a key of the master key, so a
        // rewritten chain cannot be given a head that verifies without that key.
        await db.schema.alterTable('audit_head').addColumn('seal', 'text').execute();
      },
    },
    '0007_grant_target_pending': {
      async up(db: Kysely<unknown>) {
        // An extension writes the store's new end first, then the target's (access/grants.ts): this
        // marks a grant whose target was not told yet, for the reconciler after a crash.
        await db.schema.alterTable('grants').addColumn('target_pending_at', big).execute();
      },
    },
  };
  return { getMigrations: async () => all };
}
