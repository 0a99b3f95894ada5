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
import { createHash, randomBytes } from 'node:crypto';
import { isAuthorizationDenied } from '../storage/roles';
import type { ContainerClient } from '@azure/storage-blob';
import { ensureErrorType, isLakeInferError, LakeInferError, restStatus } from '../util/errors';
import { round1 } from '../model/postprocess';
import { watchForCancel } from '../job/folder';
import { analyzeImage, type AnalyzedImage, type LoadedModel, type ModelCache, type ModelVersion } from '../model';
import { renderOverlay } from '../model/overlay';
import { AnnotatedFrames } from '../video/annotate';
import { frameOutputName, frameRuns, itemName, perImage, processFrame, videoStats, type Outcome } from './frames';
import type { InferParams } from '../model/spec';
import type { Overlays } from '../job/request';
import {
  addStages,
  beginAttempt,
  combinePieces,
  earlierPieces,
  emptyStages,
  FAILURES_PER_PIECE,
  LATENCY_BOUNDS_MS,
  latencyBucket,
  partSummaryName,
  pieceFragmentName,
  pieceSummaryName,
  recordAttemptError,
  roundStages,
  annotatedSegmentName,
  type AnnotatedSegment,
  DEFAULT_SAMPLES,
  LANDED_BOUNDS_S,
  drawsOverlay,
  LabelTally,
  MAX_SAMPLES,
  type FailureRecord,
  type ImageResult,
  type Fragment,
  type FragmentKind,
  type ImageSample,
  type PartitionSummary,
  type PieceFragments,
  type PieceSummary,
  type Stage,
} from './parts';
import { deltaStats, PARQUET_DATASET, parquetFile, parquetPartName, parquetRows, type ParquetItem } from './parquet';
import { collectStream, mapLimit, normalizeEtag, outputBlobName, readJson, readPlan, storageError, writeBlob, writeJson, type BlobRef, type PlanPartition } from '../storage';

export type { FailureRecord, ImageResult, PartitionSummary, Stage, StageTimings } from './parts';

export interface PartitionDeps {
  input: ContainerClient;
  output: ContainerClient;
  models: ContainerClient;
  cache: ModelCache;
  ioConcurrency: number;
  maxImageBytes: number;
  maxImagePixels: number;
  /** Time allowed to decode one run of video frames (default 10 min). */
  videoTimeoutMs?: number;
  /** A piece stops taking new images once it has run this long (default: no limit). */
  budgetMs?: number;
  /** The container of the job's shared Delta table (output.table), when it has one. */
  table?: ContainerClient;
}

export interface PartitionTask {
  jobId: string;
  jobPrefix: string;
  n: number;
  /** First image of the partition this piece starts at (a continuation's is past 0). */
  from?: number;
  /** The model version the job's plan pinned. */
  model: { name: string } & ModelVersion;
  params: InferParams;
  /** Draw overlays for every image, none, or the report's samples only. */
  overlays: Overlays;
  /** Images this partition keeps for the report (the orchestrator's share of MAX_SAMPLES). */
  samples?: number;
  /** Write results/<name>.json per image (default true); results.jsonl has them either way. */
  perImageResults?: boolean;
  /** Write the piece's Parquet part (default true). */
  parquet?: boolean;
  /** A Delta table shared by jobs (in deps.table): the part goes to `<path>job_id=<jobId>/`. */
  table?: { path: string };
  skipExisting: boolean;
  /** This run of the job (attempts are counted per run) and the attempts it allows each piece. */
  run?: string;
  maxAttempts?: number;
}

/** A piece's end: the partition is complete, or it goes on from `next` in a continuation. */
export type PieceResult = { done: true; summary: PartitionSummary; resumed: boolean } | { done: false; next: number; piece: PieceSummary };


async function processImage(deps: PartitionDeps, task: PartitionTask, model: LoadedModel, blob: BlobRef, lookForExisting: boolean, overlay: boolean): Promise<Outcome> {
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
      return { kind: 'skipped', result: existing, line: JSON.stringify(existing), latency: performance.now() - t0 };
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
    // A 403 is the container's (a missing or still-propagating role), never this image's alone.
    if (perImage(e) && !isAuthorizationDenied(err)) return fail('download', e);
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
    if (overlay) {
      const o = await renderOverlay(analyzed.pixels ?? data, analyzed.detections, { limits: { maxBytes: deps.maxImageBytes, maxPixels: deps.maxImagePixels } });
      await writeBlob(deps.output, outputBlobName(task.jobPrefix, 'overlays', blob.name, '.png'), o.png);
    }
    result.timings.writeMs = round1(performance.now() - t2);
    if (task.perImageResults !== false) await writeJson(deps.output, resultName, result);
  } catch (err) {
    const e = isLakeInferError(err) ? err : storageError(err, 'writing result', resultName);
    if (perImage(e)) return fail('write', e);
    throw e;
  }
  return { kind: 'ok', result, line: JSON.stringify(result), latency: performance.now() - t0, t: result.timings };
}

