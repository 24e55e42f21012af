import { inTx, type AccessDeps } from '../access/context.js';
import { AppError, conflict, notFound } from '../domain/errors.js';
import type { MfaConfig } from './config.js';
import { hashRecoveryCode, isRecoveryCodeShaped, newRecoveryCode } from './recovery.js';
import { mfaThrottle, refusalMessage } from './throttle.js';
import { CODE_PATTERN, newTotpSecret, totpUri, verifyTotp } from './totp.js';

export interface MfaSubject {
  readonly id: string;
  readonly name: string;
  readonly kind: 'user' | 'workload';
}

export interface MfaStatus {
  readonly enrolled: boolean;
  readonly pendingConfirmation: boolean;
  readonly recoveryCodesLeft: number;
}

const aad = (userId: string) => `totp:${userId}`;

/**
 * TOTP second factor with single-use recovery codes. Secrets are sealed at rest; recovery codes
 * are stored as hashes. Each accepted TOTP code moves the user's last step forward in one
 * conditional UPDATE, so a code works once even when two calls race with it.
 * Failed attempts are throttled per user and per client address.
 */
export class MfaService {
  readonly #limiter = mfaThrottle();
  readonly #issuer: string;
  readonly #recoveryCount: number;

  constructor(private readonly deps: AccessDeps, config: MfaConfig | undefined) {
    this.#issuer = config?.issuerLabel ?? 'hallpass';
    this.#recoveryCount = config?.recoveryCodes ?? 10;
  }

  async status(userId: string): Promise<MfaStatus> {
    const db = this.deps.store.db;
    const row = await db.selectFrom('mfa_totp').select(['confirmed_at']).where('user_id', '=', userId).executeTakeFirst();
    const left = await db.selectFrom('mfa_recovery_codes').select((eb) => eb.fn.countAll<number>().as('n'))
      .where('user_id', '=', userId).where('used_at', 'is', null).executeTakeFirst();
    return { enrolled: row?.confirmed_at != null, pendingConfirmation: !!row && row.confirmed_at === null, recoveryCodesLeft: Number(left?.n ?? 0) };
  }

  async isEnrolled(userId: string): Promise<boolean> {
    const row = await this.deps.store.db.selectFrom('mfa_totp').select('confirmed_at').where('user_id', '=', userId).executeTakeFirst();
    return row?.confirmed_at != null;
  }

