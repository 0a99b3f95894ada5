/**
 * Video frames in a partition: the partition's consecutive frames of one video form a run
 * (lib/video/run.ts) decoded once from its keyframe; each frame item takes its frame from the run
 * and goes through the same reference preprocessing, model and postprocessing as an image.
 * Per-frame results are named `results/<video>.frame-<index>.json`, overlays `overlays/<video>.frame-<index>.png`.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { ensureErrorType, isLakeInferError, LakeInferError } from '../util/errors';
import { round1 } from '../model/postprocess';
import { analyzePixels, type AnalyzedImage, type LoadedModel } from '../model';
import type { InferParams } from '../model/spec';
import { outputBlobName, storageError, writeBlob, writeJson, type BlobRef } from '../storage';
import { renderOverlay, renderOverlayPngAndRgb } from '../model/overlay';
import type { RgbImage } from '../model/preprocess';
import { FrameRun } from '../video/run';
import { blobRangeRead } from '../video/plan';
import type { FailureRecord, ImageResult, Stage, VideoStats } from './parts';

export type Outcome = { kind: 'ok' | 'skipped'; result: ImageResult; line: string; latency: number; t?: ImageResult['timings'] } | { kind: 'failed'; failure: FailureRecord; latency: number };

/** Errors that mean "this image", as opposed to "this partition, try again". */
export function perImage(err: unknown): err is LakeInferError {
  return isLakeInferError(err) && !err.retryable;
}

/** The name an item is known by in results: the blob, and for a frame `#frame=<index>`. */
export function itemName(b: Pick<BlobRef, 'name' | 'frame'>): string {
  return b.frame ? `${b.name}#frame=${b.frame.index}` : b.name;
}

/** A frame's outputs: `<kind>/<video>.frame-<index, 7 digits><ext>` (results .json, overlays .png). */
export function frameOutputName(jobPrefix: string, kind: 'results' | 'overlays', name: string, index: number, ext: string): string {
  return outputBlobName(jobPrefix, kind, `${name}.frame-${String(index).padStart(7, '0')}`, ext);
}

export function frameResultName(jobPrefix: string, b: BlobRef): string {
  return frameOutputName(jobPrefix, 'results', b.name, b.frame!.index, '.json');
}

/** The runs of a piece's items: for item i, its run and its place in it (undefined for images). */
export function frameRuns(input: ContainerClient, items: readonly BlobRef[], timeoutMs: number): { runs: FrameRun[]; at: ({ run: FrameRun; k: number } | undefined)[] } {
  const runs: FrameRun[] = [];
  const at: ({ run: FrameRun; k: number } | undefined)[] = new Array(items.length).fill(undefined);
  for (let i = 0; i < items.length; ) {
    const b = items[i]!;
    if (!b.frame) {
      i++;
      continue;
    }
    let j = i;
    while (j < items.length && items[j]!.frame && items[j]!.name === b.name && items[j]!.etag === b.etag) j++;
    const refs = items.slice(i, j).map((x) => x.frame!);
    const run = new FrameRun(b.frame.blobSize, blobRangeRead(input, b.name, b.etag), refs, timeoutMs);
    runs.push(run);
    for (let k = i; k < j; k++) at[k] = { run, k: k - i };
    i = j;
  }
  return { runs, at };
}

export interface FrameDeps {
  input: ContainerClient;
  output: ContainerClient;
  maxImageBytes: number;
  maxImagePixels: number;
}

/** One frame through the model; a frame that cannot be decoded fails alone (VideoDecodeFailed). */
export async function processFrame(
  deps: FrameDeps,
  task: { jobPrefix: string; params: InferParams; perImageResults?: boolean; overlays: boolean; annotate?: (video: string, frame: { index: number; time: number }, rgb: RgbImage) => Promise<void> },
  model: LoadedModel,
  blob: BlobRef,
  place: { run: FrameRun; k: number },
): Promise<Outcome> {
  const t0 = performance.now();
  const frame = blob.frame!;
  const fail = (stage: Stage, err: LakeInferError): Outcome => ({ kind: 'failed', failure: { blob: blob.name, frame: frame.index, stage, code: err.code, message: err.message }, latency: performance.now() - t0 });
  let pixels;
  try {
    pixels = await place.run.frame(place.k);
  } catch (err) {
    const e = isLakeInferError(err) ? err : new LakeInferError('VideoDecodeFailed', ensureErrorType(err).message);
    if (e.retryable) throw e;
    return fail('decode', e);
  }
  const t1 = performance.now();
  let analyzed: AnalyzedImage;
  try {
    analyzed = await analyzePixels({ data: pixels.data, width: pixels.width, height: pixels.height }, model, task.params, { maxBytes: deps.maxImageBytes, maxPixels: deps.maxImagePixels });
  } catch (err) {
    const e = isLakeInferError(err) ? err : new LakeInferError('InferenceFailed', ensureErrorType(err).message, { cause: err });
    if (perImage(e)) return fail('infer', e);
    throw e;
  }
  const t2 = performance.now();
  const result: ImageResult = {
    source: { container: deps.input.containerName, name: blob.name, etag: blob.etag },
    frame: { index: frame.index, time: frame.time },
    width: analyzed.width,
    height: analyzed.height,
    format: 'video',
    detections: analyzed.detections,
    ...(analyzed.classes ? { classes: analyzed.classes } : {}),
    model: { name: model.name, etag: model.etag },
    timings: { ...analyzed.timings, downloadMs: round1(t1 - t0), writeMs: 0 },
  };
  const name = frameResultName(task.jobPrefix, blob);
  try {
    if (task.overlays) {
      const image = { data: pixels.data, width: pixels.width, height: pixels.height };
      // The annotated video gets the very frame the overlay shows.
      const o = task.annotate ? await renderOverlayPngAndRgb(image, analyzed.detections) : await renderOverlay(image, analyzed.detections);
      await writeBlob(deps.output, frameOutputName(task.jobPrefix, 'overlays', blob.name, frame.index, '.png'), o.png);
      if (task.annotate && 'rgb' in o) await task.annotate(blob.name, frame, o.rgb);
    }
    if (task.perImageResults !== false) await writeJson(deps.output, name, result);
    result.timings.writeMs = round1(performance.now() - t2);
  } catch (err) {
    const e = isLakeInferError(err) ? err : storageError(err, 'writing result', name);
    if (perImage(e)) return fail('write', e);
    throw e;
  }
  return { kind: 'ok', result, line: JSON.stringify(result), latency: performance.now() - t0, t: result.timings };
}

/** Per video among a piece's items: frames inferred and failed, detections per second. */
export function videoStats(items: readonly BlobRef[], done: readonly Outcome[]): Record<string, VideoStats> | undefined {
  let out: Record<string, VideoStats> | undefined;
  done.forEach((o, i) => {
    const b = items[i]!;
    if (!b.frame && !b.probeError) return;
    out ??= {};
    const v = (out[b.name] ??= { frames: 0, failed: 0, detections: 0, bySecond: {}, framesBySecond: {} });
    if (o.kind === 'failed') {
      v.failed++;
      return;
    }
    v.frames++;
    const n = o.result.detections.length;
    v.detections += n;
    const sec = String(Math.floor(b.frame!.time));
    v.bySecond[sec] = (v.bySecond[sec] ?? 0) + n;
    v.framesBySecond[sec] = (v.framesBySecond[sec] ?? 0) + 1;
  });
  return out;
}