/** The COCO annotations of one result, each written ',\n{...}' so that fragments compose. */
export function cocoLines(r: ImageResult, imageId: number): string {
  let text = '';
  for (const d of r.detections) {
    text += `,\n${JSON.stringify({ image_id: imageId, file_name: itemName({ name: r.source.name, ...(r.frame ? { frame: { index: r.frame.index } as never } : {}) }), category_id: d.category_id, bbox: d.bbox, score: d.score, ...(d.segmentation ? { segmentation: d.segmentation } : {}) })}`;
  }
  return text;
}

function sampleOf(task: PartitionTask, r: ImageResult, drawn: boolean): ImageSample {
  const top = r.classes?.[0];
  return {
    name: r.frame ? `${r.source.name}#frame=${r.frame.index}` : r.source.name,
    ...(top ? { top: { label: top.label, score: Math.round(top.score * 1000) / 1000 } } : {}),
    ...(drawn ? { overlay: (r.frame ? frameOutputName(task.jobPrefix, 'overlays', r.source.name, r.frame.index, '.png') : outputBlobName(task.jobPrefix, 'overlays', r.source.name, '.png')).slice(task.jobPrefix.length) } : {}),
    width: r.width,
    height: r.height,
    detections: r.detections.length,
    labels: r.detections.length ? r.detections.map((d) => d.label) : (r.classes ?? []).slice(0, 1).map((c) => c.label),
  };
}

/**
 * Runs one piece of a partition: its images from `task.from` until the end, or until the time
 * budget runs out (at least one image each time). Throws only retryable, partition-level errors.
 * A partition whose summary exists for the same model and plan is not run again (resume); a piece
 * attempted more than maxAttempts times in this run fails for good (AttemptsExhausted), so that a
 * message delivered again after its retries were spent cannot run for ever.
 */
export async function inferPartition(deps: PartitionDeps, task: PartitionTask): Promise<PieceResult> {
  const startedAt = new Date();
  const t0 = performance.now();
  const from = task.from ?? 0;
  const plan = await readPlan(deps.output, task.jobPrefix, task.n);
  const modelPin = { etag: task.model.etag, jsonEtag: task.model.jsonEtag };
  const run = task.run ?? 'unversioned';
  const done = await readJson<PartitionSummary>(deps.output, partSummaryName(task.jobPrefix, task.n));
  if (done && done.planEtag === plan.etag && done.model?.etag === modelPin.etag && done.model.jsonEtag === modelPin.jsonEtag) {
    // Complete already: by this run (a message delivered again after the work), or by an earlier run.
    if (done.run === run) return { done: true, summary: done, resumed: false };
    if (task.skipExisting) return { done: true, summary: done, resumed: true };
  }
  const attempt = await beginAttempt(deps.output, task.jobPrefix, task.n, from, run);
  if (task.maxAttempts !== undefined && attempt.count > task.maxAttempts) {
    const last = attempt.last ? `; the last failure: ${attempt.last.code}: ${attempt.last.message}` : '';
    throw new LakeInferError('AttemptsExhausted', `partition ${task.n}${from > 0 ? ` (from image ${from})` : ''} was attempted ${attempt.count} times, more than its ${task.maxAttempts} attempts${last}`, { target: `partition ${task.n}` });
  }
  try {
    return await runPiece(deps, task, plan, from, attempt.startedBefore, startedAt, t0, modelPin);
  } catch (err) {
    if (isLakeInferError(err) && err.retryable) await recordAttemptError(deps.output, task.jobPrefix, task.n, from, run, err.code, err.message);
    else if (!isLakeInferError(err)) await recordAttemptError(deps.output, task.jobPrefix, task.n, from, run, 'Internal', ensureErrorType(err).message);
    throw err;
  }
}

