/**
 * The job request (POST /api/jobs) and the job spec it becomes. Both are validated with zod, and
 * every error names its field: a bad request is a 400, a bad orchestration input fails at once.
 * A JobSpec is the orchestration's whole input (small, whatever the job size); the orchestrator
 * and the local Durable endpoints check it with the same schema as the API.
 *
 * A job is its request: the fields that decide what a job computes and where it writes
 * (RESULT_FIELDS) are fixed for its jobId; resubmitting the same jobId with other values is refused
 * unless the request says `restart: true`.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { LakeInferError } from '../util/errors';
import { zodPath } from '../util/fieldPath';
import { InferParamsSchema, type InferParams } from '../model/spec';
import { jobPrefix, nameProblem } from '../storage/names';



const container = z
  .string()
  .regex(/^(?!-)(?!.*--)[a-z0-9-]{3,63}(?<!-)$/, 'must be a container name: 3-63 lowercase letters, digits and single hyphens');
const blobPrefix = z
  .string()
  .max(512)
  .superRefine((p, ctx) => {
    const problem = nameProblem(p);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  })
  .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), "must not contain '.' or '..' segments")
  .refine((p) => !p.includes('\\'), 'must not contain backslashes');
/** Names lakeinfer keeps for its own files: never a segment of an output prefix. */
export const RESERVED_SEGMENTS = ['_lakeinfer', '_parts', '_plan', '_delta_log'] as const;
const outputPrefix = blobPrefix.refine((p) => !p.split('/').some((s) => (RESERVED_SEGMENTS as readonly string[]).includes(s)), `must not use a reserved folder name (${RESERVED_SEGMENTS.join(', ')})`);
/** A blob name (a manifest file): as a prefix, but not empty and not a folder. */
const blobName = blobPrefix.refine((p) => p.length > 0 && !p.endsWith('/'), 'must name a blob (not empty, not ending with /)');
/** A time on a listing filter: ISO 8601 with a time zone (Z or an offset). */
const instant = z.string().datetime({ offset: true, message: "must be an ISO 8601 time with a zone, e.g. '2026-12-01T00:00:00Z'" });
/**
 * Input from a manifest: a CSV, JSONL or Parquet file in the data account listing the blob names
 * (or full blob URLs of the input container) to infer.
 */
const manifest = z
  .object({
    /** Container holding the manifest file (default: the input container). */
    container: container.optional(),
    blob: blobName,
    /** Default: from the file's extension (.csv, .jsonl/.ndjson/.json, .parquet). */
    format: z.enum(['csv', 'jsonl', 'parquet']).optional(),
    /** The column (CSV header name or 0-based index; JSONL/Parquet field) holding blob names. Default: the first CSV column, or 'name'. */
    column: z.union([z.string().min(1).max(200), z.number().int().min(0).max(10_000)]).optional(),
    /** CSV: whether the first line is a header. Default: when column is a name, or the first cell is one of name, path, blob, url. */
    header: z.boolean().optional(),
  })
  .strict();
export type ManifestInput = z.infer<typeof manifest>;
/**
 * Input from an Azure Blob Inventory run of the data account: its destination container and the
 * run's `<ruleName>-manifest.json` (the files it names are read instead of listing the container).
 */
const inventory = z
  .object({
    container,
    manifestBlob: blobName.refine((b) => /-manifest\.json$/i.test(b), "must name an inventory run's '<ruleName>-manifest.json'"),
  })
  .strict();
export type InventoryInput = z.infer<typeof inventory>;
/**
 * One Delta table shared by jobs, partitioned by job_id (a folder, in the output container unless
 * another is named): each job's Parquet parts go to `<path>job_id=<jobId>/` and its finalize commits
 * within its own partition.
 */
const table = z
  .object({
    container: container.optional(),
    path: outputPrefix.refine((p) => p.length > 0 && p.endsWith('/'), "must be a folder ('tables/detections/'): not empty, ending with /"),
  })
  .strict();
export type TableOutput = z.infer<typeof table>;
/** -1 (or absent): no limit by count. */
const toleratedFailureCount = z.number().int().min(-1).max(1_000_000_000);
/**
 * Overlays (images with the detections drawn): every image (true), none (false), or only the images
 * the report shows ('samples', the default: at most 120 per job, so a first report always shows
 * what the model found, for the cost of 120 PNG renders whatever the job's size).
 */
