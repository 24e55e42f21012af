import type { RequestStatusCol } from '../store/schema.js';

export type RequestStatus = RequestStatusCol;

/** What can happen to a request. */
export type RequestEvent = 'approve' | 'deny' | 'cancel' | 'expire';

const TRANSITIONS: Record<RequestStatus, Partial<Record<RequestEvent, RequestStatus>>> = {
  pending: { approve: 'approved', deny: 'denied', cancel: 'cancelled', expire: 'expired' },
  approved: {},
  denied: {},
  cancelled: {},
  expired: {},
};

export type Transition<S> = { ok: true; from: S; to: S } | { ok: false; from: S; message: string };

/** Pure: where does `event` take a request in `status`? Illegal moves are values, not throws. */
export function requestTransition(status: RequestStatus, event: RequestEvent): Transition<RequestStatus> {
  const to = TRANSITIONS[status][event];
  return to
    ? { ok: true, from: status, to }
    : { ok: false, from: status, message: `cannot ${event} a request that is ${status}` };
}

export const REQUEST_STATUSES: readonly RequestStatus[] = ['pending', 'approved', 'denied', 'cancelled', 'expired'];
export const REQUEST_EVENTS: readonly RequestEvent[] = ['approve', 'deny', 'cancel', 'expire'];
