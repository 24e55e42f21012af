import { generate, generateSecret, generateURI, verify } from 'otplib';

/** RFC 6238 with the parameters every authenticator app supports: SHA-1, 6 digits, 30 s steps. */
export const TOTP_PERIOD = 30;
export const CODE_PATTERN = /^[0-9]{6}$/;

/** A new random 160-bit secret, base32 (what authenticator apps expect). */
export function newTotpSecret(): string {
  return generateSecret({ length: 20 });
}

export function totpUri(issuer: string, account: string, secret: string): string {
  return generateURI({ issuer, label: account, secret, period: TOTP_PERIOD, digits: 6, algorithm: 'sha1' });
}

/**
 * The time step the code belongs to, or undefined when it is wrong. Accepts the current step and
 * one step either side (clock drift), but never a step at or before `afterStep`: a code, once
 * accepted, cannot be used again, nor can any older one.
 */
export async function verifyTotp(secret: string, code: string, nowMs: number, afterStep: number | null): Promise<number | undefined> {
  if (!CODE_PATTERN.test(code)) return undefined;
  const result = await verify({
    secret,
    token: code,
    epoch: Math.floor(nowMs / 1000),
    epochTolerance: TOTP_PERIOD,
    period: TOTP_PERIOD,
    ...(afterStep === null ? {} : { afterTimeStep: afterStep }),
  });
  return result.valid && 'timeStep' in result ? result.timeStep : undefined;
}

/** The code for a moment (tests and enrolment checks). */
export function totpAt(secret: string, atMs: number): Promise<string> {
  return generate({ secret, epoch: Math.floor(atMs / 1000), period: TOTP_PERIOD });
}
