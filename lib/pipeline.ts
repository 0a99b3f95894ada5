/**
 * One partition end to end: read its plan file, then for each image download -> decode/resize ->
 * infer (batched in worker threads) -> postprocess -> write its result (and overlay). Downloads,
 * decoding and uploads of several images overlap with inference (IO_CONCURRENCY in flight).
 *
 * Per-image problems (corrupt, empty, too large, vanished) are recorded as failures, never thrown.
 * Only partition-level, retryable problems (storage unavailable after the SDK's retries, a crashed
 * inference worker) are thrown, so the orchestrator's retry runs the partition again. A rerun is
 * idempotent: every output has a deterministic name and is overwritten with the same content, and
 * the partition's summary (_parts/<n>.json) is written last.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { ensureErrorType, isLakeInferError, LakeInferError, restStatus } from './errors';
import { round1 } from './model/postprocess';
import { watchForCancel } from './jobFolder';
import { analyzeImage, type AnalyzedImage, type LoadedModel, type ModelCache, type ModelVersion } from './model';
import { renderOverlay } from './model/overlay';
import type { InferParams } from './model/spec';
import { collectStream, mapLimit, normalizeEtag, outputBlobName, readJson, readPlan, storageError, writeBlob, writeJson, type BlobRef } from './storage';

export type Stage = 'plan' | 'download' | 'decode' | 'infer' | 'write';

export interface FailureRecord {
  blob: string;
  stage: Stage;
  code: string;
  message: string;
}

export interface ImageResult {
  source: { container: string; name: string; etag: string };
  width: number;
  height: number;
  format: string;
  detections: AnalyzedImage['detections'];
  classes?: AnalyzedImage['classes'];
  model: { name: string; etag: string };
  timings: AnalyzedImage['timings'] & { downloadMs: number; writeMs: number };
}

export interface StageTimings {
  downloadMs: number;
  decodeMs: number;
  inferMs: number;
  postMs: number;
  writeMs: number;
}

export interface PartitionSummary {
  n: number;
  images: number;
  succeeded: number;
  failed: number;
  skipped: number;
  detections: number;
  /** Sum over images of each stage's time (stages overlap across images). */
  stageMs: StageTimings;
  wallMs: number;
  startedAt: string;
  endedAt: string;
  /** Per-image end-to-end latencies in ms (for the report's histogram). */
  latenciesMs: number[];
}

export interface PartitionDeps {
  input: ContainerClient;
  output: ContainerClient;
  models: ContainerClient;
  cache: ModelCache;
  ioConcurrency: number;
  maxImageBytes: number;
  maxImagePixels: number;
}

export interface PartitionTask {
  jobId: string;
  jobPrefix: string;
  n: number;
  /** The model version the job's plan pinned. */
  model: { name: string } & ModelVersion;
  params: InferParams;
  overlays: boolean;
  skipExisting: boolean;
}

export function partsPrefix(jobPrefix: string): string {
  return `${jobPrefix}_parts/`;
}
export function partSummaryName(jobPrefix: string, n: number): string {
  return `${partsPrefix(jobPrefix)}${n}.json`;
}
export function partResultsName(jobPrefix: string, n: number): string {
  return `${partsPrefix(jobPrefix)}${n}.results.jsonl`;
}
/** Written (if absent) when an attempt of partition n starts: no marker, no earlier results. */
export function partStartedName(jobPrefix: string, n: number): string {
  return `${partsPrefix(jobPrefix)}${n}.started`;
}
export function partFailuresName(jobPrefix: string, n: number): string {
  return `${partsPrefix(jobPrefix)}${n}.failures.jsonl`;
}

type Outcome = { kind: 'ok' | 'skipped'; line: string; detections: number; latency: number; t?: ImageResult['timings'] } | { kind: 'failed'; failure: FailureRecord; latency: number };

/** Errors that mean "this image", as opposed to "this partition, try again". */
function perImage(err: unknown): err is LakeInferError {
  return isLakeInferError(err) && !err.retryable;
}