async function runPiece(deps: PartitionDeps, task: PartitionTask, plan: PlanPartition & { etag: string }, from: number, startedBefore: boolean, startedAt: Date, t0: number, modelPin: PartitionSummary['model']): Promise<PieceResult> {
  const tModel = performance.now();
  const model = await deps.cache.get(deps.models, task.model.name, task.model);
  const modelLoadMs = round1(performance.now() - tModel);
  // Results can only exist if an earlier attempt of this piece started (in this run of the job or
  // an earlier one): a new piece skips the per-image look-ups that skipExisting would otherwise cost.
  const lookForExisting = task.skipExisting && startedBefore && task.perImageResults !== false;
  // A cancelled job stops taking images; what was written stays.
  const cancel = await watchForCancel(deps.output, task.jobPrefix);
  const blobs = plan.blobs.slice(from);
  // The report's samples: the images at evenly spaced places of the partition (their overlays are
  // drawn when overlays are 'samples'), the successful ones among them kept.
  const quota = Math.max(1, Math.min(MAX_SAMPLES, task.samples ?? DEFAULT_SAMPLES));
  const every = Math.max(1, Math.ceil(plan.blobs.length / quota));
  const isSampleSlot = (j: number): boolean => j % every === 0;
  // Consecutive frames of one video: decoded once per run, from its keyframe.
  const runs = frameRuns(deps.input, blobs, deps.videoTimeoutMs ?? 600_000);
  const deadline = deps.budgetMs === undefined ? Number.POSITIVE_INFINITY : t0 + deps.budgetMs;
  // With every overlay asked for, a video's frames also make its annotated video (a segment per piece).
  const annotated = task.overlays === true && blobs.some((b) => b.frame) ? await AnnotatedFrames.create() : undefined;
  const annotate = annotated ? (video: string, frame: { index: number; time: number }, rgb: { data: Uint8Array; width: number; height: number }) => annotated.add(video, frame, rgb) : undefined;
  let started = 0;
  let firstResultMs: number | undefined;
  const doneAt: number[] = [];
  let outcomes: (Outcome | undefined)[];
  try {
    outcomes = await mapLimit(blobs, deps.ioConcurrency, async (blob, i) => {
      if (cancel.cancelled) return undefined;
      // Out of time: stop taking images (after at least one, so that every piece makes progress).
      if (started > 0 && performance.now() >= deadline) return undefined;
      started++;
      const place = runs.at[i];
      const overlay = drawsOverlay(task.overlays, isSampleSlot(from + i));
      const o = blob.probeError
        ? ({ kind: 'failed', failure: { blob: blob.name, stage: 'probe', code: blob.probeError.code, message: blob.probeError.message }, latency: 0 } satisfies Outcome)
        : place
          ? await processFrame(deps, { ...task, overlays: overlay, ...(annotate ? { annotate } : {}) }, model, blob, place)
          : await processImage(deps, task, model, blob, lookForExisting, overlay);
      firstResultMs ??= round1(performance.now() - t0);
      doneAt[i] = Date.now();
      return o;
    });
    if (cancel.cancelled) throw new LakeInferError('JobCancelled', `job '${task.jobId}' was cancelled; partition ${task.n} stopped`);
  } catch (err) {
    await annotated?.close();
    throw err;
  } finally {
    cancel.stop();
    for (const r of runs.runs) r.close();
  }
  // Images are taken in order, so the ones done are a prefix of the piece.
  const count = outcomes.findIndex((o) => o === undefined);
  const done = (count < 0 ? outcomes : outcomes.slice(0, count)) as Outcome[];
  const to = from + done.length;

  const stageMs = emptyStages();
  const latencyCounts = new Array<number>(LATENCY_BOUNDS_MS.length).fill(0);
  const lines: string[] = [];
  let coco = '';
  const failures: FailureRecord[] = [];
  const samples: ImageSample[] = [];
  const labels = new LabelTally();
  let landed: number[] | undefined;
  let detections = 0;
  done.forEach((o, i) => {
    const at = blobs[i]!.landed;
    if (at && o.kind !== 'failed') (landed ??= new Array<number>(LANDED_BOUNDS_S.length).fill(0))[LANDED_BOUNDS_S.findIndex((b) => (doneAt[i]! - Date.parse(at)) / 1000 <= b)]!++;
    latencyCounts[latencyBucket(o.latency)]!++;
    if (o.kind === 'failed') {
      failures.push(o.failure);
      return;
    }
    lines.push(o.line);
    coco += cocoLines(o.result, plan.first + from + i + 1);
    detections += o.result.detections.length;
    labels.add(o.result);
    if (isSampleSlot(from + i) && samples.length < quota) samples.push(sampleOf(task, o.result, task.overlays === true || (task.overlays === 'samples' && o.kind === 'ok')));
    if (o.t) addStages(stageMs, o.t);
  });
  roundStages(stageMs);
  const videos = videoStats(blobs, done);
  // This attempt's own fragment names: a duplicate attempt racing this one writes beside it.
  const attempt = randomBytes(4).toString('hex');
  const write = async (kind: FragmentKind, text: string): Promise<Fragment> => {
    const body = Buffer.from(text, 'utf8');
    const name = pieceFragmentName(task.jobPrefix, task.n, from, kind, attempt);
    const etag = await writeBlob(deps.output, name, body);
    return { bytes: body.length, etag: etag as string, name, md5: createHash('md5').update(body).digest('base64') };
  };
  const writeParquet = async (): Promise<PieceFragments['parquet']> => {
    const items: ParquetItem[] = done.map((o, i) => (o.kind === 'failed' ? { failure: o.failure, container: deps.input.containerName, etag: blobs[i]!.etag } : { result: o.result }));
    const rows = parquetRows(task.jobId, items, { name: task.model.name, etag: task.model.etag });
    if (rows.length === 0) return undefined; // no image done: nothing to add to the dataset
    const body = await parquetFile(rows, { 'lakeinfer.job': task.jobId, 'lakeinfer.partition': String(task.n), 'lakeinfer.from': String(from) });
    if (task.table && deps.table) {
      // The job's partition of the shared table (Hive-style folder: the jobId needs no escaping). The
      // run is in the name: a restarted job's parts are new files, never the old ones rewritten
      // (Delta's files are immutable; readers of an older version keep reading theirs).
      const runTag = createHash('sha1').update(task.run ?? 'unversioned').digest('hex').slice(0, 8);
      const name = `job_id=${task.jobId}/${parquetPartName(task.n, from).slice(PARQUET_DATASET.length).replace(/\.parquet$/, `-${runTag}.parquet`)}`;
      const etag = await writeBlob(deps.table, `${task.table.path}${name}`, body);
      return { name, table: true, rows: rows.length, bytes: body.length, etag: etag as string, stats: deltaStats(rows) };
    }
    const name = parquetPartName(task.n, from);
    const etag = await writeBlob(deps.output, `${task.jobPrefix}${name}`, body);
    return { name, rows: rows.length, bytes: body.length, etag: etag as string, stats: deltaStats(rows) };
  };
  const writeSegments = async (): Promise<AnnotatedSegment[] | undefined> => {
    if (!annotated) return undefined;
    try {
      const segments = await annotated.segments();
      return await Promise.all(
        segments.map(async (s, k) => {
          const name = annotatedSegmentName(task.jobPrefix, task.n, from, attempt, k);
          const etag = await writeBlob(deps.output, name, s.data);
          return { video: s.video, first: s.first, frames: s.frames, seconds: Math.round(s.seconds * 1000) / 1000, time: s.time, scratchBytes: s.scratchBytes, name, bytes: s.data.length, etag: etag as string, md5: createHash('md5').update(s.data).digest('base64') };
        }),
      );
    } finally {
      await annotated.close();
    }
  };
  const [results, cocoFrag, failuresFrag, parquet, segments] = await Promise.all([
    write('results', lines.length ? `${lines.join('\n')}\n` : ''),
    write('coco', coco),
    write('failures', failures.length ? `${failures.map((f) => JSON.stringify(f)).join('\n')}\n` : ''),
    task.parquet === false ? undefined : writeParquet(),
    writeSegments(),
  ]);
  const piece: PieceSummary = {
    n: task.n,
    from,
    to,
    modelLoadMs,
    ...(firstResultMs !== undefined ? { firstResultMs } : {}),
    images: done.length,
    succeeded: done.filter((o) => o.kind === 'ok').length,
    failed: failures.length,
    skipped: done.filter((o) => o.kind === 'skipped').length,
    detections,
    stageMs,
    wallMs: round1(performance.now() - t0),
    startedAt: startedAt.toISOString(),
    endedAt: new Date().toISOString(),
    latencyCounts,
    samples,
    ...labels.summary(),
    ...(landed ? { landedCounts: landed } : {}),
    failureHead: failures.slice(0, FAILURES_PER_PIECE),
    ...(videos ? { videos } : {}),
    ...(segments?.length ? { annotated: segments } : {}),
    fragments: { from, to, results, coco: cocoFrag, failures: failuresFrag, ...(parquet ? { parquet } : {}) },
  };
  if (to < plan.blobs.length) {
    await writeJson(deps.output, pieceSummaryName(task.jobPrefix, task.n, from), piece);
    return { done: false, next: to, piece };
  }
  const pieces = from === 0 ? [piece] : [...(await earlierPieces(deps.output, task.jobPrefix, task.n, from)), piece];
  const covered = pieces.reduce((at, p) => (at === p.from ? p.to : -1), 0);
  if (covered !== plan.blobs.length) {
    throw new LakeInferError('PlanInvalid', `partition ${task.n}: its pieces do not cover images 0-${plan.blobs.length} (${pieces.map((p) => `${p.from}-${p.to}`).join(', ')})`, { retryable: true });
  }
  const summary = combinePieces(task.n, pieces, modelPin, plan.etag, task.run ?? 'unversioned');
  await writeJson(deps.output, partSummaryName(task.jobPrefix, task.n), summary);
  return { done: true, summary, resumed: false };
}
