export { auditHeadKey, auditSealKey, deriveKey, envelopeKey, secretBoxFor } from './derive.js';
export { SecretBoxError, createSecretBox, type SecretBox, type SecretBoxKeys, type SecretKey } from './envelope.js';
export { MASTER_KEY_ENV, MASTER_KEY_FILE, PREVIOUS_MASTER_KEYS_ENV, decodeKey, loadMasterKey, type LoadMasterKeyOptions, type MasterKey } from './master-key.js';
