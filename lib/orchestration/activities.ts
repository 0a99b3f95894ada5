/**
 * The job's activities as plain functions made from their dependencies (clients, model cache).
 * Contract with the orchestrator: an activity throws only when a retry can help (the error is
 * retryable); a failure that retrying cannot fix comes back as a value ({ ok: false, error }),
 * so no retries are wasted on it.
 */
import type { BlobServiceClient } from '@azure/storage-blob';
import { ensureErrorType, isLakeInferError, LakeInferError } from '../util/errors';
import { finalizeJob, PartitionsToRecompute, type CostSettings, type FinalizeInput, type Manifest } from '../fanin/finalize';
import type { PartitionCounts } from '../job/totals';
import { claimJobFolder, clearOutcome } from '../job/folder';
import { fixedPartitionSize, type JobSpec } from '../job/request';
import { ModelCache, type ModelVersion } from '../model';
import { inferenceLayout, settings } from '../util/config';
import { instanceCores } from '../util/cores';
import { collectArrivals, registrationName, type CollectInput, type CollectResult, type ContinuousIndex, type Registration } from '../continuous/collect';
import { inferPartition, type PartitionSummary } from '../partition/pipeline';
import { DEFAULT_ROLE_PROPAGATION, whileRolesPropagate, type RolePropagation } from '../storage/roles';
import type { Segment } from '../job/layout';
import { dataService, ensureContainer, readJson, planIndexName, writeJson, writePlan, type PlanIndex } from '../storage';
import { manifestPages, type ManifestStats } from '../storage/manifestInput';
import { inventoryPages, type InventoryStats } from '../storage/inventoryInput';
import { planProgressName, planStep, type PlanProgress, type PlanStepOptions } from '../storage/planStream';
import { isVideoName } from '../video/ffmpeg';
import { AUTO_MAX } from '../util/partitions';
import { videoExpander } from '../video/plan';

export interface ActivityDeps {
  service: () => Promise<BlobServiceClient>;
  cache: ModelCache;
  modelsContainer: string;
  ioConcurrency: number;
  maxImageBytes: number;
  maxImagePixels: number;
  /** A partition's piece stops taking images after this long (PARTITION_TIME_BUDGET_SECONDS). */
  partitionBudgetMs: number;
  /** Blobs one planning step lists (PLAN_CHUNK_ITEMS). */
  planChunkItems: number;
  cost: CostSettings;
  /**
   * Identity-based access (managed identity, Key Vault): a 403 in the first minutes after the
   * instance started is waited out as a role assignment still propagating. Absent: no waiting.
   */
  roles?: RolePropagation;
}

export interface ActivityError {
  code: string;
  message: string;
  /** FragmentChanged: the partitions finalize forgot, with what each had counted; they run again. */
  recompute?: { n: number; counts: PartitionCounts }[];
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: ActivityError };

/** The model version a job pins at plan time. */
export type PinnedModel = { name: string } & ModelVersion;

export interface PlanResult {
  partitions: number;
  total: number;
  bytes: number;
  /** Items per partition as the plan chose them (a job's 'auto' resolved; older plans: absent). */
  partitionSize?: number;
  model: PinnedModel;
  /** A resumed continuous job: the last arrival record it took. */
  cursor?: string;
  /** A continuous job's partial runs of partitions, one per batch that did not end on a full partition. */
  layout?: Segment[];
  /** The listing goes on (planMore plans the next chunk): the plan holds `partitions` so far, each full. */
  more?: boolean;
}

export interface PartitionInput {
  job: Pick<JobSpec, 'jobId' | 'jobPrefix' | 'input' | 'output' | 'params' | 'skipExisting'> & { model: PinnedModel; samples?: number };
  n: number;
  /** A continuation of partition n: its images from this index on. */
  from?: number;
  /** This run of the job and the attempts a piece may take in it (counted in storage). */
  run?: string;
  maxAttempts?: number;
}

/**
 * Counts only: what goes back into the orchestration history stays small. A partition that ran out
 * of its time budget comes back not done, with where its continuation starts.
 */
