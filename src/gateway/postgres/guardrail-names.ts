// The guardrail names alone (no parser): the policy loader validates role guardrails against them.
/** The statement classes a policy role may deny, by name. */
export const GUARDRAILS = {
  ddl: 'DDL (CREATE, ALTER, DROP, GRANT, REVOKE, COMMENT, ...)',
  truncate: 'TRUNCATE',
  write: 'writes (INSERT, UPDATE, DELETE, MERGE, COPY FROM, SELECT INTO, CREATE TABLE AS, nextval/setval, large objects, NOTIFY)',
  write_without_where: 'UPDATE or DELETE without a WHERE clause',
  copy_program: 'COPY to or from a program or a server-side file',
  set_role: 'SET ROLE / SET SESSION AUTHORIZATION',
  escape: 'statements that could escape the granted role (roles, ALTER SYSTEM, LOAD, server files, dblink, COPY PROGRAM)',
  do_block: 'DO blocks',
} as const;
export type Guardrail = keyof typeof GUARDRAILS;

export const isGuardrail = (name: string): name is Guardrail => Object.hasOwn(GUARDRAILS, name);
