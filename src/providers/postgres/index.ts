export { connectionSchema, privilegesSchema, parseConnection, parsePrivileges, type PostgresConnection, type PostgresPrivileges } from './config.js';
export { createPostgresProvider, postgresConnectionInfo, postgresProviderFactory, DEFAULT_ORPHAN_OWNER, type PostgresProvider } from './provider.js';