  /** Starts (or restarts) enrolment: a new secret, unconfirmed until a code proves it. */
  async enroll(user: MfaSubject, address: string): Promise<{ secret: string; otpauthUri: string }> {
    if (user.kind !== 'user') throw new AppError('forbidden', 'workloads do not enrol in MFA');
    const now = this.#now();
    const secret = newTotpSecret();
    const sealed = this.deps.sealer.seal(secret, aad(user.id));
    await inTx(this.deps, async (tx, audit) => {
      const existing = await tx.selectFrom('mfa_totp').select('confirmed_at').where('user_id', '=', user.id).executeTakeFirst();
      if (existing?.confirmed_at != null) throw conflict('MFA is already enrolled: an admin must reset it before you enrol again');
      await tx.deleteFrom('mfa_totp').where('user_id', '=', user.id).execute();
      await tx.insertInto('mfa_totp').values({ user_id: user.id, secret_enc: sealed, created_at: now, confirmed_at: null, last_step: null }).execute();
      audit({ type: 'mfa.enrollment_started', actor: user.name, at: now, data: { method: 'totp', clientAddress: address } });
    });
    return { secret, otpauthUri: totpUri(this.#issuer, user.name, secret) };
  }

  /** Confirms enrolment with a first code; returns the recovery codes (shown once, stored hashed). */
  async confirm(user: MfaSubject, code: string, address: string): Promise<string[]> {
    const now = this.#now();
    return this.#attempt(user, address, now, () => this.#confirm(user, code, address, now));
  }

  async #confirm(user: MfaSubject, code: string, address: string, now: number): Promise<string[]> {
    const row = await this.deps.store.db.selectFrom('mfa_totp').selectAll().where('user_id', '=', user.id).executeTakeFirst();
    if (!row) throw notFound('no MFA enrolment in progress: start one first');
    if (row.confirmed_at !== null) throw conflict('MFA is already confirmed');
    const step = await verifyTotp(this.deps.sealer.open(row.secret_enc, aad(user.id)), code, now, null);
    if (step === undefined) return this.#fail(user, address, now, 'confirm', 'wrong code');
    const codes = Array.from({ length: this.#recoveryCount }, newRecoveryCode);
    await inTx(this.deps, async (tx, audit) => {
      const done = await tx.updateTable('mfa_totp').set({ confirmed_at: now, last_step: step })
        .where('user_id', '=', user.id).where('confirmed_at', 'is', null).executeTakeFirst();
      if (Number(done.numUpdatedRows) !== 1) throw conflict('MFA enrolment changed meanwhile: start again');
      await this.#storeRecovery(tx, user.id, codes, now);
      audit({ type: 'mfa.enrolled', actor: user.name, at: now, data: { method: 'totp', recoveryCodes: codes.length, clientAddress: address } });
    });
    return codes;
  }

  /**
   * Checks a second factor: a TOTP code (once per time step, never an older one) or an unused
   * recovery code (then spent). Returns when it passed (epoch ms); throws `mfa_required` when not.
   */
  async verify(user: MfaSubject, code: string, address: string, purpose: string): Promise<number> {
    const now = this.#now();
    return this.#attempt(user, address, now, () => this.#verify(user, code, address, purpose, now));
  }

  async #verify(user: MfaSubject, code: string, address: string, purpose: string, now: number): Promise<number> {
    const row = await this.deps.store.db.selectFrom('mfa_totp').selectAll().where('user_id', '=', user.id).executeTakeFirst();
    if (!row || row.confirmed_at === null) {
      throw new AppError('mfa_required', 'you have not enrolled in MFA yet (run: hallpass mfa enroll)', { reason: 'not_enrolled' });
    }
    if (CODE_PATTERN.test(code)) {
      const step = await verifyTotp(this.deps.sealer.open(row.secret_enc, aad(user.id)), code, now, row.last_step);
      if (step === undefined) return this.#fail(user, address, now, purpose, 'wrong or already used code');
      const ok = await inTx(this.deps, async (tx, audit) => {
        // Race-safe: only one caller moves last_step past this step.
        const res = await tx.updateTable('mfa_totp').set({ last_step: step }).where('user_id', '=', user.id)
          .where((eb) => eb.or([eb('last_step', 'is', null), eb('last_step', '<', step)])).executeTakeFirst();
        if (Number(res.numUpdatedRows) !== 1) return false;
        audit({ type: 'mfa.verified', actor: user.name, at: now, data: { method: 'totp', purpose, clientAddress: address } });
        return true;
      });
      if (!ok) return this.#fail(user, address, now, purpose, 'code already used');
    } else if (isRecoveryCodeShaped(code)) {
      const ok = await inTx(this.deps, async (tx, audit) => {
        const res = await tx.updateTable('mfa_recovery_codes').set({ used_at: now })
          .where('code_hash', '=', hashRecoveryCode(code)).where('user_id', '=', user.id).where('used_at', 'is', null).executeTakeFirst();
        if (Number(res.numUpdatedRows) !== 1) return false;
        audit({ type: 'mfa.verified', actor: user.name, at: now, data: { method: 'recovery_code', purpose, clientAddress: address } });
        return true;
      });
      if (!ok) return this.#fail(user, address, now, purpose, 'wrong or already used recovery code');
    } else {
      return this.#fail(user, address, now, purpose, 'not a code');
    }
    return now;
  }

  /** New recovery codes (the old ones stop working). The caller must have passed MFA just now. */
  async regenerateRecoveryCodes(user: MfaSubject, address: string): Promise<string[]> {
    const now = this.#now();
    if (!(await this.isEnrolled(user.id))) throw conflict('MFA is not enrolled');
    const codes = Array.from({ length: this.#recoveryCount }, newRecoveryCode);
    await inTx(this.deps, async (tx, audit) => {
      await tx.deleteFrom('mfa_recovery_codes').where('user_id', '=', user.id).execute();
      await this.#storeRecovery(tx, user.id, codes, now);
      audit({ type: 'mfa.recovery_codes_regenerated', actor: user.name, at: now, data: { count: codes.length, clientAddress: address } });
    });
    return codes;
  }

  /** An admin removes a user's MFA (lost device); the user enrols again. Audited. */
  async reset(admin: MfaSubject, userId: string, userName: string, reason: string): Promise<boolean> {
    const now = this.#now();
    return inTx(this.deps, async (tx, audit) => {
      const res = await tx.deleteFrom('mfa_totp').where('user_id', '=', userId).executeTakeFirst();
      await tx.deleteFrom('mfa_recovery_codes').where('user_id', '=', userId).execute();
      const removed = Number(res.numDeletedRows) > 0;
      audit({ type: 'mfa.reset', actor: admin.name, at: now, data: { user: userName, hadMfa: removed, reason } });
      return removed;
    });
  }

  async #storeRecovery(tx: Parameters<Parameters<typeof inTx>[1]>[0], userId: string, codes: readonly string[], now: number): Promise<void> {
    await tx.insertInto('mfa_recovery_codes')
      .values(codes.map((c) => ({ code_hash: hashRecoveryCode(c), user_id: userId, created_at: now, used_at: null })))
      .execute();
  }

  /**
   * Runs one code check as a throttled attempt: admitted (and counted while it runs) or refused
   * with rate_limited; a refused code (#fail) counts as a failure, a success clears the user's.
   */
  async #attempt<T>(user: MfaSubject, address: string, now: number, check: () => Promise<T>): Promise<T> {
    const attempt = this.#limiter.begin(user.name, address, now);
    if (attempt.refused) throw new AppError('rate_limited', refusalMessage(attempt, 'MFA code'));
    try {
      const r = await check();
      attempt.done(true);
      return r;
    } catch (e) {
      attempt.done(e instanceof AppError && e.details?.reason === 'invalid_code' ? false : undefined);
      throw e;
    }
  }

  async #fail(user: MfaSubject, address: string, now: number, purpose: string, why: string): Promise<never> {
    await inTx(this.deps, async (_tx, audit) => {
      audit({ type: 'mfa.failed', actor: user.name, at: now, data: { purpose, why, clientAddress: address } });
    });
    throw new AppError('mfa_required', `MFA code refused: ${why}`, { reason: 'invalid_code' });
  }

  #now(): number {
    return this.deps.clock.now().getTime();
  }
}
