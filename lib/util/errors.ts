/**
 * Typed errors. Every error lakeinfer raises on purpose is a LakeInferError with a stable `code`
 * (recorded in _failures.jsonl and returned in HTTP bodies) and a `retryable` flag that tells the
 * orchestrator whether retrying the activity can help.
 */
export type ErrorCode =
  | 'ConfigMissing'
  | 'ConfigInvalid'
  | 'ContainerNotFound'
  | 'BlobNotFound'
  | 'StorageUnavailable'
  | 'SecretUnavailable'
  | 'InvalidName'
  | 'InvalidRequest'
  | 'PlanInvalid'
  | 'NoInputImages'
  | 'ManifestInvalid'
  | 'ModelNotFound'
  | 'ModelInvalid'
  | 'ModelChanged'
  | 'ModelOutputInvalid'
  | 'FragmentChanged'
  | 'JobSpecConflict'
  | 'OutputConflict'
  | 'ContinuousLoop'
  | 'JobCancelled'
  | 'AttemptsExhausted'
  | 'ImageTooLarge'
  | 'ImageEmpty'
  | 'ImageDecodeFailed'
  | 'InferenceFailed'
  | 'VideoDecodeFailed'
  | 'VideoUnsupported'
  | 'VideoTooLarge'
  | 'Internal';

export class LakeInferError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  /** The setting, field or blob the error is about, when there is one. */
  readonly target?: string;

  constructor(code: ErrorCode, message: string, opts: { retryable?: boolean; target?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'LakeInferError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
    if (opts.target !== undefined) this.target = opts.target;
  }

  toJSON(): { code: ErrorCode; message: string; target?: string } {
    return this.target === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, target: this.target };
  }
}

/** Normalises anything thrown into an Error (strings, objects, null...). */
export function ensureErrorType(err: unknown): Error {
  if (err instanceof Error) return err;
  let text: string;
  if (typeof err === 'string') text = err;
  else {
    try {
      text = JSON.stringify(err) ?? String(err);
    } catch {
      text = String(err);
    }
  }
  return new Error(text);
}

export function isLakeInferError(err: unknown, code?: ErrorCode): err is LakeInferError {
  return err instanceof LakeInferError && (code === undefined || err.code === code);
}

/** Storage REST errors: the SDK's RestError carries statusCode; we avoid importing core-rest-pipeline. */
export function restStatus(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && 'statusCode' in err) {
    const s = (err as { statusCode?: unknown }).statusCode;
    return typeof s === 'number' ? s : undefined;
  }
  return undefined;
}

export function restErrorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null) {
    const e = err as { code?: unknown; details?: { errorCode?: unknown } };
    if (typeof e.details?.errorCode === 'string') return e.details.errorCode;
    if (typeof e.code === 'string') return e.code;
  }
  return undefined;
}

/** Whether a storage failure is worth retrying at the activity level (after the SDK's own retries). */
export function isTransientStorageError(err: unknown): boolean {
  const status = restStatus(err);
  if (status === undefined) {
    const code = restErrorCode(err);
    return code === 'ECONNRESET' || code === 'ECONNREFUSED' || code === 'ETIMEDOUT' || code === 'REQUEST_SEND_ERROR';
  }
  return status === 408 || status === 429 || status >= 500;
}
