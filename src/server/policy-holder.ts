import { createHash } from 'node:crypto';
import { existsSync, watchFile, unwatchFile } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { inTx, type AccessDeps } from '../access/context.js';
import { formatPolicyError, loadPolicyFile, type KindSchemas } from '../policy/index.js';
import type { Policy } from '../policy/types.js';
import { disableMissingUsers, getUserByName, upsertUser } from '../store/users.js';
import { revokeEverything } from '../auth/login-tokens.js';
import { canonicalEmail } from '../domain/email.js';
import type { Tx } from '../store/db.js';
import { ConfigError } from '../domain/errors.js';

type Deps = Pick<AccessDeps, 'store' | 'clock' | 'appendAudit'>;

/**
 * Holds the current policy. Loads it at start (a bad file stops the server with every error,
 * file:line); watches the file and swaps in a new valid version, auditing the change and
 * syncing users; a bad edit is audited and the running version stays.
 */
export class PolicyHolder {
  #policy: Policy;
  readonly #path: string;
  readonly #kinds: KindSchemas;
  readonly #listeners = new Set<(p: Policy) => void>();
  readonly #onDisabled = new Set<(users: readonly string[]) => Promise<void>>();
  #watching = false;
  #reloading: Promise<void> = Promise.resolve();

  private constructor(policy: Policy, path: string, kinds: KindSchemas) {
    this.#policy = policy;
    this.#path = path;
    this.#kinds = kinds;
  }

  static async load(path: string, kinds: KindSchemas, deps: Deps): Promise<PolicyHolder> {
    const r = await loadPolicyFile(path, kinds);
    if (!r.ok) {
      const missing = !existsSync(path) ? `\n(no policy at ${path}: start from examples/policy.yaml, see docs/policy.md)` : '';
      throw new ConfigError(`policy file has errors:\n${r.errors.map(formatPolicyError).join('\n')}${missing}`);
    }
    const holder = new PolicyHolder(r.policy, path, kinds);
    await holder.#record(deps, undefined, r.policy);
    return holder;
  }

  get current(): Policy {
    return this.#policy;
  }

