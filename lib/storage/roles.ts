/**
 * The first minutes after a deployment: Azure RBAC role assignments take up to ~10 minutes to reach
 * Storage and Key Vault, so an app whose identity was granted its roles seconds ago (the first
 * `azd up`) is answered 403 (AuthorizationPermissionMismatch, AuthorizationFailure, Key Vault
 * Forbidden) for a while. Within ROLE_PROPAGATION_MS of this process's start such a 403 is waited
 * out with backoff and logged as "waiting for role assignments to propagate"; after it, a 403 is
 * what it says (a missing role) and fails as before.
 */
import { restErrorCode, restStatus } from '../util/errors';

/** How long after the process started a 403 is taken for a role assignment still propagating. */
export const ROLE_PROPAGATION_MS = 10 * 60_000;

const PROCESS_STARTED = Date.now() - Math.round(process.uptime() * 1000);

export interface RolePropagation {
  /** When this process (the app instance) started, ms since the epoch. */
  startedAt: number;
  windowMs: number;
  /** First wait, doubled each time up to maxDelayMs. */
  firstDelayMs: number;
  maxDelayMs: number;
  log: (message: string) => void;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
}

export const DEFAULT_ROLE_PROPAGATION: RolePropagation = {
  startedAt: PROCESS_STARTED,
  windowMs: ROLE_PROPAGATION_MS,
  firstDelayMs: 2_000,
  maxDelayMs: 30_000,
  log: (m) => console.warn(m),
  now: () => Date.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

const DENIED_CODES = new Set(['AuthorizationPermissionMismatch', 'AuthorizationFailure', 'AuthorizationSourceIPMismatch', 'Forbidden', 'ForbiddenByRbac']);

/** A 403 from Storage or Key Vault that says "not authorised" (the error itself or its causes). */
export function isAuthorizationDenied(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (restStatus(e) === 403 && (DENIED_CODES.has(restErrorCode(e) ?? '') || restErrorCode(e) === undefined)) return true;
  }
  return false;
}

/**
 * Runs `fn`; while it fails with an authorization 403 inside the propagation window, waits with
 * backoff and runs it again (fn must be safe to repeat: activities are).
 */
export async function whileRolesPropagate<T>(what: string, fn: () => Promise<T>, p: RolePropagation = DEFAULT_ROLE_PROPAGATION): Promise<T> {
  let delay = p.firstDelayMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      const left = p.startedAt + p.windowMs - p.now();
      if (!isAuthorizationDenied(err) || left <= 0) throw err;
      const wait = Math.min(delay, left);
      p.log(`lakeinfer: ${what}: storage or Key Vault answered 403 (${restErrorCode(err) ?? firstLine(err)}); waiting for role assignments to propagate (they take up to 10 minutes after a deployment); retrying in ${Math.ceil(wait / 1000)} s, for ${Math.ceil(left / 60_000)} more minute(s) at most`);
      await p.sleep(wait);
      delay = Math.min(delay * 2, p.maxDelayMs);
    }
  }
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 200);
}