export type PartitionResult =
  | ({ n: number; done: true } & Pick<PartitionSummary, 'images' | 'succeeded' | 'failed' | 'skipped' | 'detections' | 'wallMs'>)
  | { n: number; done: false; next: number; images: number; wallMs: number };

/** Retryable errors are thrown (the orchestrator retries); the rest become { ok: false }. */
async function outcome<T>(fn: () => Promise<T>, roles?: RolePropagation, what = 'activity'): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await (roles ? whileRolesPropagate(what, fn, roles) : fn()) };
  } catch (err) {
    if (err instanceof PartitionsToRecompute) return { ok: false, error: { code: err.code, message: err.message, recompute: err.partitions } };
    if (isLakeInferError(err) && !err.retryable) return { ok: false, error: { code: err.code, message: err.message } };
    if (isLakeInferError(err)) throw err;
    // Unknown errors: assume transient (a crash, a timeout) and let the retry policy decide.
    throw new LakeInferError('Internal', ensureErrorType(err).message, { retryable: true, cause: err });
  }
}

export function createActivities(deps: ActivityDeps) {
  return {
    close: (): Promise<void> => deps.cache.close(),

    /**
     * Loads a pinned model into this process ahead of its first partition (the local host asks its
     * idle activity processes once a plan names the model). Best effort: a partition loads it anyway.
     */
    preload: async (model: { name: string } & Partial<ModelVersion>): Promise<void> => {
      const svc = await deps.service();
      const pin = model.etag && model.jsonEtag ? { etag: model.etag, jsonEtag: model.jsonEtag } : undefined;
      await deps.cache.get(svc.getContainerClient(deps.modelsContainer), model.name, pin).catch(() => undefined);
    },

    /**
     * Claims the job folder (a conflicting request or folder fails here), pins and checks the model
     * (one probe inference), lists the input and writes the plan. A resumed job reuses its plan
     * and the model version it pinned.
     */
    planJob: (job: JobSpec): Promise<Outcome<PlanResult>> =>
      outcome(async () => {
        const svc = await deps.service();
        const input = svc.getContainerClient(job.input.container);
        const output = svc.getContainerClient(job.output.container);
        const models = svc.getContainerClient(deps.modelsContainer);
        if (!(await input.exists())) {
          throw new LakeInferError('ContainerNotFound', `input container '${job.input.container}' does not exist`, { target: 'input.container' });
        }
        await ensureContainer(output);
        const claim = await claimJobFolder(output, job);
        if (claim === 'resume') await clearOutcome(output, job.jobPrefix);
        const planned = await readJson<PlanIndex>(output, planIndexName(job.jobPrefix));
        // The version to pin (a resumed job keeps the one it pinned). Loading it validates the model
        // against its ONNX file (shapes, roles, labels, a probe inference) while the input is listed:
        // no partition runs unless both succeed.
        // A plan made in steps keeps the version its first step pinned.
        const version = planned?.model ?? (await readJson<PlanProgress>(output, planProgressName(job.jobPrefix)))?.model ?? (await deps.cache.current(models, job.model.name));
        const pin: PinnedModel = { name: job.model.name, etag: version.etag, jsonEtag: version.jsonEtag };
        const m = job.input.manifest;
        const inv = job.input.inventory;
        const read: ManifestStats = { entries: 0, planned: 0, duplicates: 0, filtered: 0, invalid: 0 };
        const invRead: InventoryStats = { rows: 0, planned: 0, otherContainers: 0, notCurrent: 0, filtered: 0, duplicates: 0, invalid: 0 };
        const videos = job.input.extensions.some((e) => isVideoName(`x${e}`));
        const filters = { prefix: job.input.prefix, extensions: job.input.extensions, ...(job.input.maxItems ? { maxItems: job.input.maxItems } : {}) };
        // A batch job over a listing is planned in steps: its first partitions start while the
        // listing goes on (planMore). Manifests, inventories, videos and continuous jobs are planned whole.
        if (streamsPlan(job)) {
          const [, step] = await Promise.all([deps.cache.get(models, job.model.name, pin, { validate: true }), planStep(input, output, stepOptions(job, pin, deps.planChunkItems))]);
          if (step.index.total === 0 && !step.more) {
            await output.getBlobClient(planIndexName(job.jobPrefix)).deleteIfExists();
            throw noInputImages(job);
          }
          const i = step.index;
          return { partitions: i.partitions, total: i.total, bytes: i.bytes, partitionSize: i.partitionSize, model: i.model, ...(step.more ? { more: true } : {}) };
        }
        const [, index] = await Promise.all([deps.cache.get(models, job.model.name, pin, { validate: true }), writePlan(input, output, {
          jobId: job.jobId,
          jobPrefix: job.jobPrefix,
          // A continuous job's batches continue its layout at one size; a batch job's size may follow its count.
          partitionSize: job.mode === 'continuous' ? fixedPartitionSize(job) : job.partitionSize,
          window: job.maxParallelPartitions,
          // Frames of a video decode from their keyframe: small partitions would decode its groups of pictures again and again.
          ...(videos ? { minAutoSize: AUTO_MAX } : {}),
          ...filters,
          ...(job.input.modifiedSince ? { modifiedSince: job.input.modifiedSince } : {}),
          ...(job.input.modifiedBefore ? { modifiedBefore: job.input.modifiedBefore } : {}),
          model: pin,
          exclude: { container: job.output.container, prefix: job.jobPrefix },
          ...(m ? { source: manifestPages(svc.getContainerClient(m.container ?? job.input.container), input, m, filters, read) } : {}),
          ...(inv ? { source: inventoryPages(svc.getContainerClient(inv.container), input, inv, { ...filters, ...(job.input.modifiedSince ? { modifiedSince: job.input.modifiedSince } : {}), ...(job.input.modifiedBefore ? { modifiedBefore: job.input.modifiedBefore } : {}) }, invRead) } : {}),
          // Videos become one plan item per frame taken.
          ...(videos ? { expand: videoExpander(input, { ...(job.input.video ? { sampling: job.input.video } : {}), maxPixels: deps.maxImagePixels }) } : {}),
        })]);
        // What the manifest held beside what was planned (repeats, entries the filters left out).
        if (m && !planned) await writeJson(output, `${job.jobPrefix}_plan/manifest-read.json`, { manifest: { container: m.container ?? job.input.container, blob: m.blob }, ...read });
        if (inv && !planned) await writeJson(output, `${job.jobPrefix}_plan/inventory-read.json`, { inventory: inv, ...invRead });
        if (index.total === 0 && inv) {
          await output.getBlobClient(planIndexName(job.jobPrefix)).deleteIfExists();
          throw new LakeInferError('NoInputImages', `no images to infer: inventory run '${inv.manifestBlob}' lists ${invRead.rows} blobs (${invRead.otherContainers} in other containers, ${invRead.notCurrent} deleted, snapshots or old versions), none of them a blob of '${job.input.container}' under prefix '${job.input.prefix}' with the extensions ${job.input.extensions.join(', ')}; check input.inventory, input.prefix and input.extensions`, { target: 'input.inventory' });
        }
        if (index.total === 0 && m && job.mode !== 'continuous') {
          await output.getBlobClient(planIndexName(job.jobPrefix)).deleteIfExists();
          throw new LakeInferError('NoInputImages', `no images to infer: manifest '${m.blob}' has ${read.entries} entries, none of them a blob under prefix '${job.input.prefix}' with the extensions ${job.input.extensions.join(', ')} (${read.duplicates} repeats); check the manifest, input.prefix and input.extensions`, { target: 'input.manifest' });
        }
        if (index.total === 0 && job.mode !== 'continuous') {
          // A typo'd prefix must not "succeed" with 0 images. The empty plan is dropped, so the same
          // job submitted again (once the images are there) lists the input afresh.
          await output.getBlobClient(planIndexName(job.jobPrefix)).deleteIfExists();
          throw noInputImages(job);
        }
        if (job.mode === 'continuous') {
          // The Event Grid function finds the jobs to feed by these registrations.
          const reg: Registration = { jobId: job.jobId, jobPrefix: job.jobPrefix, input: job.input, output: { container: job.output.container } };
          await writeJson(output, registrationName(job.jobId), reg);
        }
        const cursor = (index as ContinuousIndex).continuous?.cursor;
        const layout = (index as ContinuousIndex).continuous?.layout;
        return { partitions: index.partitions, total: index.total, bytes: index.bytes, partitionSize: index.partitionSize, model: index.model, ...(cursor ? { cursor } : {}), ...(layout && layout.length > 1 ? { layout } : {}) };
      }, deps.roles, 'planJob'),

    /** The next chunk of a listing planned in steps (see lib/storage/planStream.ts). */
    planMore: (job: JobSpec): Promise<Outcome<PlanResult>> =>
      outcome(async () => {
        const svc = await deps.service();
        const step = await planStep(svc.getContainerClient(job.input.container), svc.getContainerClient(job.output.container), stepOptions(job, undefined, deps.planChunkItems));
        const i = step.index;
        return { partitions: i.partitions, total: i.total, bytes: i.bytes, partitionSize: i.partitionSize, model: i.model, ...(step.more ? { more: true } : {}) };
      }, deps.roles, 'planMore'),

    /** A continuous job's look for new blobs: a batch of new partitions, or the stop (see lib/continuous/collect.ts). */
    collectArrivals: (input: CollectInput): Promise<Outcome<CollectResult>> =>
      outcome(async () => {
        const svc = await deps.service();
        const output = svc.getContainerClient(input.job.output.container);
        const r = await collectArrivals(output, input, svc.getContainerClient(input.job.input.container));
        if (r.stopped) await output.getBlobClient(registrationName(input.job.jobId)).deleteIfExists();
        return r;
      }, deps.roles, 'collectArrivals'),

    inferPartition: (input: PartitionInput): Promise<Outcome<PartitionResult>> =>
      outcome(async () => {
        const svc = await deps.service();
        const r = await inferPartition(
          {
            input: svc.getContainerClient(input.job.input.container),
            output: svc.getContainerClient(input.job.output.container),
            models: svc.getContainerClient(deps.modelsContainer),
            cache: deps.cache,
            ioConcurrency: deps.ioConcurrency,
            maxImageBytes: deps.maxImageBytes,
            maxImagePixels: deps.maxImagePixels,
            budgetMs: deps.partitionBudgetMs,
            ...(input.job.output.table ? { table: svc.getContainerClient(input.job.output.table.container ?? input.job.output.container) } : {}),
          },
          {
            jobId: input.job.jobId,
            jobPrefix: input.job.jobPrefix,
            n: input.n,
            ...(input.from !== undefined ? { from: input.from } : {}),
            model: input.job.model,
            params: input.job.params,
            overlays: input.job.output.overlays,
            ...(input.job.samples !== undefined ? { samples: input.job.samples } : {}),
            perImageResults: input.job.output.perImageResults !== false,
            parquet: (input.job.output.formats ?? ['parquet']).includes('parquet'),
            ...(input.job.output.table ? { table: { path: input.job.output.table.path } } : {}),
            skipExisting: input.job.skipExisting,
            ...(input.run !== undefined ? { run: input.run } : {}),
            ...(input.maxAttempts !== undefined ? { maxAttempts: input.maxAttempts } : {}),
          },
        );
        if (!r.done) return { n: input.n, done: false, next: r.next, images: r.piece.images, wallMs: r.piece.wallMs };
        const s = r.summary;
        // A partition completed by an earlier run of the job: nothing was recomputed, its images count as skipped.
        if (r.resumed) return { n: s.n, done: true, images: s.images, succeeded: 0, failed: s.failed, skipped: s.succeeded + s.skipped, detections: s.detections, wallMs: 0 };
        return { n: s.n, done: true, images: s.images, succeeded: s.succeeded, failed: s.failed, skipped: s.skipped, detections: s.detections, wallMs: s.wallMs };
      }, deps.roles, 'inferPartition'),

    finalizeJob: (input: FinalizeInput): Promise<Outcome<Pick<Manifest, 'status' | 'counts' | 'files'>>> =>
      outcome(async () => {
        const svc = await deps.service();
        const table = input.job.output.table;
        const m = await finalizeJob(svc.getContainerClient(input.job.output.container), input, deps.cost, table ? { table: svc.getContainerClient(table.container ?? input.job.output.container) } : {});
        return { status: m.status, counts: m.counts, files: m.files };
      }, deps.roles, 'finalizeJob'),
  };
}

