/**
 * The job HTTP API as plain functions over a JobClient (the Durable client on Azure, the local
 * host's engine locally) and, where given, the data account: submit (validated, idempotent per
 * jobId, one request per jobId), status, cancel (decided against finalization once, in the job's
 * _outcome.json).
 */
import type { BlobServiceClient } from '@azure/storage-blob';
import { isLakeInferError, LakeInferError } from '../util/errors';
import { clearOutcome, decideOutcome, enclosedJob, enclosingJob, jobRecordName, readOutcome, type JobRecord, type JobStatus } from '../job/folder';
import { jobOf, parseJobRequest, requestOf, specDifferences, specDigest, type JobSpec } from '../job/request';
import type { JobProgress } from '../job/totals';
import { ORCHESTRATOR, STOP_EVENT, type JobOutput, type OrchestratorInput } from '../orchestration/orchestrator';
import { readJson } from '../storage';
import { continuousFeedIssue } from './feeds';
import type { InstanceFilter, InstanceStatus, JobClient, RuntimeStatus } from './client';

export type { InstanceFilter, InstanceStatus, JobClient, RuntimeStatus } from './client';

export interface ApiResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface ApiOptions {
  /** The data account holding the job folders (job records, outcomes); without it those checks are skipped. */
  storage?: () => Promise<BlobServiceClient>;
  now?: Date;
  /** Containers jobs may read from and write to (the provisioned ones); empty or absent: any. */
  containers?: { input: string[]; output: string[] };
  /** A completed job (with failed images) is resumed like a failed one instead of answered as done: retry. */
  resumeCompleted?: boolean;
  /** Why this deployment cannot run continuous jobs (no blob events reach it); absent: it can. */
  continuousUnavailable?: string;
}

/** A job naming a container the app was not given access to: 400 now, not 403 mid-job. */
export function containerIssue(job: Pick<JobSpec, 'input' | 'output'>, allowed: ApiOptions['containers']): LakeInferError | undefined {
  for (const side of ['input', 'output'] as const) {
    const list = allowed?.[side] ?? [];
    const name = job[side].container;
    if (list.length > 0 && !list.includes(name)) {
      return new LakeInferError('InvalidRequest', `field '${side}.container' names '${name}', which this deployment does not ${side === 'input' ? 'read' : 'write'} (${side.toUpperCase()}_CONTAINERS: ${list.join(', ')})`, { target: `${side}.container` });
    }
  }
  return undefined;
}

function error(status: number, e: LakeInferError): ApiResponse {
  return { status, body: { error: e.toJSON() } };
}

const ACTIVE: RuntimeStatus[] = ['Running', 'Pending', 'ContinuedAsNew', 'Suspended'];

export interface JobView {
  jobId: string;
  runtimeStatus: RuntimeStatus;
  /**
   * The job's own status: running; cancelling (a cancel was accepted, the orchestration has not
   * ended yet: partitions stop at their next image); or how it ended (agrees with _manifest.json).
   */
  status: 'running' | 'cancelling' | JobStatus;
  progress?: JobProgress;
  output?: unknown;
  createdTime?: string;
  lastUpdatedTime?: string;
  outputs?: { container: string; prefix: string; manifest: string; results: string; failures: string };
  links: { status: string; cancel: string; history: string };
}

