/**
 * The inferenceJob orchestrator: plan -> fan out partitions (bounded parallelism, retried) -> fan in.
 * Deterministic: no I/O, no clocks but context.df.currentUtcDateTime, no randomness.
 *
 * History stays small at any job size: activities exchange counts, never blob lists; each
 * generation runs at most `perGeneration` partitions and then continues as new with its totals.
 * Partitions run in waves of `parallel`; fan-in never fails fast: a partition that exhausts its
 * retries is recorded and the others are still awaited; toleratedFailurePercent decides the end.
 */
import * as df from 'durable-functions';
import type { OrchestrationContext, Task } from 'durable-functions';
import { z } from 'zod';
import type { Outcome, PartitionInput, PartitionResult, PlanResult } from './activities';
import { LakeInferError } from './errors';
import type { FinalizeInput, Manifest, PartitionFailure } from './finalize';
import type { JobStatus } from './jobFolder';
import { JobSpecSchema, parseJobSpec, type JobSpec } from './jobs';
import { zodPath } from './fieldPath';
import { addFailedPartition, addPartition, EMPTY_TOTALS, jobSucceeded, partitionImageCount, progressOf, type JobTotals } from './orchestration';

export const ORCHESTRATOR = 'inferenceJob';
export const PLAN_ACTIVITY = 'planJob';
export const INFER_ACTIVITY = 'inferPartition';
export const FINALIZE_ACTIVITY = 'finalizeJob';

export interface FanOutOptions {
  /** Partitions in flight at once. */
  parallel: number;
  /** Partitions per orchestration generation before continueAsNew. */
  perGeneration: number;
  retry: { firstRetryMs: number; maxAttempts: number; backoffCoefficient: number; maxRetryMs: number };
}

export const DEFAULT_FAN_OUT: FanOutOptions = {
  parallel: 32,
  perGeneration: 256,
  retry: { firstRetryMs: 2_000, maxAttempts: 4, backoffCoefficient: 2, maxRetryMs: 60_000 },
};

/** Most failed partitions listed by id (the rest are counted). */
export const MAX_LISTED_FAILURES = 200;

export interface JobState {
  job: JobSpec;
  options: FanOutOptions;
  plan?: PlanResult;
  next: number;
  totals: JobTotals;
  failedPartitions: PartitionFailure[];
  generation: number;
  startedAt: string;
}

export type OrchestratorInput = { job: JobSpec; options?: Partial<Omit<FanOutOptions, 'retry'>> & { retry?: Partial<FanOutOptions['retry']> } } | { state: JobState };

const RetrySchema = z
  .object({
    firstRetryMs: z.number().int().min(1).max(3_600_000),
    maxAttempts: z.number().int().min(1).max(100),
    backoffCoefficient: z.number().min(1).max(10),
    maxRetryMs: z.number().int().min(1).max(86_400_000),
  })
  .strict();
const OptionsSchema = z.object({ parallel: z.number().int().min(1).max(1000), perGeneration: z.number().int().min(1).max(100_000), retry: RetrySchema }).strict();
const count = z.number().int().min(0);
const StateSchema = z
  .object({
    job: JobSpecSchema,
    options: OptionsSchema,
    plan: z
      .object({ partitions: count, total: count, bytes: z.number().min(0), model: z.object({ name: z.string().max(100), etag: z.string().max(200), jsonEtag: z.string().max(200) }).strict() })
      .strict()
      .optional(),
    next: count,
    totals: z.object({ partitionsDone: count, partitionsFailed: count, images: count, succeeded: count, failed: count, skipped: count, detections: count, activitySeconds: z.number().min(0) }).strict(),
    failedPartitions: z.array(z.object({ n: count, code: z.string().max(100), message: z.string().max(1000) }).strict()).max(MAX_LISTED_FAILURES),
    generation: count,
    startedAt: z.string().datetime(),
  })
  .strict();

/**
 * The orchestrator's input, checked with the job API's own rules: an input the API would refuse
 * fails the instance at once (InvalidRequest naming the field) instead of driving it.
 */
export function parseOrchestratorInput(input: unknown): { job: JobSpec; options: FanOutOptions } | { state: JobState } {
  const fail = (field: string, message: string): never => {
    throw new LakeInferError('InvalidRequest', `orchestration input: field '${field}' ${message}`, { target: field });
  };
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return fail('(input)', 'must be an object with `job` or `state`');
  if ('state' in input) {
    const r = z.object({ state: StateSchema }).strict().safeParse(input);
    if (!r.success) return fail(zodPath(r.error.issues[0]!.path) || '(input)', r.error.issues[0]!.message);
    return r.data as { state: JobState };
  }
  const given = input as { job?: unknown; options?: unknown };
  const extra = Object.keys(input).find((k) => k !== 'job' && k !== 'options');
  if (extra) fail(extra, 'is not a field of the orchestration input');
  const job = parseJobSpec(given.job);
  const o = (given.options ?? {}) as Partial<FanOutOptions>;
  const options = { ...DEFAULT_FAN_OUT, parallel: job.maxParallelPartitions, ...o, retry: { ...DEFAULT_FAN_OUT.retry, ...o.retry } };
  const r = OptionsSchema.safeParse(options);
  if (!r.success) fail(`options.${zodPath(r.error.issues[0]!.path)}`, r.error.issues[0]!.message);
  return { job, options };
}

export interface JobOutput {
  jobId: string;
  status: JobStatus;
  counts: Manifest['counts'];
  files: string[];
}

