/**
 * Videos in a plan: each video blob becomes one plan item per frame the job takes (in
 * presentation order, each with what decoding it exactly needs), so a long video fans out over
 * partitions like a folder of images and resumes, retries and time budgets work per partition. A
 * video that cannot be read becomes one item carrying the reason (it fails alone, with its code).
 */
import type { ContainerClient } from '@azure/storage-blob';
import { isLakeInferError } from '../util/errors';
import { mapLimit } from '../util/concurrency';
import type { BlobRef, FrameRef } from '../storage/listing';
import { storageError } from '../storage/clients';
import { isVideoName } from './ffmpeg';
import { probeVideo } from './probe';
import { frameTimes, seekSeconds, selectFrames, type VideoOptions } from './frames';
import { serveBlob, type RangeRead } from './source';

export interface VideoPlanOptions {
  sampling?: VideoOptions;
  /** Time allowed to read one video's frame index. */
  probeTimeoutMs?: number;
  /** Frames a video may have (VideoTooLarge past it). */
  maxFrames?: number;
  /** Largest frame (width x height). */
  maxPixels?: number;
  /** Videos probed at once. */
  concurrency?: number;
}

/** Ranged reads of one version of a blob (a blob changed since listing is a 412, not other bytes). */
export function blobRangeRead(container: ContainerClient, name: string, etag: string): RangeRead {
  return async (offset, count) => {
    try {
      const res = await container.getBlobClient(name).download(offset, count, { conditions: { ifMatch: etag.startsWith('"') ? etag : `"${etag}"` } });
      return res.readableStreamBody!;
    } catch (err) {
      throw storageError(err, 'reading video', `${container.containerName}/${name}`);
    }
  };
}

/** The plan items of one video: one per frame taken, or one carrying why it cannot be read. */
export async function planVideo(input: ContainerClient, blob: BlobRef, opts: VideoPlanOptions = {}): Promise<BlobRef[]> {
  if (blob.size === 0) return [{ ...blob, probeError: { code: 'VideoDecodeFailed', message: 'the video is empty (0 bytes)' } }];
  const src = await serveBlob(blob.size, blobRangeRead(input, blob.name, blob.etag));
  try {
    const p = await probeVideo(src.url, { timeoutMs: opts.probeTimeoutMs ?? 600_000, ...(opts.maxFrames ? { maxFrames: opts.maxFrames } : {}), ...(opts.maxPixels ? { maxPixels: opts.maxPixels } : {}) });
    const taken = selectFrames(p, opts.sampling ?? {});
    if (taken.length === 0) return [{ ...blob, probeError: { code: 'VideoNoFrames', message: `none of the video's ${p.pts.length} frames lies in the range the job asks for (input.video)` } }];
    const times = frameTimes(p);
    return taken.map((i, k) => {
      const frame: FrameRef = { index: i, pts: p.pts[i]!, time: times[i]!, seekS: seekSeconds(p, p.pts[p.keyOf[i]!]!), width: p.width, height: p.height, blobSize: blob.size };
      // The blob's bytes count once in the plan's total (on its first frame).
      return { name: blob.name, etag: blob.etag, size: k === 0 ? blob.size : 0, frame };
    });
  } catch (err) {
    if (isLakeInferError(err) && !err.retryable) return [{ ...blob, probeError: { code: err.code, message: err.message } }];
    throw err;
  } finally {
    await src.close();
  }
}

/** A plan's expand step: videos become their frames, every other item stays as it is. */
export function videoExpander(input: ContainerClient, opts: VideoPlanOptions = {}): (items: BlobRef[]) => Promise<BlobRef[]> {
  return async (items) => {
    if (!items.some((b) => isVideoName(b.name))) return items;
    const expanded = await mapLimit(items, opts.concurrency ?? 4, (b) => (isVideoName(b.name) ? planVideo(input, b, opts) : Promise.resolve([b])));
    return expanded.flat();
  };
}
