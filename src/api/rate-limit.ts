import { loginThrottle, type UserAddressThrottle } from '../auth/throttle.js';

/**
 * Failed-login throttling per user name and per client address (in memory, per instance): after 5
 * failures within 15 minutes each further attempt must wait, doubling up to 15 minutes; attempts
 * in flight count until they end (src/auth/throttle.ts).
 */
export type LoginLimiter = UserAddressThrottle;
export const newLoginLimiter = loginThrottle;