export type Overlays = boolean | 'samples';
const overlays = z.union([z.boolean(), z.literal('samples')]);
const jobId = z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, 'must be 1-100 characters of A-Z a-z 0-9 - _');
const modelName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'must be 1-100 characters of A-Z a-z 0-9 . _ -')
  .refine((n) => !n.includes('..'), "must not contain '..'");
const extensions = z
  .array(z.string().regex(/^\.[A-Za-z0-9]{1,10}$/, "must look like '.jpg'"))
  .min(1)
  .max(32);
/** Which frames of each video a job takes (lib/video/frames.ts). */
const video = z
  .object({
    everyNthFrame: z.number().int().min(1).max(100_000).optional(),
    fps: z.number().positive().max(1000).optional(),
    start: z.number().min(0).optional(),
    end: z.number().positive().optional(),
    maxFrames: z.number().int().min(1).max(10_000_000).optional(),
  })
  .strict()
  .refine((v) => v.everyNthFrame === undefined || v.fps === undefined, { message: 'takes everyNthFrame or fps, not both', path: ['fps'] })
  .refine((v) => v.start === undefined || v.end === undefined || v.end > v.start, { message: 'must be after start', path: ['end'] });
export type VideoSampling = z.infer<typeof video>;
/**
 * Images (or video frames) per partition, or 'auto' (the default): the plan sizes partitions from
 * the job's item count and window (lib/util/partitions.ts, autoPartitionSize), so a small job
 * spreads over every core instead of running as one partition on one.
 */
const partitionSize = z.union([z.number().int().min(1).max(10_000), z.literal('auto')]);
/** Partitions in flight at once; bounds the load on storage and instances. */
const maxParallelPartitions = z.number().int().min(1).max(1000);
const toleratedFailurePercent = z.number().min(0).max(100);

/**
 * Output formats a job writes: results.jsonl, coco_results.json, the results.parquet dataset, and
 * 'delta': the same dataset as a Delta table (its _delta_log/ beside the parts). Delta is on by
 * default: it costs one small commit per finalize, plain Parquet readers skip the log, and Spark
 * or delta-rs readers get atomic versions (a continuous job's batches, a resumed job's rewrite).
 */