export function retryOptionsOf(o: FanOutOptions['retry']): df.RetryOptions {
  const r = new df.RetryOptions(o.firstRetryMs, o.maxAttempts);
  r.backoffCoefficient = o.backoffCoefficient;
  r.maxRetryIntervalInMilliseconds = o.maxRetryMs;
  return r;
}

function failureOf(err: unknown): { code: string; message: string } {
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'PartitionFailed', message: message.slice(0, 1000) };
}

export function* inferenceJobOrchestrator(context: OrchestrationContext): Generator<Task, JobOutput | undefined, unknown> {
  // An input the API would refuse (a hand-made start, a maxParallelPartitions of 0) fails here.
  const input = parseOrchestratorInput(context.df.getInput());
  let s: JobState =
    'state' in input
      ? input.state
      : {
          job: input.job,
          options: input.options,
          next: 0,
          totals: EMPTY_TOTALS,
          failedPartitions: [],
          generation: 0,
          startedAt: context.df.currentUtcDateTime.toISOString(),
        };
  const retry = retryOptionsOf(s.options.retry);

  if (!s.plan) {
    context.df.setCustomStatus(progressOf('planning', 0, 0, s.totals, s.generation));
    const planned = (yield context.df.callActivityWithRetry(PLAN_ACTIVITY, retry, s.job)) as Outcome<PlanResult>;
    if (!planned.ok) throw new Error(`${planned.error.code}: ${planned.error.message}`);
    s = { ...s, plan: planned.value };
  }
  const plan = s.plan!;
  const partJob: PartitionInput['job'] = {
    jobId: s.job.jobId,
    jobPrefix: s.job.jobPrefix,
    input: s.job.input,
    output: s.job.output,
    model: plan.model,
    params: s.job.params,
    skipExisting: s.job.skipExisting,
  };

  const end = Math.min(plan.partitions, s.next + s.options.perGeneration);
  let totals = s.totals;
  const failed = [...s.failedPartitions];
  const settle = (task: Task, n: number): void => {
    const fail = (f: { code: string; message: string }): void => {
      totals = addFailedPartition(totals, partitionImageCount(n, plan.total, s.job.partitionSize));
      if (failed.length < MAX_LISTED_FAILURES) failed.push({ n, ...f });
    };
    if (task.isFaulted) fail(failureOf(task.result));
    else {
      const r = task.result as Outcome<PartitionResult>;
      // A result is only ever counted for the partition it belongs to: a replay that handed one
      // task's result to another (a protocol bug) fails the job loudly instead of miscounting.
      if (r.ok && r.value.n !== n) throw new Error(`ReplayMismatch: the result of partition ${r.value.n} arrived as the result of partition ${n}`);
      if (r.ok) totals = addPartition(totals, r.value);
      else fail(r.error);
    }
  };
  context.df.setCustomStatus(progressOf('inferring', plan.partitions, plan.total, totals, s.generation));
  for (let first = s.next; first < end; first += s.options.parallel) {
    const wave: [Task, number][] = [];
    for (let n = first; n < Math.min(end, first + s.options.parallel); n++) {
      const input: PartitionInput = { job: partJob, n };
      wave.push([context.df.callActivityWithRetry(INFER_ACTIVITY, retry, input), n]);
    }
    try {
      yield context.df.Task.all(wave.map(([t]) => t));
    } catch {
      // Task.all fails fast when one partition exhausts its retries. Wait for each of the others on
      // its own (a scheduled task is never scheduled twice), so one bad partition hides nothing.
      for (const [t] of wave) {
        if (t.isCompleted || t.isFaulted) continue;
        try {
          yield t;
        } catch {
          // recorded by settle below
        }
      }
    }
    for (const [t, n] of wave) settle(t, n);
    context.df.setCustomStatus(progressOf('inferring', plan.partitions, plan.total, totals, s.generation));
  }

  s = { ...s, next: end, totals, failedPartitions: failed };
  if (end < plan.partitions) {
    context.df.continueAsNew({ state: { ...s, generation: s.generation + 1 } } satisfies OrchestratorInput);
    return undefined;
  }

  const status = jobSucceeded(totals, s.job.toleratedFailurePercent) ? 'succeeded' : 'failed';
  context.df.setCustomStatus(progressOf('finalizing', plan.partitions, plan.total, totals, s.generation));
  const fin: FinalizeInput = {
    job: s.job,
    status,
    totals,
    partitions: plan.partitions,
    failedPartitions: failed,
    model: plan.model,
    startedAt: s.startedAt,
    endedAt: context.df.currentUtcDateTime.toISOString(),
  };
  const done = (yield context.df.callActivityWithRetry(FINALIZE_ACTIVITY, retry, fin)) as Outcome<Pick<Manifest, 'status' | 'counts' | 'files'>>;
  if (!done.ok) throw new Error(`${done.error.code}: ${done.error.message}`);
  context.df.setCustomStatus(progressOf('done', plan.partitions, plan.total, totals, s.generation));
  // A cancel decided the outcome first: the manifest says cancelled, and so does the job's output.
  if (done.value.status === 'cancelled') return { jobId: s.job.jobId, status: 'cancelled', counts: done.value.counts, files: done.value.files };
  if (status === 'failed') {
    throw new Error(
      `JobFailed: ${totals.failed} of ${totals.images} images failed (${((100 * totals.failed) / Math.max(1, totals.images)).toFixed(2)}%), more than the tolerated ${s.job.toleratedFailurePercent}%; outputs of what succeeded are in ${s.job.jobPrefix}`,
    );
  }
  return { jobId: s.job.jobId, status, counts: done.value.counts, files: done.value.files };
}
