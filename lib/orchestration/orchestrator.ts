/**
 * The inferenceJob orchestrator: plan -> fan out partitions in a sliding window (retried) -> fan in.
 * Deterministic: no I/O, no clocks but context.df.currentUtcDateTime, no randomness.
 *
 * - Window: `parallel` partitions in flight; as each settles another starts, so a straggler holds
 *   one slot, not the fleet. Replay schema V3 re-issues every task of a compound task it is given
 *   (durable-js #574), so the orchestrator never puts a task it already scheduled into a new
 *   Task.any, nor waits on one alone: it waits on the tasks it just started and a poll timer (its
 *   interval adapts to how long partitions take, and backs off while nothing settles), and reads
 *   the others' state when it wakes.
 * - A partition that ran out of its time budget comes back not done: its continuation takes a slot
 *   like any partition, without using a retry.
 * - History stays small at any job size: activities exchange counts, never blob lists; each
 *   generation runs at most `perGeneration` partitions and continues as new with its totals and at
 *   most 50 short failure messages (the full list is in _failures.jsonl).
 * - Fan-in never fails fast: a partition that exhausts its retries is recorded and the others go
 *   on; toleratedFailurePercent decides the end.
 */
import * as df from 'durable-functions';
import type { OrchestrationContext, Task } from 'durable-functions';
import { z } from 'zod';
import type { Outcome, PartitionInput, PartitionResult, PlanResult } from './activities';
import type { CollectInput, CollectResult } from '../continuous/collect';
import { LakeInferError } from '../util/errors';
import type { FinalizeInput, Manifest, PartitionFailure } from '../fanin/finalize';
import type { JobStatus } from '../job/folder';
import { JobSpecSchema, parseJobSpec, type JobSpec } from '../job/request';
import { zodPath } from '../util/fieldPath';
import { addFailedPartition, addPartition, EMPTY_TOTALS, failureReason, jobSucceeded, progressOf, removePartition, type JobTotals } from '../job/totals';
import { addSegment, partitionImages, pruneSegments } from '../job/layout';
import { MESSAGE_CHARS, shortMessage } from '../partition/parts';

export const ORCHESTRATOR = 'inferenceJob';
export const PLAN_ACTIVITY = 'planJob';
export const INFER_ACTIVITY = 'inferPartition';
export const FINALIZE_ACTIVITY = 'finalizeJob';
/** Rounds of "a fragment changed: run its partition again, finalize again" before the job fails. */
const MAX_RECOMPUTE_ROUNDS = 3;
export const COLLECT_ACTIVITY = 'collectArrivals';
/** A continuous job's looks that find nothing, per generation, before continueAsNew (bounds its history). */
export const IDLE_LOOKS_PER_GENERATION = 100;

export interface FanOutOptions {
  /** Partitions in flight at once. */
  parallel: number;
  /** Partitions per orchestration generation before continueAsNew. */
  perGeneration: number;
  /** Longest the window waits before it looks at partitions it is not waiting on (it adapts below this). */
  pollMs: number;
  retry: { firstRetryMs: number; maxAttempts: number; backoffCoefficient: number; maxRetryMs: number };
}

export const DEFAULT_FAN_OUT: FanOutOptions = {
  parallel: 32,
  perGeneration: 256,
  pollMs: 2_000,
  retry: { firstRetryMs: 2_000, maxAttempts: 4, backoffCoefficient: 2, maxRetryMs: 60_000 },
};

/** Shortest poll interval of the window. */
export const MIN_POLL_MS = 20;
/** Most failed partitions listed by id in orchestration state (the rest are counted; all are in _failures.jsonl). */
export const MAX_LISTED_FAILURES = 50;
/** Most plan segments (partial runs of a continuous job's batches) an orchestration carries. */
export const MAX_SEGMENTS = 10_000;
/** Most UTF-8 bytes the listed failures take in orchestration state. */
export const LISTED_FAILURES_BYTES = 8 * 1024;

