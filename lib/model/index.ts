/**
 * One image through a model: decode and preprocess, inference (batched in worker threads),
 * postprocessing. The model cache and the engine live in cache.ts and engine.ts.
 */
import type { LoadedModel } from './cache';
import { round1, type ImageInference } from './postprocess';
import sharp from 'sharp';
import { preparePixels, prepareImage, type DecodeLimits, type Prepared, type RgbImage } from './preprocess';
import type { InferParams } from './spec';

export interface ImageTimings {
  decodeMs: number;
  inferMs: number;
  postMs: number;
  /** Time waiting for a free worker (queueing), included in neither of the above. */
  queueMs: number;
  batch: number;
}

export interface AnalyzedImage extends ImageInference {
  width: number;
  height: number;
  format: string;
  timings: ImageTimings;
  /** The decoded image, when preprocessing decoded it whole (for the overlay). */
  pixels?: RgbImage;
}

/** Decode + preprocess + infer + postprocess one image. Bad images throw a per-image LakeInferError. */
export async function analyzeImage(data: Buffer, model: Pick<LoadedModel, 'spec' | 'engine'>, params: InferParams, limits: DecodeLimits): Promise<AnalyzedImage> {
  const t0 = performance.now();
  const prepared = await prepareImage(data, model.spec.input, limits);
  const t1 = performance.now();
  const out = await model.engine.infer(prepared, params);
  const total = performance.now() - t1;
  return {
    ...out.result,
    width: prepared.width,
    height: prepared.height,
    format: prepared.format,
    ...(prepared.pixels ? { pixels: prepared.pixels } : {}),
    timings: {
      decodeMs: round1(t1 - t0),
      inferMs: round1(out.runMs),
      postMs: round1(out.postMs),
      queueMs: round1(Math.max(0, total - out.runMs * out.batch - out.postMs * out.batch)),
      batch: out.batch,
    },
  };
}

/**
 * Preprocess + infer + postprocess one decoded RGB image (a video frame): the same reference
 * preprocessing an image gets after its decode. Models whose reference resizes with libvips get
 * the frame as a lossless PNG, so they see exactly what they see of an image.
 */
export async function analyzePixels(img: RgbImage, model: Pick<LoadedModel, 'spec' | 'engine'>, params: InferParams, limits: DecodeLimits): Promise<AnalyzedImage> {
  const t0 = performance.now();
  let prepared: Prepared;
  if (model.spec.input.resample === 'libvips') {
    const png = await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), { raw: { width: img.width, height: img.height, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
    prepared = { ...(await prepareImage(png, model.spec.input, limits)), format: 'video' };
  } else {
    prepared = { ...preparePixels(img, model.spec.input), format: 'video', pixels: img };
  }
  const t1 = performance.now();
  const out = await model.engine.infer(prepared, params);
  const total = performance.now() - t1;
  return {
    ...out.result,
    width: prepared.width,
    height: prepared.height,
    format: prepared.format,
    pixels: img,
    timings: { decodeMs: round1(t1 - t0), inferMs: round1(out.runMs), postMs: round1(out.postMs), queueMs: round1(Math.max(0, total - out.runMs * out.batch - out.postMs * out.batch)), batch: out.batch },
  };
}

export { ModelCache, validateModelName, type LoadedModel, type ModelVersion } from './cache';
export { InferenceEngine } from './engine';
export type { EngineOptions } from './engine';
export { parseModelSpec } from './spec';
export type { ModelSpec, InferParams } from './spec';
