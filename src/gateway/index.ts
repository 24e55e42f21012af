/** The gateway's public surface: what the core wires (see docs/gateway.md). */
export type {
  AuthorizedSession,
  AuthorizeInput,
  AuthorizeResult,
  GatewayAuditEvent,
  GatewayAuditSink,
  GatewayAuthority,
  RefusalCode,
  UpstreamTls,
} from './authority.js';
export { GATEWAY_TOKEN_TTL_MS, mintGatewayToken, verifyGatewayToken, type MintedToken, type VerifiedToken } from './tokens.js';
export { PostgresGateway, type GatewaySessionInfo, type PostgresGatewayOptions } from './postgres/server.js';
export type { GatewayTlsConfig } from './postgres/tls.js';
/** Guardrail names a policy role may list, with descriptions (validate the policy against these). */
export { GUARDRAILS, isGuardrail, type Guardrail } from './postgres/guardrails.js';