export interface JobState {
  job: JobSpec;
  options: FanOutOptions;
  plan?: PlanResult;
  next: number;
  totals: JobTotals;
  failedPartitions: PartitionFailure[];
  generation: number;
  startedAt: string;
  /** Continuous jobs: the last arrival record taken, and the partitions the manifest covers. */
  cursor?: string;
  reported?: number;
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
const OptionsSchema = z.object({ parallel: z.number().int().min(1).max(1000), perGeneration: z.number().int().min(1).max(100_000), pollMs: z.number().int().min(MIN_POLL_MS).max(3_600_000), retry: RetrySchema }).strict();
const count = z.number().int().min(0);
const StateSchema = z
  .object({
    job: JobSpecSchema,
    options: OptionsSchema,
    plan: z
      .object({
        partitions: count,
        total: count,
        bytes: z.number().min(0),
        model: z.object({ name: z.string().max(100), etag: z.string().max(200), jsonEtag: z.string().max(200) }).strict(),
        cursor: z.string().max(2048).optional(),
        layout: z.array(z.object({ n: count, first: count }).strict()).max(MAX_SEGMENTS).optional(),
      })
      .strict()
      .optional(),
    next: count,
    totals: z.object({ partitionsDone: count, partitionsFailed: count, images: count, succeeded: count, failed: count, skipped: count, detections: count, activitySeconds: z.number().min(0) }).strict(),
    failedPartitions: z.array(z.object({ n: count, code: z.string().max(100), message: z.string().max(MESSAGE_CHARS) }).strict()).max(MAX_LISTED_FAILURES),
    generation: count,
    startedAt: z.string().datetime(),
    cursor: z.string().max(2048).optional(),
    reported: count.optional(),
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
  const parallel = o.parallel ?? job.maxParallelPartitions;
  // Generations long next to the window: a straggler idles the window's other slots at most at a generation's end.
  const perGeneration = o.perGeneration ?? Math.min(100_000, Math.max(DEFAULT_FAN_OUT.perGeneration, 8 * parallel));
  const options = { ...DEFAULT_FAN_OUT, ...o, parallel, perGeneration, retry: { ...DEFAULT_FAN_OUT.retry, ...o.retry } };
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

function isOutcome(r: unknown): r is Outcome<PartitionResult> {
  if (typeof r !== 'object' || r === null || typeof (r as { ok?: unknown }).ok !== 'boolean') return false;
  const o = r as { ok: boolean; value?: unknown; error?: unknown };
  return o.ok ? typeof o.value === 'object' && o.value !== null && typeof (o.value as { n?: unknown }).n === 'number' : typeof o.error === 'object' && o.error !== null;
}

function describe(v: unknown): string {
  const text = v === undefined ? 'undefined' : JSON.stringify(v) ?? String(v);
  return `${typeof v} ${text.length > 80 ? `${text.slice(0, 80)}...` : text}`;
}

function failureOf(err: unknown): { code: string; message: string } {
  const message = err instanceof Error ? err.message : String(err);
  // The SDK gives "<reason> \n <details>": the reason's first line, short.
  return { code: 'PartitionFailed', message: shortMessage(message) };
}

/** Whether one more failure fits the listed failures' budget (count and bytes). */
function fitsListed(listed: readonly PartitionFailure[], f: PartitionFailure): boolean {
  if (listed.length >= MAX_LISTED_FAILURES) return false;
  const bytes = listed.reduce((sum, x) => sum + Buffer.byteLength(JSON.stringify(x)), 0);
  return bytes + Buffer.byteLength(JSON.stringify(f)) <= LISTED_FAILURES_BYTES;
}

/** A partition (or the rest of one) in the window. */
interface Slot {
  n: number;
  from: number;
  task: Task;
  /** Orchestration time it was started at (ms). */
  since: number;
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
  const fail = (n: number, f: { code: string; message: string }): void => {
    // Its images as the plan laid them out (a continuous job's batches start partial runs).
    totals = addFailedPartition(totals, partitionImages(n, plan, s.job.partitionSize));
    const entry = { n, code: f.code.slice(0, 100), message: shortMessage(f.message) };
    if (fitsListed(failed, entry)) failed.push(entry);
  };
  const window: Slot[] = [];
  const continuations: { n: number; from: number }[] = [];
  let nextN = s.next;
  // The poll interval follows how long partitions take (a tenth of the mean), within [MIN_POLL_MS, pollMs].
  let observed = 0;
  let observedMs = 0;
  const pollMs = (): number => Math.round(Math.min(s.options.pollMs, Math.max(MIN_POLL_MS, observed === 0 ? s.options.pollMs / 5 : observedMs / observed / 10)));
  const now = (): number => context.df.currentUtcDateTime.getTime();
  let idlePolls = 0;
  const settle = (slot: Slot): void => {
    observed++;
    observedMs += now() - slot.since;
    const task = slot.task;
    if (task.isFaulted) return fail(slot.n, failureOf(task.result));
    const r = task.result as Outcome<PartitionResult> | undefined;
    // A result is only ever counted for the partition it belongs to: a replay that handed one
    // task's result to another, or something that is no outcome at all (a timer's value), is a
    // protocol bug that fails the job loudly instead of miscounting.
    if (!isOutcome(r)) throw new Error(`ReplayMismatch: partition ${slot.n} received ${describe(r)}, which is not the outcome of a partition`);
    if (!r.ok) return fail(slot.n, r.error);
    if (r.value.n !== slot.n) throw new Error(`ReplayMismatch: the result of partition ${r.value.n} arrived as the result of partition ${slot.n}`);
    if (r.value.done === false) {
      const next = r.value.next;
      if (!Number.isInteger(next) || next <= slot.from) throw new Error(`partition ${slot.n}: a continuation from ${String(next)} makes no progress (this piece started at ${slot.from})`);
      continuations.push({ n: slot.n, from: next });
      return;
    }
    totals = addPartition(totals, r.value);
  };
  context.df.setCustomStatus(progressOf('inferring', plan.partitions, plan.total, totals, s.generation));
  for (;;) {
    // Fill the window: continuations first (they finish partitions), then new partitions.
    const fresh: Task[] = [];
    while (window.length < s.options.parallel) {
      const w = continuations.shift() ?? (nextN < end ? { n: nextN++, from: 0 } : undefined);
      if (!w) break;
      const input: PartitionInput = { job: partJob, n: w.n, ...(w.from > 0 ? { from: w.from } : {}), run: s.startedAt, maxAttempts: retry.maxNumberOfAttempts };
      const task = context.df.callActivityWithRetry(INFER_ACTIVITY, retry, input);
      window.push({ ...w, task, since: now() });
      fresh.push(task);
    }
    if (window.length === 0) break;
    // Wait for something to settle, always on what was just started (and a poll timer when older
    // tasks are in flight): the extension's shim issues the next action once the previous one is
    // done, so the orchestrator must never wait on anything else, such as an older task alone,
    // or the two would number later tasks differently (a non-deterministic orchestration).
    try {
      if (fresh.length === window.length) yield fresh.length === 1 ? fresh[0]! : context.df.Task.any(fresh);
      else yield context.df.Task.any([...fresh, context.df.createTimer(new Date(now() + Math.min(s.options.pollMs, pollMs() * Math.min(8, 1.5 ** Math.max(0, idlePolls - 2)))))]);
    } catch {
      // a failed partition: recorded below
    }
    const before = window.length;
    for (let i = 0; i < window.length; ) {
      const slot = window[i]!;
      if (slot.task.isCompleted || slot.task.isFaulted) {
        window.splice(i, 1);
        settle(slot);
      } else i++;
    }
    // Polls that find nothing settled back off (a straggler alone costs few history events).
    idlePolls = window.length === before ? idlePolls + 1 : 0;
    context.df.setCustomStatus(progressOf('inferring', plan.partitions, plan.total, totals, s.generation));
  }

  const layout = pruneSegments(plan.layout, end);
  s = { ...s, next: end, totals, failedPartitions: failed, plan: { ...plan, ...(layout ? { layout } : {}) } };
  if (!layout) delete s.plan!.layout;
  if (end < plan.partitions) {
    context.df.continueAsNew({ state: { ...s, generation: s.generation + 1 } } satisfies OrchestratorInput);
    return undefined;
  }

  // Partitions finalize found changed after their summaries (a fragment rewritten): run again, one
  // piece after another, their old counts taken off first; then finalize is asked once more.
  function* recompute(parts: NonNullable<Extract<Outcome<unknown>, { ok: false }>['error']['recompute']>): Generator<Task, void, unknown> {
    for (const r of parts) {
      totals = removePartition(totals, r.counts);
      for (let from = 0; ; ) {
        const input: PartitionInput = { job: partJob, n: r.n, ...(from > 0 ? { from } : {}), run: s.startedAt, maxAttempts: retry.maxNumberOfAttempts };
        let res: Outcome<PartitionResult>;
        try {
          res = (yield context.df.callActivityWithRetry(INFER_ACTIVITY, retry, input)) as Outcome<PartitionResult>;
        } catch (err) {
          fail(r.n, failureOf(err));
          break;
        }
        if (!isOutcome(res)) throw new Error(`ReplayMismatch: partition ${r.n} received ${describe(res)}, which is not the outcome of a partition`);
        if (!res.ok) {
          fail(r.n, res.error);
          break;
        }
        if (res.value.done === false) {
          if (!(res.value.next > from)) throw new Error(`partition ${r.n}: a continuation from ${String(res.value.next)} makes no progress`);
          from = res.value.next;
          continue;
        }
        totals = addPartition(totals, res.value);
        break;
      }
    }
  }
  function* finalizeChecked<T>(status: () => FinalizeInput['status'], provisional = false): Generator<Task, Outcome<T>, unknown> {
    let r = (yield context.df.callActivityWithRetry(FINALIZE_ACTIVITY, retry, finalizeInput(status(), provisional))) as Outcome<T>;
    for (let round = 0; !r.ok && r.error.code === 'FragmentChanged' && (r.error.recompute?.length ?? 0) > 0 && round < MAX_RECOMPUTE_ROUNDS; round++) {
      yield* recompute(r.error.recompute!);
      r = (yield context.df.callActivityWithRetry(FINALIZE_ACTIVITY, retry, finalizeInput(status(), provisional))) as Outcome<T>;
    }
    return r;
  }

  // What finalize needs: the same for a continuous job's running totals and for the end.
  const finalizeInput = (status: FinalizeInput['status'], provisional = false): FinalizeInput => ({
    job: s.job,
    status,
    ...(provisional ? { provisional } : {}),
    totals,
    partitions: plan.partitions,
    failedPartitions: failed,
    model: plan.model,
    startedAt: s.startedAt,
    endedAt: context.df.currentUtcDateTime.toISOString(),
  });
  if (s.job.mode === 'continuous') {
    // Running totals for what completed since the last look (manifest, report, Parquet dataset).
    if (s.reported !== plan.partitions) {
      const r: Outcome<unknown> = yield* finalizeChecked<unknown>(() => 'succeeded', true);
      if (!r.ok) throw new Error(`${r.error.code}: ${r.error.message}`);
      s = { ...s, reported: plan.partitions };
    }
    context.df.setCustomStatus(progressOf('watching', plan.partitions, plan.total, totals, s.generation));
    // Looks that find nothing stay in this generation (nothing written, no new generation), up to
    // IDLE_LOOKS_PER_GENERATION, which bounds the history of a job idle for months.
    let cursor = s.cursor ?? plan.cursor ?? '';
    for (let idle = 0; ; idle++) {
      yield context.df.createTimer(new Date(now() + s.job.pollSeconds * 1000));
      const collect: CollectInput = { job: { jobId: s.job.jobId, jobPrefix: s.job.jobPrefix, input: s.job.input, output: s.job.output, partitionSize: s.job.partitionSize, executionId: s.job.executionId }, partitions: plan.partitions, total: plan.total, cursor };
      const got = (yield context.df.callActivityWithRetry(COLLECT_ACTIVITY, retry, collect)) as Outcome<CollectResult>;
      if (!got.ok) throw new Error(`${got.error.code}: ${got.error.message}`);
      if (got.value.stopped) break;
      const arrived = got.value.partitions !== plan.partitions;
      cursor = got.value.cursor;
      if (arrived || idle + 1 >= IDLE_LOOKS_PER_GENERATION) {
        // New partitions (or a long idle stretch): the next generation runs them.
        const grown = arrived ? { layout: addSegment(s.plan!.layout, plan.partitions, plan.total, s.job.partitionSize) } : {};
        context.df.continueAsNew({ state: { ...s, plan: { ...s.plan!, ...grown, partitions: got.value.partitions, total: got.value.total }, cursor, generation: s.generation + 1 } } satisfies OrchestratorInput);
        return undefined;
      }
    }
    // Stopped (DELETE): the final manifest and report, with the outcome the stop decided.
  }

  const statusNow = (): 'succeeded' | 'failed' => (jobSucceeded(totals, s.job.toleratedFailurePercent, s.job.toleratedFailureCount) ? 'succeeded' : 'failed');
  context.df.setCustomStatus(progressOf('finalizing', plan.partitions, plan.total, totals, s.generation));
  const done: Outcome<Pick<Manifest, 'status' | 'counts' | 'files'>> = yield* finalizeChecked<Pick<Manifest, 'status' | 'counts' | 'files'>>(statusNow);
  const status = statusNow();
  if (!done.ok) throw new Error(`${done.error.code}: ${done.error.message}`);
  context.df.setCustomStatus(progressOf('done', plan.partitions, plan.total, totals, s.generation));
  // A cancel decided the outcome first: the manifest says cancelled, and so does the job's output.
  if (done.value.status === 'cancelled') return { jobId: s.job.jobId, status: 'cancelled', counts: done.value.counts, files: done.value.files };
  if (status === 'failed') {
    throw new Error(`JobFailed: ${failureReason(totals, s.job.toleratedFailurePercent, s.job.toleratedFailureCount)}; outputs of what succeeded are in ${s.job.jobPrefix}`);
  }
  return { jobId: s.job.jobId, status, counts: done.value.counts, files: done.value.files };
}
