import { Type } from '@sinclair/typebox';

export const CodeBody = Type.Object({ code: Type.String({ minLength: 6, maxLength: 32, description: 'a 6-digit TOTP code or a recovery code' }) }, { additionalProperties: false });
export const ResetMfaBody = Type.Object({ reason: Type.String({ minLength: 1, maxLength: 500 }) }, { additionalProperties: false });
export const UserNameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 200 }) });
export const OidcStartQuery = Type.Object({}, { additionalProperties: false });
export const OidcCliBody = Type.Object({
  redirect: Type.Optional(Type.String({ maxLength: 200, description: 'loopback URL http://127.0.0.1:PORT/... (omit to be shown a code to paste)' })),
  challenge: Type.String({ pattern: '^[A-Za-z0-9_-]{43}$', description: 'base64url(sha256(verifier))' }),
}, { additionalProperties: false });
export const OidcExchangeBody = Type.Object({
  code: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  verifier: Type.String({ minLength: 43, maxLength: 128 }),
}, { additionalProperties: false });
export const RefreshBody = Type.Object({ refreshToken: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false });
export const LoginTokensView = Type.Object({
  token: Type.String(), expiresAt: Type.String(), refreshToken: Type.String(), refreshExpiresAt: Type.String(), user: Type.String(),
});
export const MfaStatusView = Type.Object({ enrolled: Type.Boolean(), pendingConfirmation: Type.Boolean(), recoveryCodesLeft: Type.Integer() });
