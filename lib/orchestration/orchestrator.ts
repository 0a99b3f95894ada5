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
import type { OrchestrationContext, Task } from 'durable-functions';
import type { Outcome, PartitionInput, PartitionResult, PlanResult } from './activities';
import type { CollectInput, CollectResult } from '../continuous/collect';
import type { FinalizeInput, Manifest } from '../fanin/finalize';
import { fixedPartitionSize } from '../job/request';
import { addFailedPartition, addPartition, EMPTY_TOTALS, failureReason, jobSucceeded, progressOf, removePartition } from '../job/totals';
import { addSegment, partitionImages, pruneSegments } from '../job/layout';
import { MAX_SAMPLES, shortMessage } from '../partition/parts';
import { describe, fitsListed, isOutcome, isPlanOutcome, MIN_POLL_MS, parseOrchestratorInput, retryOptionsOf, type JobOutput, type JobState, type OrchestratorInput } from './state';

export { DEFAULT_FAN_OUT, LISTED_FAILURES_BYTES, MAX_LISTED_FAILURES, MAX_SEGMENTS, MIN_POLL_MS, parseOrchestratorInput, retryOptionsOf, type FanOutOptions, type JobOutput, type JobState, type OrchestratorInput } from './state';

export const ORCHESTRATOR = 'inferenceJob';
export const PLAN_ACTIVITY = 'planJob';
/** The next chunk of a plan made in steps (a listing planned while its first partitions run). */
export const PLAN_MORE_ACTIVITY = 'planMore';
/** The event DELETE raises to a continuous job: it looks at once, finds itself stopped, and ends. */
export const STOP_EVENT = 'stop';
export const INFER_ACTIVITY = 'inferPartition';
export const FINALIZE_ACTIVITY = 'finalizeJob';
/** Rounds of "a fragment changed: run its partition again, finalize again" before the job fails. */
const MAX_RECOMPUTE_ROUNDS = 3;
export const COLLECT_ACTIVITY = 'collectArrivals';
/** A continuous job's looks that find nothing, per generation, before continueAsNew (bounds its history). */
export const IDLE_LOOKS_PER_GENERATION = 100;

/**
 * An activity whose retries are exhausted fails the job with its reason's first line: never the
 * SDK's "<reason> \n <details>", whose details are a stack with the server's paths (the host logs it).
 */
function* orFail<T>(task: Task, what: string): Generator<Task, T, unknown> {
  try {
    return (yield task) as T;
  } catch (err) {
    const reason = (err instanceof Error ? err.message : String(err)).split('\n')[0]!.trim();
    throw new Error(reason ? shortMessage(reason) : `${what} failed with no reason given (the host's log has its details)`);
  }
}