  onChange(fn: (p: Policy) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * Called (and awaited) after a reload disabled users, e.g. to end their access. Also runs
   * when the reload was triggered by the file watcher.
   */
  onUsersDisabled(fn: (users: readonly string[]) => Promise<void>): () => void {
    this.#onDisabled.add(fn);
    return () => this.#onDisabled.delete(fn);
  }

  /** Re-reads the file now. Returns the errors if it is invalid (the old policy stays). */
  async reload(deps: Deps): Promise<{ changed: boolean; errors?: string[] }> {
    const r = await loadPolicyFile(this.#path, this.#kinds);
    const at = deps.clock.now().getTime();
    if (!r.ok) {
      const errors = r.errors.map(formatPolicyError);
      await inTx(deps as AccessDeps, async (_tx, audit) => {
        audit({ type: 'policy.reload_failed', actor: 'system', at, data: { file: this.#path, errors: errors.slice(0, 50), keptVersion: this.#policy.version } });
      });
      return { changed: false, errors };
    }
    if (r.policy.version === this.#policy.version) return { changed: false };
    const previous = this.#policy;
    const disabled = await this.#record(deps, previous, r.policy);
    this.#policy = r.policy;
    for (const fn of this.#listeners) fn(r.policy);
    if (disabled.length > 0) for (const fn of this.#onDisabled) await fn(disabled);
    return { changed: true };
  }

  /**
   * Polls the file (works on every filesystem, survives editors that replace the file). A change
   * is applied once the file has read the same twice, two polls apart: a file caught in the
   * middle of a non-atomic write can be a valid policy with fewer users (cut before `users:`),
   * and applying it would revoke the access of everyone it leaves out (second review).
   */
  watch(deps: Deps, intervalMs = 1000, onError: (e: unknown) => void = () => {}): void {
    if (this.#watching) return;
    this.#watching = true;
    watchFile(this.#path, { interval: intervalMs, persistent: false }, () => {
      this.#reloading = this.#reloading.then(async () => {
        if (await this.#settled(2 * intervalMs)) await this.reload(deps).then(() => undefined, onError);
      });
    });
  }

  /** Whether the file reads the same twice, `ms` apart (false: it is still changing; its next change event tries again). */
  async #settled(ms: number): Promise<boolean> {
    const read = () => readFile(this.#path).then((b) => createHash('sha256').update(b).digest('hex'), () => 'missing');
    const first = await read();
    await new Promise((r) => setTimeout(r, ms));
    return this.#watching && (await read()) === first;
  }

  async close(): Promise<void> {
    if (this.#watching) unwatchFile(this.#path);
    this.#watching = false;
    await this.#reloading;
  }

  /** Stores the version, syncs policy users, and audits it, in one transaction. Returns the users it disabled. */
  async #record(deps: Deps, previous: Policy | undefined, next: Policy): Promise<string[]> {
    const at = deps.clock.now().getTime();
    const disabled: string[] = [];
    await inTx(deps as AccessDeps, async (tx, audit) => {
      const seen = await tx.selectFrom('policy_versions').select('version').where('version', '=', next.version).executeTakeFirst();
      if (!seen) await tx.insertInto('policy_versions').values({ version: next.version, source: next.source, loaded_at: at }).execute();
      const userChanges: Array<{ user: string; change: string }> = [];
      for (const u of next.users.values()) {
        const r = await upsertUser(tx, {
          name: u.name, kind: 'user', email: u.email, passwordHash: u.passwordHash, groups: u.groups,
          attributes: u.attributes, isAdmin: u.admin, source: 'policy',
        }, at);
        if (r.created) userChanges.push({ user: u.name, change: 'created' });
        else if (r.changes.length > 0) userChanges.push({ user: u.name, change: `updated ${r.changes.join(', ')}` });
      }
      for (const name of await disableMissingUsers(tx, 'policy', new Set(next.users.keys()), at)) {
        // Revoked, not only refused while the user is disabled: a name added back (perhaps for
        // someone else) would otherwise bring the old tokens, refresh tokens and web sessions back
        // to life (review 2026-12-02).
        const row = await getUserByName(tx, name);
        const revoked = row === undefined ? { tokens: 0, sessions: 0 } : await dropCredentials(tx, row.id, at);
        userChanges.push({ user: name, change: `disabled (removed from policy); ${revoked.tokens} tokens and ${revoked.sessions} web sessions revoked, MFA enrolment removed` });
        disabled.push(name);
        // The same person's SSO account (the same email, as approvals count people) goes with them:
        // it stayed enabled, with its tokens and a way to sign in again (review 2026-12-02).
        if (row?.email) {
          const person = canonicalEmail(row.email);
          const sso = await tx.selectFrom('users').select(['id', 'name', 'email']).where('source', '=', 'oidc').where('disabled', '=', 0).execute();
          for (const u of sso.filter((x) => x.email !== null && canonicalEmail(x.email) === person)) {
            await tx.updateTable('users').set({ disabled: 1, updated_at: at }).where('id', '=', u.id).execute();
            const r = await dropCredentials(tx, u.id, at);
            userChanges.push({ user: u.name, change: `disabled (the SSO account of ${name}, removed from policy); ${r.tokens} tokens and ${r.sessions} web sessions revoked, MFA enrolment removed` });
            disabled.push(u.name);
          }
        }
      }
      if (!previous) {
        const last = await tx.selectFrom('meta').select('value').where('key', '=', 'policy_version').executeTakeFirst();
        if (last?.value === next.version && userChanges.length === 0) return;
        audit({ type: last ? 'policy.changed' : 'policy.loaded', actor: 'system', at, data: {
          file: next.source, version: next.version, previousVersion: last?.value ?? null, users: userChanges,
          resources: next.resources.size, rules: next.rules.length,
        } });
      } else {
        audit({ type: 'policy.changed', actor: 'system', at, data: {
          file: next.source, version: next.version, previousVersion: previous.version, users: userChanges,
          resources: next.resources.size, rules: next.rules.length,
        } });
      }
      await tx.deleteFrom('meta').where('key', '=', 'policy_version').execute();
      await tx.insertInto('meta').values({ key: 'policy_version', value: next.version }).execute();
    });
    return disabled;
  }
}

/**
 * A removed user's ways in: every API token, refresh token and web session revoked, and the MFA
 * enrolment removed (the name's next holder enrols their own: fourth review, 2026-12-02).
 */
async function dropCredentials(tx: Tx, userId: string, at: number): Promise<{ tokens: number; sessions: number }> {
  const revoked = await revokeEverything(tx, userId, at);
  await tx.deleteFrom('mfa_recovery_codes').where('user_id', '=', userId).execute();
  await tx.deleteFrom('mfa_totp').where('user_id', '=', userId).execute();
  return revoked;
}
