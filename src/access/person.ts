import { canonicalEmail } from '../domain/email.js';
import type { Principal } from '../domain/principal.js';
import type { Executor } from '../store/db.js';
import { getUserById } from '../store/users.js';

/**
 * Who a principal is as a person: one person may hold two accounts (a local user, and an SSO
 * account named by the same email), so self-approval and "N distinct approvers" compare emails
 * (case-insensitively) as well as ids.
 */
export function personKey(u: { readonly id: string; readonly email?: string | null | undefined }): string {
  const email = u.email ? canonicalEmail(u.email) : '';
  return email ? `email:${email}` : `id:${u.id}`;
}

export async function samePerson(ex: Executor, userId: string, actor: Principal): Promise<boolean> {
  if (userId === actor.id) return true;
  const other = await getUserById(ex, userId);
  return other !== undefined && personKey({ id: other.id, email: other.email }) === personKey(actor);
}

