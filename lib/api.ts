/**
 * The job HTTP API as plain functions over a JobClient (the Durable client on Azure, the local
 * host's engine locally): submit (validated, idempotent per jobId), status, cancel.
 */
import { isLakeInferError } from './errors';
import { parseJobRequest, type JobSpec } from './jobs';
import type { JobProgress } from './orchestration';
import { ORCHESTRATOR, type OrchestratorInput } from './orchestrator';

export type RuntimeStatus = 'Running' | 'Pending' | 'Completed' | 'Failed' | 'Terminated' | 'ContinuedAsNew' | 'Canceled' | 'Suspended' | 'Unknown';

export interface InstanceStatus {
  instanceId: string;
  runtimeStatus: RuntimeStatus;
  input?: unknown;
  output?: unknown;
  customStatus?: unknown;
  createdTime?: string;
  lastUpdatedTime?: string;
}

export interface JobClient {
  start(orchestrator: string, instanceId: string, input: unknown): Promise<void>;
  status(instanceId: string): Promise<InstanceStatus | undefined>;
  terminate(instanceId: string, reason: string): Promise<void>;
}

export interface ApiResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

const ACTIVE: RuntimeStatus[] = ['Running', 'Pending', 'ContinuedAsNew', 'Suspended'];

export interface JobView {
  jobId: string;
  runtimeStatus: RuntimeStatus;
  progress?: JobProgress;
  output?: unknown;
  createdTime?: string;
  lastUpdatedTime?: string;
  outputs?: { container: string; prefix: string; manifest: string; results: string; failures: string };
  links: { status: string; cancel: string };
}

function view(s: InstanceStatus, baseUrl: string, job?: JobSpec): JobView {
  const link = `${baseUrl.replace(/\/$/, '')}/api/jobs/${encodeURIComponent(s.instanceId)}`;
  const v: JobView = { jobId: s.instanceId, runtimeStatus: s.runtimeStatus, links: { status: link, cancel: link } };
  if (s.customStatus) v.progress = s.customStatus as JobProgress;
  if (s.output !== undefined && s.output !== null) v.output = s.output;
  if (s.createdTime) v.createdTime = s.createdTime;
  if (s.lastUpdatedTime) v.lastUpdatedTime = s.lastUpdatedTime;
  if (job) {
    v.outputs = {
      container: job.output.container,
      prefix: job.jobPrefix,
      manifest: `${job.jobPrefix}_manifest.json`,
      results: `${job.jobPrefix}results.jsonl`,
      failures: `${job.jobPrefix}_failures.jsonl`,
    };
  }
  return v;
}

function jobOf(input: unknown): JobSpec | undefined {
  if (typeof input !== 'object' || input === null) return undefined;
  const i = input as Partial<{ job: JobSpec; state: { job: JobSpec } }>;
  return i.job ?? i.state?.job;
}

/** POST /api/jobs. Same jobId while running: the running job (202); finished: its result (200); failed or terminated: resumed (202). */
export async function submitJob(client: JobClient, body: unknown, baseUrl: string, now = new Date()): Promise<ApiResponse> {
  let job: JobSpec;
  try {
    job = parseJobRequest(body, now);
  } catch (err) {
    if (isLakeInferError(err)) return { status: 400, body: { error: err.toJSON() } };
    throw err;
  }
  const existing = await client.status(job.jobId);
  if (existing && ACTIVE.includes(existing.runtimeStatus)) {
    return { status: 202, body: { ...view(existing, baseUrl, jobOf(existing.input) ?? job), resumed: false, duplicate: true }, headers: { Location: view(existing, baseUrl).links.status } };
  }
  if (existing && existing.runtimeStatus === 'Completed') {
    return { status: 200, body: { ...view(existing, baseUrl, jobOf(existing.input) ?? job), duplicate: true } };
  }
  // Resuming keeps the first submission time, so the manifest tells the job's whole story.
  const previous = existing ? jobOf(existing.input) : undefined;
  const input: OrchestratorInput = { job: previous ? { ...job, submittedAt: previous.submittedAt } : job };
  await client.start(ORCHESTRATOR, job.jobId, input);
  const started = (await client.status(job.jobId)) ?? { instanceId: job.jobId, runtimeStatus: 'Pending' as const };
  const v = view(started, baseUrl, job);
  return { status: 202, body: { ...v, resumed: existing !== undefined }, headers: { Location: v.links.status } };
}

export async function jobStatus(client: JobClient, jobId: string, baseUrl: string): Promise<ApiResponse> {
  const s = await client.status(jobId);
  if (!s) return { status: 404, body: { error: { code: 'JobNotFound', message: `no job with id '${jobId}'`, target: 'jobId' } } };
  return { status: 200, body: view(s, baseUrl, jobOf(s.input)) };
}

export async function cancelJob(client: JobClient, jobId: string, baseUrl: string): Promise<ApiResponse> {
  const s = await client.status(jobId);
  if (!s) return { status: 404, body: { error: { code: 'JobNotFound', message: `no job with id '${jobId}'`, target: 'jobId' } } };
  if (!ACTIVE.includes(s.runtimeStatus)) return { status: 409, body: { error: { code: 'JobNotRunning', message: `job '${jobId}' is ${s.runtimeStatus}; only running jobs can be cancelled` } } };
  await client.terminate(jobId, 'cancelled by DELETE /api/jobs');
  return { status: 202, body: view((await client.status(jobId)) ?? s, baseUrl, jobOf(s.input)) };
}