async function processImage(deps: PartitionDeps, task: PartitionTask, model: LoadedModel, blob: BlobRef, lookForExisting: boolean): Promise<Outcome> {
  const t0 = performance.now();
  const resultName = outputBlobName(task.jobPrefix, 'results', blob.name, '.json');
  const fail = (stage: Stage, err: LakeInferError): Outcome => ({
    kind: 'failed',
    failure: { blob: blob.name, stage, code: err.code, message: err.message },
    latency: performance.now() - t0,
  });

  if (lookForExisting) {
    // An unreadable earlier result is simply recomputed.
    const existing = await readJson<ImageResult>(deps.output, resultName).catch((err: unknown) => {
      if (perImage(err)) return undefined;
      throw err;
    });
    if (existing && existing.source.etag === blob.etag && existing.model.etag === model.etag) {
      return { kind: 'skipped', line: JSON.stringify(existing), detections: existing.detections.length, latency: performance.now() - t0 };
    }
  }
  if (blob.size > deps.maxImageBytes) {
    return fail('download', new LakeInferError('ImageTooLarge', `image is ${blob.size} bytes, more than MAX_IMAGE_BYTES (${deps.maxImageBytes})`));
  }

  let data: Buffer;
  let etag: string;
  try {
    const client = deps.input.getBlobClient(blob.name);
    const res = await client.download();
    etag = res.etag === undefined ? blob.etag : normalizeEtag(res.etag);
    const got = await collectStream(res.readableStreamBody!, deps.maxImageBytes);
    if (!got) return fail('download', new LakeInferError('ImageTooLarge', `image grew past MAX_IMAGE_BYTES (${deps.maxImageBytes}) while downloading`));
    data = got;
  } catch (err) {
    if (restStatus(err) === 404) return fail('download', new LakeInferError('BlobNotFound', `blob '${blob.name}' was deleted after the job was planned`));
    const e = storageError(err, 'downloading image', `${deps.input.containerName}/${blob.name}`);
    if (perImage(e)) return fail('download', e);
    throw e;
  }
  const t1 = performance.now();

  let analyzed: AnalyzedImage;
  try {
    analyzed = await analyzeImage(data, model, task.params, { maxBytes: deps.maxImageBytes, maxPixels: deps.maxImagePixels });
  } catch (err) {
    const e = isLakeInferError(err) ? err : new LakeInferError('InferenceFailed', ensureErrorType(err).message, { cause: err });
    if (perImage(e)) return fail(e.code === 'InferenceFailed' ? 'infer' : 'decode', e);
    throw e;
  }

  const t2 = performance.now();
  const result: ImageResult = {
    source: { container: deps.input.containerName, name: blob.name, etag },
    width: analyzed.width,
    height: analyzed.height,
    format: analyzed.format,
    detections: analyzed.detections,
    ...(analyzed.classes ? { classes: analyzed.classes } : {}),
    model: { name: model.name, etag: model.etag },
    timings: { ...analyzed.timings, downloadMs: round1(t1 - t0), writeMs: 0 },
  };
  try {
    if (task.overlays) {
      const o = await renderOverlay(analyzed.pixels ?? data, analyzed.detections, { limits: { maxBytes: deps.maxImageBytes, maxPixels: deps.maxImagePixels } });
      await writeBlob(deps.output, outputBlobName(task.jobPrefix, 'overlays', blob.name, '.png'), o.png);
    }
    result.timings.writeMs = round1(performance.now() - t2);
    await writeJson(deps.output, resultName, result);
  } catch (err) {
    const e = isLakeInferError(err) ? err : storageError(err, 'writing result', resultName);
    if (perImage(e)) return fail('write', e);
    throw e;
  }
  return { kind: 'ok', line: JSON.stringify(result), detections: analyzed.detections.length, latency: performance.now() - t0, t: result.timings };
}

/** Runs one partition. Throws only retryable, partition-level errors. */
export async function inferPartition(deps: PartitionDeps, task: PartitionTask): Promise<PartitionSummary> {
  const startedAt = new Date();
  const t0 = performance.now();
  const plan = await readPlan(deps.output, task.jobPrefix, task.n);
  const model = await deps.cache.get(deps.models, task.model.name, task.model);
  // Results can only exist if an earlier attempt of this partition started: the first attempt of a
  // new job skips the per-image look-ups that skipExisting would otherwise cost.
  const firstAttempt = await writeBlob(deps.output, partStartedName(task.jobPrefix, task.n), '', { ifNotExists: true });
  const lookForExisting = task.skipExisting && !firstAttempt;
  // A cancelled job stops taking images; what was written stays.
  const cancel = await watchForCancel(deps.output, task.jobPrefix);
  let outcomes: Outcome[];
  try {
    outcomes = await mapLimit(plan.blobs, deps.ioConcurrency, async (blob) => (cancel.cancelled ? undefined : processImage(deps, task, model, blob, lookForExisting))).then((all) => {
      if (cancel.cancelled) throw new LakeInferError('JobCancelled', `job '${task.jobId}' was cancelled; partition ${task.n} stopped`);
      return all as Outcome[];
    });
  } finally {
    cancel.stop();
  }

  const stageMs: StageTimings = { downloadMs: 0, decodeMs: 0, inferMs: 0, postMs: 0, writeMs: 0 };
  const lines: string[] = [];
  const failures: FailureRecord[] = [];
  let detections = 0;
  for (const o of outcomes) {
    if (o.kind === 'failed') {
      failures.push(o.failure);
      continue;
    }
    lines.push(o.line);
    detections += o.detections;
    if (o.t) addStages(stageMs, o.t);
  }
  roundStages(stageMs);
  await writeBlob(deps.output, partResultsName(task.jobPrefix, task.n), lines.length ? `${lines.join('\n')}\n` : '');
  await writeBlob(deps.output, partFailuresName(task.jobPrefix, task.n), failures.length ? `${failures.map((f) => JSON.stringify(f)).join('\n')}\n` : '');
  const summary: PartitionSummary = {
    n: task.n,
    images: plan.blobs.length,
    succeeded: outcomes.filter((o) => o.kind === 'ok').length,
    failed: failures.length,
    skipped: outcomes.filter((o) => o.kind === 'skipped').length,
    detections,
    stageMs,
    wallMs: round1(performance.now() - t0),
    startedAt: startedAt.toISOString(),
    endedAt: new Date().toISOString(),
    latenciesMs: outcomes.map((o) => round1(o.latency)),
  };
  await writeJson(deps.output, partSummaryName(task.jobPrefix, task.n), summary);
  return summary;
}

export function addStages(into: StageTimings, from: StageTimings): void {
  for (const k of Object.keys(into) as (keyof StageTimings)[]) into[k] += from[k];
}

export function roundStages(t: StageTimings): void {
  for (const k of Object.keys(t) as (keyof StageTimings)[]) t[k] = round1(t[k]);
}