export type Activities = ReturnType<typeof createActivities>;

let processActivities: Activities | undefined;
/** This process's activities, built from settings on first use (one model cache per instance). */
export function defaultActivities(): Activities {
  if (!processActivities) {
    const s = settings();
    processActivities = createActivities({
      service: () => dataService(s.data),
      cache: new ModelCache({ ...inferenceLayout(s, instanceCores()), batchSize: s.inferBatchSize, maxCacheBytes: s.modelCacheMaxBytes }),
      modelsContainer: s.modelsContainer,
      ioConcurrency: s.ioConcurrency,
      maxImageBytes: s.maxImageBytes,
      maxImagePixels: s.maxImagePixels,
      partitionBudgetMs: s.partitionBudgetSeconds * 1000,
      planChunkItems: s.planChunkItems,
      cost: { instanceMemoryMB: s.instanceMemoryMB, pricePerGbSecond: s.pricePerGbSecond },
      // Role assignments matter only where the app reaches storage by identity (Azure).
      ...(s.data.kind === 'connectionString' ? {} : { roles: DEFAULT_ROLE_PROPAGATION }),
    });
  }
  return processActivities;
}

/** Releases this process's model sessions and worker threads (host shutdown, tests). */
export async function closeDefaultActivities(): Promise<void> {
  const a = processActivities;
  processActivities = undefined;
  await a?.close();
}

