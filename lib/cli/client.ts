/**
 * A small client of the job API (the local host or a deployed Function App): submit, status,
 * watch with a progress bar, cancel, purge a finished job's history.
 */
import type { JobView } from '../api/jobs';

export interface ApiOptions {
  url: string;
  /** Function key for a deployed app (x-functions-key). */
  key?: string;
}

/**
 * One API call; a 503 (the host's storage restarted during the request, an app scaling out) is sent
 * again after its Retry-After or a short backoff, up to 5 times, when `again` allows (every call of
 * this client is idempotent, but a job request without a jobId).
 */
async function call(opts: ApiOptions, method: string, path: string, body?: unknown, again = true): Promise<{ status: number; body: unknown }> {
  for (let attempt = 1; ; attempt++) {
    const r = await callOnce(opts, method, path, body);
    if (r.status !== 503 || !again || attempt >= 5) return { status: r.status, body: r.body };
    await new Promise((res) => setTimeout(res, r.retryAfterMs ?? 500 * 2 ** (attempt - 1)));
  }
}

async function callOnce(opts: ApiOptions, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown; retryAfterMs?: number }> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (opts.key) headers['x-functions-key'] = opts.key;
  let res: Response;
  try {
    res = await fetch(`${opts.url.replace(/\/$/, '')}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  } catch (err) {
    throw new ApiUnreachableError(opts.url, err);
  }
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // keep text
  }
  const after = Number(res.headers.get('retry-after'));
  return { status: res.status, body: parsed, ...(after > 0 && after <= 60 ? { retryAfterMs: after * 1000 } : {}) };
}

/** Nothing answered at the API's URL: say where we looked and what to start. */
export class ApiUnreachableError extends Error {
  constructor(url: string, cause: unknown) {
    const code = (cause as { cause?: { code?: string } }).cause?.code ?? (cause as { code?: string }).code;
    const local = /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:|\/|$)/.test(url);
    super(
      `no job API answers at ${url}${code ? ` (${code})` : ''}: ` +
        (local
          ? "is `lakeinfer host` running? Start it in another terminal with 'npm run lakeinfer -- host --data .lakeinfer/azurite', or pass --url (LAKEINFER_URL) if it listens elsewhere"
          : 'check --url (LAKEINFER_URL): a deployed app is https://<app>.azurewebsites.net (azd env get-values prints LAKEINFER_URL)'),
    );
    this.name = 'ApiUnreachableError';
  }
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    const e = (body as { error?: { message?: string; target?: string } } | undefined)?.error;
    super(e?.message ? `HTTP ${status}: ${e.message}` : `HTTP ${status}: ${JSON.stringify(body)}`);
  }
}

export async function submit(opts: ApiOptions, request: unknown): Promise<JobView> {
  const hasId = typeof request === 'object' && request !== null && typeof (request as { jobId?: unknown }).jobId === 'string';
  const r = await call(opts, 'POST', '/api/jobs', request, hasId);
  if (r.status !== 202 && r.status !== 200) throw new ApiError(r.status, r.body);
  return r.body as JobView;
}

export async function status(opts: ApiOptions, jobId: string): Promise<JobView> {
  const r = await call(opts, 'GET', `/api/jobs/${encodeURIComponent(jobId)}`);
  if (r.status !== 200) throw new ApiError(r.status, r.body);
  return r.body as JobView;
}

export async function cancel(opts: ApiOptions, jobId: string): Promise<JobView> {
  const r = await call(opts, 'DELETE', `/api/jobs/${encodeURIComponent(jobId)}`);
  if (r.status !== 202) throw new ApiError(r.status, r.body);
  return r.body as JobView;
}

export interface JobListPage {
  jobs: import('../api/jobs').JobListItem[];
  continuationToken?: string;
}

/** GET /api/jobs: one page, newest first. */
export async function list(opts: ApiOptions, query: { status?: string; createdFrom?: string; top?: number; continuationToken?: string } = {}): Promise<JobListPage> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
  const r = await call(opts, 'GET', `/api/jobs${q.size ? `?${q}` : ''}`);
  if (r.status !== 200) throw new ApiError(r.status, r.body);
  return r.body as JobListPage;
}

export interface RetryView extends JobView {
  resumed?: boolean;
  retried?: { previousStatus: string; imagesDone: number; imagesFailed: number };
}

/** POST /api/jobs/{id}/retry: the failed job resumed with its own request. */
export async function retry(opts: ApiOptions, jobId: string): Promise<RetryView> {
  const r = await call(opts, 'POST', `/api/jobs/${encodeURIComponent(jobId)}/retry`);
  if (r.status !== 202) throw new ApiError(r.status, r.body);
  return r.body as RetryView;
}

export async function purge(opts: ApiOptions, jobId: string): Promise<{ jobId: string; purged: boolean; note: string }> {
  const r = await call(opts, 'DELETE', `/api/jobs/${encodeURIComponent(jobId)}/history`);
  if (r.status !== 200) throw new ApiError(r.status, r.body);
  return r.body as { jobId: string; purged: boolean; note: string };
}

const TERMINAL = ['Completed', 'Failed', 'Terminated', 'Canceled'];

export function progressLine(v: JobView, width = 30): string {
  const p = v.progress;
  if (!p) return `${v.jobId}: ${v.runtimeStatus}`;
  const total = p.images.total;
  const done = p.images.succeeded + p.images.failed + p.images.skipped;
  const frac = total > 0 ? Math.min(1, done / total) : p.phase === 'done' ? 1 : 0;
  const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
  return `[${bar}] ${(frac * 100).toFixed(0).padStart(3)}%  ${p.phase.padEnd(10)} images ${done}/${total} (failed ${p.images.failed}, skipped ${p.images.skipped})  partitions ${p.partitions.done + p.partitions.failed}/${p.partitions.total}`;
}

/** Polls until the job ends; calls onUpdate with each status. */
/** How often `lakeinfer run`/`submit --wait` (and the bench, to measure what a user gets) poll a job's status. */
export const POLL_MS = 500;

export async function watch(opts: ApiOptions, jobId: string, onUpdate: (v: JobView) => void, intervalMs = POLL_MS, timeoutMs = 3_600_000): Promise<JobView> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await status(opts, jobId);
    onUpdate(v);
    if (TERMINAL.includes(v.runtimeStatus)) return v;
    if (Date.now() > end) throw new Error(`job ${jobId} still ${v.runtimeStatus} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