function failureOf(err: unknown): { code: string; message: string } {
  const message = err instanceof Error ? err.message : String(err);
  // The SDK gives "<reason> \n <details>": the reason's first line, short.
  return { code: 'PartitionFailed', message: shortMessage(message) };
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
    const planned: Outcome<PlanResult> = yield* orFail(context.df.callActivityWithRetry(PLAN_ACTIVITY, retry, s.job), 'planning');
    if (!planned.ok) throw new Error(`${planned.error.code}: ${planned.error.message}`);
    s = { ...s, plan: planned.value };
  }
  let plan = s.plan!;
  const partJob: PartitionInput['job'] = {
    jobId: s.job.jobId,
    jobPrefix: s.job.jobPrefix,
    input: s.job.input,
    output: s.job.output,
    model: plan.model,
    params: s.job.params,
    skipExisting: s.job.skipExisting,
    // The report's images, spread over the job: each partition keeps its share of MAX_SAMPLES.
    samples: Math.min(MAX_SAMPLES, Math.ceil(MAX_SAMPLES / Math.max(1, plan.partitions))),
  };

  let end = Math.min(plan.partitions, s.next + s.options.perGeneration);
  // A plan made in steps: its next chunk is listed while partitions run (one step at a time).
  let planner: { task: Task; since: number } | undefined;
  let totals = s.totals;
  const failed = [...s.failedPartitions];
  const fail = (n: number, f: { code: string; message: string }): void => {
    // Its images as the plan laid them out (a continuous job's batches start partial runs).
    totals = addFailedPartition(totals, partitionImages(n, plan, plan.partitionSize ?? fixedPartitionSize(s.job)));
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
    if (plan.more && !planner && end < s.next + s.options.perGeneration) {
      const task = context.df.callActivityWithRetry(PLAN_MORE_ACTIVITY, retry, s.job);
      planner = { task, since: now() };
      fresh.push(task);
    }
    if (window.length === 0 && !planner) break;
    // Wait for something to settle, always on what was just started (and a poll timer when older
    // tasks are in flight): the extension's shim issues the next action once the previous one is
    // done, so the orchestrator must never wait on anything else, such as an older task alone,
    // or the two would number later tasks differently (a non-deterministic orchestration).
    try {
      if (fresh.length === window.length + (planner ? 1 : 0)) yield fresh.length === 1 ? fresh[0]! : context.df.Task.any(fresh);
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
    if (planner && (planner.task.isCompleted || planner.task.isFaulted)) {
      const task = planner.task;
      planner = undefined;
      if (task.isFaulted) {
        const reason = (task.result instanceof Error ? task.result.message : String(task.result)).split('\n')[0]!.trim();
        throw new Error(reason ? shortMessage(reason) : 'planning failed with no reason given (the host\'s log has its details)');
      }
      const r = task.result as Outcome<PlanResult> | undefined;
      if (!isPlanOutcome(r)) throw new Error(`ReplayMismatch: the plan's next step received ${describe(r)}, which is not its outcome`);
      if (!r.ok) throw new Error(`${r.error.code}: ${r.error.message}`);
      if (r.value.partitions < plan.partitions || r.value.total < plan.total) throw new Error(`ReplayMismatch: the plan's next step has ${r.value.partitions} partitions (${r.value.total} items), fewer than the ${plan.partitions} (${plan.total}) planned before`);
      plan = { ...plan, partitions: r.value.partitions, total: r.value.total, bytes: r.value.bytes };
      if (r.value.more) plan.more = true;
      else delete plan.more;
      end = Math.min(plan.partitions, s.next + s.options.perGeneration);
    }
    // Polls that find nothing settled back off (a straggler alone costs few history events).
    idlePolls = window.length === before ? idlePolls + 1 : 0;
    context.df.setCustomStatus(progressOf('inferring', plan.partitions, plan.total, totals, s.generation));
  }

  const layout = pruneSegments(plan.layout, end);
  s = { ...s, next: end, totals, failedPartitions: failed, plan: { ...plan, ...(layout ? { layout } : {}) } };
  if (!layout) delete s.plan!.layout;
  if (end < plan.partitions || plan.more) {
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
    let r: Outcome<T> = yield* orFail(context.df.callActivityWithRetry(FINALIZE_ACTIVITY, retry, finalizeInput(status(), provisional)), 'finalizing');
    for (let round = 0; !r.ok && r.error.code === 'FragmentChanged' && (r.error.recompute?.length ?? 0) > 0 && round < MAX_RECOMPUTE_ROUNDS; round++) {
      yield* recompute(r.error.recompute!);
      r = yield* orFail(context.df.callActivityWithRetry(FINALIZE_ACTIVITY, retry, finalizeInput(status(), provisional)), 'finalizing');
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
      // The next look, or sooner when DELETE raises the stop event (a cancel never waits an hour).
      yield context.df.Task.any([context.df.createTimer(new Date(now() + s.job.pollSeconds * 1000)), context.df.waitForExternalEvent(STOP_EVENT)]);
      const collect: CollectInput = { job: { jobId: s.job.jobId, jobPrefix: s.job.jobPrefix, input: s.job.input, output: s.job.output, partitionSize: fixedPartitionSize(s.job), executionId: s.job.executionId }, partitions: plan.partitions, total: plan.total, cursor };
      const got: Outcome<CollectResult> = yield* orFail(context.df.callActivityWithRetry(COLLECT_ACTIVITY, retry, collect), 'looking for new blobs');
      if (!got.ok) throw new Error(`${got.error.code}: ${got.error.message}`);
      if (got.value.stopped) break;
      const arrived = got.value.partitions !== plan.partitions;
      cursor = got.value.cursor;
      if (arrived || idle + 1 >= IDLE_LOOKS_PER_GENERATION) {
        // New partitions (or a long idle stretch): the next generation runs them.
        const grown = arrived ? { layout: addSegment(s.plan!.layout, plan.partitions, plan.total, fixedPartitionSize(s.job)) } : {};
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