export const OUTPUT_FORMATS = ['jsonl', 'coco', 'parquet', 'delta'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
const formats = z
  .array(z.enum(OUTPUT_FORMATS))
  .min(1)
  .refine((f) => new Set(f).size === f.length, 'must not repeat a format')
  .refine((f) => !f.includes('delta') || f.includes('parquet'), "'delta' needs 'parquet' (the table's files are the Parquet parts)")
  .transform((f) => OUTPUT_FORMATS.filter((x) => f.includes(x)))
  .default([...OUTPUT_FORMATS]);

/**
 * The default share of images that may fail (broken files) with the job still succeeding. 5%: a
 * user's first run over a folder of a few hundred images with a few broken files completes, and
 * _failures.jsonl names them; a systematic problem (a wrong model, an unreadable container) fails
 * far more than 5% and still fails the job.
 */
export const DEFAULT_TOLERATED_FAILURE_PERCENT = 5;

const mode = z.enum(['batch', 'continuous']).default('batch');
const pollSeconds = z.number().int().min(1).max(3600).default(30);

export const JobRequestSchema = z
  .object({
    jobId: jobId.optional(),
    input: z
      .object({ container, prefix: blobPrefix.default(''), extensions: extensions.default(['.jpg', '.jpeg', '.png']), maxItems: z.number().int().min(1).max(100_000_000).optional(), modifiedSince: instant.optional(), modifiedBefore: instant.optional(), manifest: manifest.optional(), inventory: inventory.optional(), video: video.optional() })
      .strict(),
    output: z.object({ container, prefix: outputPrefix.default(''), table: table.optional(), overlays: overlays.default('samples'), perImageResults: z.boolean().default(true), formats }).strict(),
    model: z.object({ name: modelName }).strict(),
    partitionSize: partitionSize.default('auto'),
    maxParallelPartitions: maxParallelPartitions.default(32),
    toleratedFailurePercent: toleratedFailurePercent.default(DEFAULT_TOLERATED_FAILURE_PERCENT),
    toleratedFailureCount: toleratedFailureCount.optional(),
    skipExisting: z.boolean().default(true),
    params: InferParamsSchema.default({}),
    /** Replace an existing job of this jobId (its outputs and plan) with this request, even a finished one. */
    restart: z.boolean().default(false),
    /** 'continuous': after the blobs there now, infer new or changed ones as they land, until DELETE. */
    mode,
    /** Continuous jobs: how often the job looks for new blobs (seconds). */
    pollSeconds,
  })
  .strict();

export type JobRequest = z.input<typeof JobRequestSchema>;

export interface JobSpec {
  jobId: string;
  /** `<output prefix><jobId>/`: every output of the job lives under it. */
  jobPrefix: string;
  /**
   * What to infer: the blobs under `prefix` with `extensions` (last modified within
   * [modifiedSince, modifiedBefore) when given), or those a manifest lists (the same filters apply).
   */
  input: { container: string; prefix: string; extensions: string[]; maxItems?: number; modifiedSince?: string; modifiedBefore?: string; manifest?: ManifestInput; inventory?: InventoryInput; video?: VideoSampling };
  /**
   * perImageResults: one results/<name>.json per image besides results.jsonl (one more write per
   * image). formats: which of results.jsonl, coco_results.json and results.parquet/ the job writes.
   */
  output: { container: string; prefix: string; table?: TableOutput; overlays: Overlays; perImageResults: boolean; formats: OutputFormat[] };
  model: { name: string };
  /** A number, or 'auto': the plan chooses (continuous jobs: CONTINUOUS_PARTITION_SIZE, see fixedPartitionSize). */
  partitionSize: number | 'auto';
  maxParallelPartitions: number;
  toleratedFailurePercent: number;
  /** More failed images than this fail the job (-1 or absent: no limit by count). */
  toleratedFailureCount?: number;
  skipExisting: boolean;
  params: InferParams;
  /** When the job was first submitted (set by the HTTP trigger, not the orchestrator). */
  submittedAt: string;
  /** Names this execution's plan: kept when a job resumes, new when it starts or restarts. */
  executionId: string;
  /** This execution replaces an earlier one's plan and outputs. */
  restart: boolean;
  /** 'continuous': new or changed blobs are inferred as they land, until the job is stopped (DELETE). */
  mode: 'batch' | 'continuous';
  /** Continuous jobs: seconds between looks for new blobs. */
  pollSeconds: number;
}

/** Partitions of a continuous job hold this many items when its partitionSize is 'auto' (each batch of arrivals continues the layout at one size). */
export const CONTINUOUS_PARTITION_SIZE = 64;

/** The partition size of a job whose size cannot change with its item count (a continuous job's batches). */
export function fixedPartitionSize(job: Pick<JobSpec, 'partitionSize'>): number {
  return job.partitionSize === 'auto' ? CONTINUOUS_PARTITION_SIZE : job.partitionSize;
}

/** The fields that decide what a job computes and where: fixed for a jobId (see specDifferences). */
export const RESULT_FIELDS = ['input.container', 'input.prefix', 'input.extensions', 'input.maxItems', 'input.modifiedSince', 'input.modifiedBefore', 'input.manifest', 'input.inventory', 'input.video', 'output.container', 'output.prefix', 'output.table', 'output.overlays', 'output.perImageResults', 'output.formats', 'mode', 'model.name', 'partitionSize', 'skipExisting', 'params'] as const;

/** The same rules as the request, on the normalised spec (the orchestrator's input). */
export const JobSpecSchema = z
  .object({
    jobId,
    jobPrefix: z.string().min(1).max(1024),
    input: z.object({ container, prefix: blobPrefix, extensions, maxItems: z.number().int().min(1).max(100_000_000).optional(), modifiedSince: instant.optional(), modifiedBefore: instant.optional(), manifest: manifest.optional(), inventory: inventory.optional(), video: video.optional() }).strict(),
    output: z.object({ container, prefix: outputPrefix, table: table.optional(), overlays, perImageResults: z.boolean().default(true), formats }).strict(),
    model: z.object({ name: modelName }).strict(),
    partitionSize,
    maxParallelPartitions,
    toleratedFailurePercent,
    toleratedFailureCount: toleratedFailureCount.optional(),
    skipExisting: z.boolean(),
    params: InferParamsSchema,
    submittedAt: z.string().datetime(),
    executionId: z.string().min(1).max(100),
    restart: z.boolean(),
    mode,
    pollSeconds,
  })
  .strict()
  .superRefine((j, ctx) => {
    placementIssues(j).forEach((i) => ctx.addIssue({ code: 'custom', path: i.path, message: i.message }));
    inputIssues(j).forEach((i) => ctx.addIssue({ code: 'custom', path: i.path, message: i.message }));
    if (j.jobPrefix !== safeJobPrefix(j.output.prefix, j.jobId)) ctx.addIssue({ code: 'custom', path: ['jobPrefix'], message: `must be the output prefix followed by the jobId ('${safeJobPrefix(j.output.prefix, j.jobId)}')` });
  });

function safeJobPrefix(prefix: string, id: string): string {
  try {
    return jobPrefix(prefix, id);
  } catch {
    return '';
  }
}

/**
 * Where outputs may go: not into the input's prefix in the same container (later jobs would read a
 * job's overlays and results back as images), and the input may not lie inside the job's folder.
 */
function placementIssues(j: { jobId: string; input: { container: string; prefix: string }; output: { container: string; prefix: string; table?: TableOutput } }): { path: string[]; message: string }[] {
  const t = j.output.table;
  if (t) {
    const tc = t.container ?? j.output.container;
    const folder = safeJobPrefix(j.output.prefix, j.jobId);
    if (tc === j.output.container && (t.path.startsWith(folder) || folder.startsWith(t.path))) return [{ path: ['output', 'table', 'path'], message: `'${t.path}' and the job's folder '${folder}' would lie one inside the other; a shared table lives beside job folders` }];
    if (tc === j.input.container && (t.path.startsWith(j.input.prefix) || j.input.prefix.startsWith(t.path))) return [{ path: ['output', 'table', 'path'], message: `'${t.path}' lies inside the input prefix '${j.input.prefix}' of container '${tc}' (or contains it); put the table outside the input` }];
  }
  if (j.input.container !== j.output.container) return [];
  const folder = safeJobPrefix(j.output.prefix, j.jobId);
  if (folder === '') return [];
  if (folder.startsWith(j.input.prefix) || j.input.prefix.startsWith(folder)) {
    return [
      {
        path: ['output', 'prefix'],
        message: `puts the job's outputs ('${folder}') inside the input prefix '${j.input.prefix}' of container '${j.input.container}': they would be read back as inputs; use another container or a prefix outside the input`,
      },
    ];
  }
  return [];
}

/** Input fields that do not go together. */
function inputIssues(j: { input: { modifiedSince?: string; modifiedBefore?: string; manifest?: ManifestInput; inventory?: InventoryInput }; mode: string }): { path: string[]; message: string }[] {
  const { modifiedSince, modifiedBefore, manifest: m, inventory: inv } = j.input;
  if (m && inv) return [{ path: ['input', 'inventory'], message: 'and input.manifest both say which blobs to infer: give one' }];
  if (inv && j.mode === 'continuous') return [{ path: ['input', 'inventory'], message: 'cannot feed a continuous job (it watches a prefix for new blobs); submit a batch job per inventory run' }];
  if (modifiedSince && modifiedBefore && Date.parse(modifiedSince) >= Date.parse(modifiedBefore)) return [{ path: ['input', 'modifiedBefore'], message: `must be later than input.modifiedSince (${modifiedSince})` }];
  if (m && (modifiedSince || modifiedBefore)) return [{ path: ['input', modifiedSince ? 'modifiedSince' : 'modifiedBefore'], message: 'filters a listing by last-modified time; a manifest lists its blobs itself (leave it out, or list by prefix)' }];
  if (m && j.mode === 'continuous') return [{ path: ['input', 'manifest'], message: 'cannot feed a continuous job (it watches a prefix for new blobs); submit a batch job per manifest' }];
  if (m && m.format === undefined && !/\.(csv|jsonl|ndjson|json|parquet)$/i.test(m.blob)) return [{ path: ['input', 'manifest', 'format'], message: `is needed: '${m.blob}' does not end with .csv, .jsonl, .ndjson, .json or .parquet` }];
  return [];
}

/** zod issues as a LakeInferError naming the first offending field. */
function firstIssue(error: z.ZodError, code: 'InvalidRequest', what: string): LakeInferError {
  const issue = error.issues[0]!;
  let field = zodPath(issue.path);
  if (issue.code === 'unrecognized_keys') field = [field, issue.keys[0]].filter(Boolean).join('.');
  return new LakeInferError(code, `${what}field '${field || '(body)'}' ${issue.message.replace(/^Invalid input: /, '')}`, { target: field || '(body)' });
}

/** Validates a request body; throws InvalidRequest whose target is the offending field. */
export function parseJobRequest(body: unknown, now: Date = new Date(), newId: () => string = randomUUID): JobSpec {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new LakeInferError('InvalidRequest', 'request body must be a JSON object', { target: '(body)' });
  }
  const r = JobRequestSchema.safeParse(body);
  if (!r.success) throw firstIssue(r.error, 'InvalidRequest', '');
  const req = r.data;
  const id = req.jobId ?? newId();
  const spec: JobSpec = {
    jobId: id,
    jobPrefix: jobPrefix(req.output.prefix, id),
    input: {
      container: req.input.container,
      prefix: req.input.prefix,
      extensions: req.input.extensions.map((e) => e.toLowerCase()),
      ...(req.input.maxItems ? { maxItems: req.input.maxItems } : {}),
      ...(req.input.modifiedSince ? { modifiedSince: new Date(req.input.modifiedSince).toISOString() } : {}),
      ...(req.input.modifiedBefore ? { modifiedBefore: new Date(req.input.modifiedBefore).toISOString() } : {}),
      ...(req.input.manifest ? { manifest: req.input.manifest } : {}),
      ...(req.input.inventory ? { inventory: req.input.inventory } : {}),
      ...(req.input.video ? { video: req.input.video } : {}),
    },
    output: req.output,
    model: req.model,
    partitionSize: req.partitionSize,
    maxParallelPartitions: req.maxParallelPartitions,
    toleratedFailurePercent: req.toleratedFailurePercent,
    ...(req.toleratedFailureCount !== undefined ? { toleratedFailureCount: req.toleratedFailureCount } : {}),
    skipExisting: req.skipExisting,
    params: req.params,
    submittedAt: now.toISOString(),
    executionId: `${now.getTime().toString(36)}-${newId().replace(/-/g, '').slice(0, 8)}`,
    restart: req.restart,
    mode: req.mode,
    pollSeconds: req.pollSeconds,
  };
  // A continuous job's composed files would be rebuilt after every batch: it writes the Parquet
  // dataset as a Delta table (each batch an atomic append) and per-image results unless formats are asked for.
  const given = (body as { output?: { formats?: unknown } }).output?.formats;
  if (req.mode === 'continuous' && given === undefined) spec.output = { ...spec.output, formats: ['parquet', 'delta'] };
  const mixed = inputIssues(spec)[0];
  if (mixed) throw new LakeInferError('InvalidRequest', `field '${mixed.path.join('.')}' ${mixed.message}`, { target: mixed.path.join('.') });
  const placement = placementIssues(spec)[0];
  if (placement) throw new LakeInferError('InvalidRequest', `field 'output.prefix' ${placement.message}`, { target: 'output.prefix' });
  return spec;
}

