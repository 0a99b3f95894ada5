/**
 * How an activity attempt can end other than with a result or its own error.
 */

/**
 * The process running the activity is gone (killed, crashed, out of memory): on Azure its app
 * instance never acknowledged the work-item message, which is delivered again once its visibility
 * timeout expires. It is not a failure of the activity and does not count against its retries.
 */
export class ActivityLostError extends Error {
  override readonly name = 'ActivityLostError';
}

/** The activity ran longer than host.json's functionTimeout: the host cancels it and fails it. */
export class FunctionTimeoutError extends Error {
  override readonly name = 'FunctionTimeoutError';
}

export function isActivityLost(err: unknown): boolean {
  return err instanceof ActivityLostError || (err instanceof Error && err.name === 'ActivityLostError');
}
