/**
 * The inferenceJob orchestrator's state and options: what it carries between generations
 * (continueAsNew), the checks on its input (the job API's own rules) and on what its activities
 * return (a replay that hands back something else fails the instance, naming what it got).
 */
import * as df from 'durable-functions';
import { z } from 'zod';
import type { Outcome, PartitionResult, PlanResult } from './activities';
import { LakeInferError } from '../util/errors';
import type { Manifest, PartitionFailure } from '../fanin/finalize';
import type { JobStatus } from '../job/folder';
import { JobSpecSchema, parseJobSpec, type JobSpec } from '../job/request';
import { zodPath } from '../util/fieldPath';
import type { JobTotals } from '../job/totals';
import { MESSAGE_CHARS } from '../partition/parts';

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
        partitionSize: z.number().int().min(1).max(10_000).optional(),
        model: z.object({ name: z.string().max(100), etag: z.string().max(200), jsonEtag: z.string().max(200) }).strict(),
        cursor: z.string().max(2048).optional(),
        layout: z.array(z.object({ n: count, first: count }).strict()).max(MAX_SEGMENTS).optional(),
        more: z.literal(true).optional(),
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

export function isOutcome(r: unknown): r is Outcome<PartitionResult> {
  if (typeof r !== 'object' || r === null || typeof (r as { ok?: unknown }).ok !== 'boolean') return false;
  const o = r as { ok: boolean; value?: unknown; error?: unknown };
  return o.ok ? typeof o.value === 'object' && o.value !== null && typeof (o.value as { n?: unknown }).n === 'number' : typeof o.error === 'object' && o.error !== null;
}

/** A plan step's outcome: partitions and items so far. */
export function isPlanOutcome(r: unknown): r is Outcome<PlanResult> {
  if (typeof r !== 'object' || r === null || typeof (r as { ok?: unknown }).ok !== 'boolean') return false;
  const o = r as { ok: boolean; value?: { partitions?: unknown; total?: unknown }; error?: unknown };
  return o.ok ? typeof o.value?.partitions === 'number' && typeof o.value.total === 'number' : typeof o.error === 'object' && o.error !== null;
}

export function describe(v: unknown): string {
  const text = v === undefined ? 'undefined' : JSON.stringify(v) ?? String(v);
  return `${typeof v} ${text.length > 80 ? `${text.slice(0, 80)}...` : text}`;
}

/** Whether one more failure fits the listed failures' budget (count and bytes). */
export function fitsListed(listed: readonly PartitionFailure[], f: PartitionFailure): boolean {
  if (listed.length >= MAX_LISTED_FAILURES) return false;
  const bytes = listed.reduce((sum, x) => sum + Buffer.byteLength(JSON.stringify(x)), 0);
  return bytes + Buffer.byteLength(JSON.stringify(f)) <= LISTED_FAILURES_BYTES;
}