function view(s: InstanceStatus, baseUrl: string, job?: JobSpec, cancelling = false): JobView {
  const link = `${baseUrl.replace(/\/$/, '')}/api/jobs/${encodeURIComponent(s.instanceId)}`;
  const ended = (s.output as Partial<JobOutput> | undefined)?.status;
  const status: JobView['status'] = ACTIVE.includes(s.runtimeStatus) ? (cancelling ? 'cancelling' : 'running') : s.runtimeStatus === 'Completed' ? (ended ?? 'succeeded') : s.runtimeStatus === 'Failed' ? 'failed' : 'cancelled';
  const v: JobView = { jobId: s.instanceId, runtimeStatus: s.runtimeStatus, status, links: { status: link, cancel: link, history: `${link}/history` } };
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

/**
 * POST /api/jobs. The same jobId: running, the running job (202); completed, its result (200);
 * failed or cancelled, resumed with its plan (202). A request that differs in what the job computes
 * or where it writes is a 409 naming the fields, unless it says `restart: true` (a finished job is
 * then replaced; a running one must be cancelled first).
 */
export async function submitJob(client: JobClient, body: unknown, baseUrl: string, opts: ApiOptions = {}): Promise<ApiResponse> {
  let job: JobSpec;
  try {
    job = parseJobRequest(body, opts.now);
  } catch (err) {
    if (isLakeInferError(err)) return error(400, err);
    throw err;
  }
  const denied = containerIssue(job, opts.containers);
  if (denied) return error(400, denied);
  if (job.mode === 'continuous' && opts.continuousUnavailable) {
    return error(400, new LakeInferError('InvalidRequest', `field 'mode': continuous jobs cannot run on this deployment: ${opts.continuousUnavailable}`, { target: 'mode' }));
  }
  const loop = await continuousFeedIssue(client, job);
  if (loop) return error(409, loop);
  const existing = await client.status(job.jobId);
  const previous = existing ? jobOf(existing.input) : undefined;
  const conflict = (fields: string[]): ApiResponse =>
    error(409, new LakeInferError('JobSpecConflict', `job '${job.jobId}' already exists with another request (${fields.join(', ')} differ); submit it with "restart": true to replace it, or use another jobId`, { target: fields[0] ?? 'jobId' }));
  if (previous && !job.restart) {
    const fields = specDifferences(previous, job);
    if (fields.length > 0) return conflict(fields);
  }
  if (existing && ACTIVE.includes(existing.runtimeStatus)) {
    if (job.restart) return error(409, new LakeInferError('JobSpecConflict', `job '${job.jobId}' is running; cancel it before restarting it`, { target: 'restart' }));
    return { status: 202, body: { ...view(existing, baseUrl, previous ?? job), resumed: false, duplicate: true }, headers: { Location: view(existing, baseUrl).links.status } };
  }
  // A job that ended cancelled (a continuous job's DELETE, or a cancel that won during finalize) ends
  // Completed with a cancelled output: it is resumed like a terminated one.
  const endedCancelled = (existing?.output as Partial<JobOutput> | undefined)?.status === 'cancelled';
  if (existing?.runtimeStatus === 'Completed' && !job.restart && !opts.resumeCompleted && !endedCancelled) {
    return { status: 200, body: { ...view(existing, baseUrl, previous ?? job), duplicate: true } };
  }
  const output = opts.storage ? (await opts.storage()).getContainerClient(job.output.container) : undefined;
  // A missing output container holds no job folders (planJob creates it).
  if (output && (await output.exists())) {
    const other = await enclosingJob(output, job.jobPrefix);
    if (other) return error(409, new LakeInferError('OutputConflict', `the job folder '${job.jobPrefix}' would lie inside the folder of job '${other}'; choose another output.prefix`, { target: 'output.prefix' }));
    const inner = await enclosedJob(output, job.jobPrefix);
    if (inner) return error(409, new LakeInferError('OutputConflict', `the job folder '${job.jobPrefix}' would contain the folder of job '${inner}'; choose another output.prefix or jobId`, { target: 'output.prefix' }));
    // A job whose orchestration history is gone still has its folder: the same rule applies.
    const record = previous ? undefined : await readJson<JobRecord>(output, jobRecordName(job.jobPrefix));
    if (record && !job.restart && record.digest !== specDigest(job)) return conflict(specDifferences(record.spec, job));
  }
  const resume = previous !== undefined && !job.restart;
  if (resume) {
    // The same execution goes on: its first submission time, its plan; a cancelled or failed outcome is forgotten.
    job = { ...job, submittedAt: previous.submittedAt, executionId: previous.executionId };
    if (output && (await output.exists())) await clearOutcome(output, job.jobPrefix);
    outcomeReads.delete(outcomeKey(job));
  }
  const input: OrchestratorInput = { job };
  try {
    await client.start(ORCHESTRATOR, job.jobId, input);
  } catch (err) {
    // Simultaneous submissions of one new jobId: one starts it, the others see it running.
    const now = await client.status(job.jobId);
    if (now && ACTIVE.includes(now.runtimeStatus)) return { status: 202, body: { ...view(now, baseUrl, jobOf(now.input) ?? job), resumed: false, duplicate: true }, headers: { Location: view(now, baseUrl).links.status } };
    throw err;
  }
  const started = (await client.status(job.jobId)) ?? { instanceId: job.jobId, runtimeStatus: 'Pending' as const };
  const v = view(started, baseUrl, job);
  return { status: 202, body: { ...v, resumed: resume, ...(job.restart && existing ? { restarted: true } : {}) }, headers: { Location: v.links.status } };
}

/**
 * Outcome reads for status polls of running jobs, kept for OUTCOME_TTL_MS: a client polling every
 * 100-500 ms (the CLI: 500) costs one storage read per job every 2 s, not one per poll. A cancel
 * accepted by this process is seen at once (cancelJob records it); one accepted by another instance
 * of the app shows as 'cancelling' here within OUTCOME_TTL_MS, and a resubmission (which forgets a
 * cancelled outcome) is seen at once here, within OUTCOME_TTL_MS elsewhere.
 */
const OUTCOME_TTL_MS = 2000;
const outcomeReads = new Map<string, { at: number; cancelling: boolean }>();
const outcomeKey = (job: JobSpec): string => `${job.output.container}/${job.jobPrefix}#${job.executionId}`;
function rememberOutcome(job: JobSpec, cancelling: boolean): void {
  if (outcomeReads.size >= 1000) {
    for (const [k, v] of outcomeReads) if (Date.now() - v.at > OUTCOME_TTL_MS) outcomeReads.delete(k);
    if (outcomeReads.size >= 1000) outcomeReads.clear();
  }
  outcomeReads.set(outcomeKey(job), { at: Date.now(), cancelling });
}

/** Whether a cancel of this running job was accepted (its outcome says cancelled, by a cancel). */
async function isCancelling(s: InstanceStatus, job: JobSpec | undefined, opts: ApiOptions): Promise<boolean> {
  if (!job || !opts.storage || !ACTIVE.includes(s.runtimeStatus)) return false;
  const known = outcomeReads.get(outcomeKey(job));
  if (known && Date.now() - known.at < OUTCOME_TTL_MS) return known.cancelling;
  const output = (await opts.storage()).getContainerClient(job.output.container);
  const o = await readOutcome(output, job.jobPrefix).catch(() => undefined);
  const cancelling = o?.status === 'cancelled' && o.executionId === job.executionId;
  rememberOutcome(job, cancelling);
  return cancelling;
}

export async function jobStatus(client: JobClient, jobId: string, baseUrl: string, opts: ApiOptions = {}): Promise<ApiResponse> {
  const s = await client.status(jobId);
  if (!s) return { status: 404, body: { error: { code: 'JobNotFound', message: `no job with id '${jobId}'`, target: 'jobId' } } };
  const job = jobOf(s.input);
  return { status: 200, body: view(s, baseUrl, job, await isCancelling(s, job, opts)) };
}

/**
 * DELETE /api/jobs/{id}/history: forgets a finished job's orchestration history (its outputs stay).
 * A running job must be cancelled first.
 */
export async function purgeJob(client: JobClient, jobId: string): Promise<ApiResponse> {
  const s = await client.status(jobId);
  if (!s) return { status: 404, body: { error: { code: 'JobNotFound', message: `no job with id '${jobId}'`, target: 'jobId' } } };
  if (ACTIVE.includes(s.runtimeStatus)) return { status: 409, body: { error: { code: 'JobRunning', message: `job '${jobId}' is ${s.runtimeStatus}; cancel it (DELETE /api/jobs/${jobId}) before purging its history` } } };
  const purged = await client.purge(jobId);
  return { status: 200, body: { jobId, purged, note: 'the orchestration history is deleted; the job folder (results, manifest, report) is kept' } };
}

/**
 * DELETE /api/jobs/{id}. The cancel and the job's finalization race for _outcome.json: a cancel
 * that wins terminates the orchestration (and a finalization still running writes a cancelled
 * manifest); one that comes after the outcome is decided is a 409, and the job completes.
 */
export async function cancelJob(client: JobClient, jobId: string, baseUrl: string, opts: ApiOptions = {}): Promise<ApiResponse> {
  const s = await client.status(jobId);
  if (!s) return { status: 404, body: { error: { code: 'JobNotFound', message: `no job with id '${jobId}'`, target: 'jobId' } } };
  if (!ACTIVE.includes(s.runtimeStatus)) return { status: 409, body: { error: { code: 'JobNotRunning', message: `job '${jobId}' is ${s.runtimeStatus}; only running jobs can be cancelled` } } };
  const job = jobOf(s.input);
  const output = job && opts.storage ? (await opts.storage()).getContainerClient(job.output.container) : undefined;
  if (job && output && (await output.exists())) {
    const o = await decideOutcome(output, job.jobPrefix, { status: 'cancelled', executionId: job.executionId, by: 'cancel' }, (opts.now ?? new Date()).toISOString());
    if (o.status === 'cancelled') rememberOutcome(job, o.executionId === job.executionId);
    else {
      return { status: 409, body: { error: { code: 'JobFinalizing', message: `job '${jobId}' is finishing: its outcome is decided (${o.status}) and its outputs are being written; it can no longer be cancelled` } } };
    }
  }
  // A continuous job stops itself at its next look for blobs, after writing its final manifest and
  // report (running partitions stop at their next image, as for any cancel).
  // The stop event wakes it from its wait for the next look.
  if (job?.mode !== 'continuous' || !output) await client.terminate(jobId, 'cancelled by DELETE /api/jobs');
  else await client.raiseEvent(jobId, STOP_EVENT, { by: 'DELETE /api/jobs' });
  // Terminating is asynchronous: the status as read now, 'cancelling' until the orchestration ends.
  const now = (await client.status(jobId)) ?? s;
  return { status: 202, body: view(now, baseUrl, job, ACTIVE.includes(now.runtimeStatus)) };
}

/** One job in a listing: enough to find it again and see how it went. */
export interface JobListItem {
  jobId: string;
  status: JobView['status'];
  runtimeStatus: RuntimeStatus;
  createdTime?: string;
  lastUpdatedTime?: string;
  images?: { total: number; succeeded: number; failed: number; skipped: number };
  outputs?: { container: string; prefix: string };
  link: string;
}

const JOB_STATUSES = ['running', 'cancelling', 'succeeded', 'failed', 'cancelled'] as const;
/** A job status and the runtime statuses it can have (a job that failed its threshold completes 'failed'). */
const RUNTIME_FOR: Record<string, RuntimeStatus[]> = {
  running: ACTIVE,
  cancelling: ACTIVE,
  succeeded: ['Completed'],
  failed: ['Failed', 'Completed'],
  cancelled: ['Terminated', 'Canceled', 'Completed'],
};

/** A cursor for the next page: the last item's creation time and id (jobs are listed newest first). */
function encodeCursor(createdTime: string, id: string): string {
  return Buffer.from(JSON.stringify([createdTime, id])).toString('base64url');
}
function decodeCursor(token: string): [string, string] | undefined {
  try {
    const v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown;
    return Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string' ? [v[0], v[1]] : undefined;
  } catch {
    return undefined;
  }
}

/**
 * GET /api/jobs?status=running&createdFrom=ISO&createdTo=ISO&top=50&continuationToken=T: the jobs
 * newest first, a page at a time (the next page's token in `continuationToken`), from the Durable
 * client's instance query; each with its status, image counts and output folder.
 */
export async function listJobs(client: JobClient, query: URLSearchParams, baseUrl: string): Promise<ApiResponse> {
  const bad = (field: string, message: string): ApiResponse => error(400, new LakeInferError('InvalidRequest', `query parameter '${field}' ${message}`, { target: field }));
  const statusParam = query.get('status');
  const wanted = statusParam ? statusParam.split(',').map((s) => s.trim()).filter(Boolean) : [];
  for (const w of wanted) if (!(JOB_STATUSES as readonly string[]).includes(w)) return bad('status', `must be one of ${JOB_STATUSES.join(', ')} (got '${w}')`);
  const date = (field: string): Date | undefined | 'bad' => {
    const v = query.get(field);
    if (v === null || v === '') return undefined;
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? 'bad' : d;
  };
  const from = date('createdFrom');
  if (from === 'bad') return bad('createdFrom', 'must be an ISO 8601 date-time');
  const to = date('createdTo');
  if (to === 'bad') return bad('createdTo', 'must be an ISO 8601 date-time');
  const topText = query.get('top');
  const top = topText === null ? 50 : Number(topText);
  if (!Number.isInteger(top) || top < 1 || top > 500) return bad('top', 'must be an integer from 1 to 500');
  const tokenText = query.get('continuationToken');
  const cursor = tokenText ? decodeCursor(tokenText) : undefined;
  if (tokenText && !cursor) return bad('continuationToken', 'is not a token this API returned');

  const runtime = [...new Set(wanted.flatMap((w) => RUNTIME_FOR[w]!))];
  const filter: InstanceFilter = { ...(runtime.length ? { runtimeStatus: runtime } : {}), ...(from ? { createdTimeFrom: from } : {}), ...(to ? { createdTimeTo: to } : {}) };
  const all = (await client.list(filter)).sort((a, b) => (b.createdTime ?? '').localeCompare(a.createdTime ?? '') || b.instanceId.localeCompare(a.instanceId));
  const after = cursor ? all.filter((s) => (s.createdTime ?? '') < cursor[0] || ((s.createdTime ?? '') === cursor[0] && s.instanceId < cursor[1])) : all;
  const jobs: JobListItem[] = [];
  let last: InstanceStatus | undefined;
  for (const listed of after) {
    if (jobs.length === top) break;
    last = listed;
    // The listing leaves inputs out; each job's own status has its request (where it writes).
    const s = (await client.status(listed.instanceId)) ?? listed;
    const job = jobOf(s.input);
    const v = view(s, baseUrl, job);
    if (wanted.length && !wanted.includes(v.status)) continue;
    const counts = (s.output as Partial<JobOutput> | undefined)?.counts;
    const images = counts ? { total: counts.images, succeeded: counts.succeeded, failed: counts.failed, skipped: counts.skipped } : v.progress?.images;
    jobs.push({
      jobId: s.instanceId,
      status: v.status,
      runtimeStatus: s.runtimeStatus,
      ...(s.createdTime ? { createdTime: s.createdTime } : {}),
      ...(s.lastUpdatedTime ? { lastUpdatedTime: s.lastUpdatedTime } : {}),
      ...(images ? { images } : {}),
      ...(v.outputs ? { outputs: { container: v.outputs.container, prefix: v.outputs.prefix } } : {}),
      link: v.links.status,
    });
  }
  const more = last !== undefined && after.indexOf(last) < after.length - 1;
  return { status: 200, body: { jobs, ...(more && last ? { continuationToken: encodeCursor(last.createdTime ?? '', last.instanceId) } : {}) } };
}

/**
 * POST /api/jobs/{id}/retry: redrives a failed or cancelled job with its own request: its complete
 * partitions are kept (not read again), the failed and unfinished ones run again. The answer says
 * how many images were done and how many are retried.
 */
export async function retryJob(client: JobClient, jobId: string, baseUrl: string, opts: ApiOptions = {}): Promise<ApiResponse> {
  const s = await client.status(jobId);
  if (!s) return { status: 404, body: { error: { code: 'JobNotFound', message: `no job with id '${jobId}'`, target: 'jobId' } } };
  if (ACTIVE.includes(s.runtimeStatus)) return { status: 409, body: { error: { code: 'JobRunning', message: `job '${jobId}' is still running; nothing to retry until it ends` } } };
  const job = jobOf(s.input);
  if (!job) return { status: 409, body: { error: { code: 'JobNotRetryable', message: `job '${jobId}' has no request on record (its history was purged?); submit its job.json again` } } };
  const before = (s.output as Partial<JobOutput> | undefined)?.counts ?? (s.customStatus as JobProgress | undefined)?.images;
  const done = before ? before.succeeded + before.skipped : 0;
  const failed = before?.failed ?? 0;
  const ended = view(s, baseUrl, job).status;
  if (ended === 'succeeded') {
    const why = failed > 0 ? `its ${failed} failed image(s) failed for reasons of their own (listed in ${job.jobPrefix}_failures.jsonl): fix or remove them, then submit the job again with "restart": true` : 'it has no failed images';
    return { status: 409, body: { error: { code: 'NothingToRetry', message: `job '${jobId}' succeeded; nothing to retry: ${why}` } } };
  }
  const r = await submitJob(client, requestOf(job), baseUrl, { ...opts, resumeCompleted: true });
  if (r.status !== 202) return r;
  return { ...r, body: { ...(r.body as object), retried: { previousStatus: ended, imagesDone: done, imagesFailed: failed } } };
}