/** Whether a job's plan is made in steps (a batch job over a plain listing). */
export function streamsPlan(job: JobSpec): boolean {
  return job.mode !== 'continuous' && !job.input.manifest && !job.input.inventory && !job.input.extensions.some((e) => isVideoName(`x${e}`));
}

function stepOptions(job: JobSpec, pin: PinnedModel | undefined, chunkItems: number): PlanStepOptions {
  return {
    jobId: job.jobId,
    jobPrefix: job.jobPrefix,
    partitionSize: job.partitionSize,
    window: job.maxParallelPartitions,
    model: pin ?? { name: job.model.name, etag: '', jsonEtag: '' },
    prefix: job.input.prefix,
    extensions: job.input.extensions,
    ...(job.input.maxItems ? { maxItems: job.input.maxItems } : {}),
    ...(job.input.modifiedSince ? { modifiedSince: job.input.modifiedSince } : {}),
    ...(job.input.modifiedBefore ? { modifiedBefore: job.input.modifiedBefore } : {}),
    exclude: { container: job.output.container, prefix: job.jobPrefix },
    chunkItems,
  };
}

/** A listing that found nothing to infer: a typo'd prefix must not "succeed" with 0 images. */
function noInputImages(job: JobSpec): LakeInferError {
  const exts = job.input.extensions.join(', ');
  return new LakeInferError('NoInputImages', `no images to infer: container '${job.input.container}' has no blobs under prefix '${job.input.prefix}' with the extensions ${exts}${job.input.modifiedSince || job.input.modifiedBefore ? ` last modified in [${job.input.modifiedSince ?? '-'}, ${job.input.modifiedBefore ?? '-'})` : ''}${job.input.prefix ? ' (blob names are case-sensitive; a folder prefix ends with /)' : ''}; check input.prefix and input.extensions`, { target: 'input.prefix' });
}
