/** The policy engine: load a YAML policy, decide requests, check approvers. */
export { loadPolicy, loadPolicyFile, DEFAULT_PENDING_TTL_SECONDS } from './loader.js';
export type { LoadResult, KindSchemas } from './loader.js';
export { evaluate } from './evaluator.js';
export { canApprove } from './approve.js';
export type { ApprovalSubject, ApproveCheck } from './approve.js';
export { formatPolicyError } from './errors.js';
export type { PolicyError } from './errors.js';
export { MAX_POLICY_BYTES, MAX_ALIAS_COUNT } from './source.js';
export * from './names.js';
export type * from './types.js';
