/**
 * A small client of the job API (the local host or a deployed Function App): submit, status,
 * watch with a progress bar, cancel, purge a finished job's history.
 */
import type { JobView } from '../api';

export interface ApiOptions {
  url: string;
  /** Function key for a deployed app (x-functions-key). */
  key?: string;
}

async function call(opts: ApiOptions, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (opts.key) headers['x-functions-key'] = opts.key;
  const res = await fetch(`${opts.url.replace(/\/$/, '')}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // keep text
  }
  return { status: res.status, body: parsed };
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
  const r = await call(opts, 'POST', '/api/jobs', request);
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
export async function watch(opts: ApiOptions, jobId: string, onUpdate: (v: JobView) => void, intervalMs = 500, timeoutMs = 3_600_000): Promise<JobView> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await status(opts, jobId);
    onUpdate(v);
    if (TERMINAL.includes(v.runtimeStatus)) return v;
    if (Date.now() > end) throw new Error(`job ${jobId} still ${v.runtimeStatus} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