/** A JobSpec from anywhere (an orchestration input): throws InvalidRequest naming the field. */
export function parseJobSpec(value: unknown, where = 'job'): JobSpec {
  const r = JobSpecSchema.safeParse(value);
  if (!r.success) {
    const e = firstIssue(r.error, 'InvalidRequest', '');
    const field = `${where}.${e.target}`;
    throw new LakeInferError(e.code, e.message.replace(`field '${e.target}'`, `field '${field}'`), { target: field });
  }
  return r.data as JobSpec;
}

function get(o: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), o);
}

/** Canonical JSON (sorted keys) for comparing values. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The result-deciding fields on which two specs of one jobId differ. */
export function specDifferences(a: JobSpec, b: JobSpec): string[] {
  return RESULT_FIELDS.filter((f) => canonical(get(a, f)) !== canonical(get(b, f)));
}

/** A digest of the result-deciding fields: recorded in the plan, compared when a plan is reused. */
export function specDigest(j: JobSpec): string {
  return canonical(Object.fromEntries(RESULT_FIELDS.map((f) => [f, get(j, f)])));
}

/** The job of an orchestration input: `{ job }` at start, `{ state: { job } }` after continueAsNew. */
export function jobOf(input: unknown): JobSpec | undefined {
  if (typeof input !== 'object' || input === null) return undefined;
  const i = input as Partial<{ job: JobSpec; state: { job: JobSpec } }>;
  return i.job ?? i.state?.job;
}

/** The request that makes this spec (for resubmitting a job as it was: retry). */
export function requestOf(j: JobSpec): JobRequest {
  return {
    jobId: j.jobId,
    input: j.input,
    output: j.output,
    model: j.model,
    partitionSize: j.partitionSize,
    maxParallelPartitions: j.maxParallelPartitions,
    toleratedFailurePercent: j.toleratedFailurePercent,
    ...(j.toleratedFailureCount !== undefined ? { toleratedFailureCount: j.toleratedFailureCount } : {}),
    skipExisting: j.skipExisting,
    params: j.params,
    mode: j.mode,
    pollSeconds: j.pollSeconds,
  };
}
