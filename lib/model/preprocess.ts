/**
 * Image decoding and preprocessing with sharp: EXIF orientation, any colour space / depth / palette /
 * alpha to 8-bit sRGB, resize (stretch, letterbox, fit32), exact normalisation into NCHW float32.
 * Every failure is a per-image LakeInferError with a clear code; nothing here throws anything else.
 */
import sharp from 'sharp';
import { LakeInferError } from '../errors';
import type { InputSpec } from './spec';

/** Maps original image pixels (after EXIF rotation) to model-input pixels: x_in = x * scaleX + padX. */
export interface Transform {
  scaleX: number;
  scaleY: number;
  padX: number;
  padY: number;
  /** Model input size (tensor width and height). */
  inW: number;
  inH: number;
}

export interface Prepared {
  /** NCHW float32 for one image: [3, inH, inW]. */
  tensor: Float32Array;
  /** Original size after EXIF orientation. */
  width: number;
  height: number;
  format: string;
  transform: Transform;
}

export interface DecodeLimits {
  maxBytes: number;
  maxPixels: number;
}

export const DEFAULT_LIMITS: DecodeLimits = { maxBytes: 64 * 1024 * 1024, maxPixels: 100_000_000 };

/** Size of the model input for an image of w x h, and the transform to it. */
export function planResize(w: number, h: number, spec: InputSpec): Transform {
  switch (spec.resize) {
    case 'stretch':
      return { scaleX: spec.width / w, scaleY: spec.height / h, padX: 0, padY: 0, inW: spec.width, inH: spec.height };
    case 'letterbox': {
      const r = Math.min(spec.width / w, spec.height / h);
      const nw = Math.max(1, Math.round(w * r));
      const nh = Math.max(1, Math.round(h * r));
      // Same split as ultralytics' LetterBox: half the padding each side, rounded.
      const padX = Math.max(0, Math.round((spec.width - nw) / 2 - 0.1));
      const padY = Math.max(0, Math.round((spec.height - nh) / 2 - 0.1));
      return { scaleX: nw / w, scaleY: nh / h, padX, padY, inW: spec.width, inH: spec.height };
    }
    case 'fit32': {
      const r = Math.max(w, h) > spec.maxSide ? spec.maxSide / Math.max(w, h) : 1;
      const nw = Math.max(32, Math.round((w * r) / 32) * 32);
      const nh = Math.max(32, Math.round((h * r) / 32) * 32);
      return { scaleX: nw / w, scaleY: nh / h, padX: 0, padY: 0, inW: nw, inH: nh };
    }
  }
}

function decodeError(err: unknown): LakeInferError {
  const msg = err instanceof Error ? err.message : String(err);
  if (/pixel limit|exceeds pixel/i.test(msg)) {
    return new LakeInferError('ImageTooLarge', `image exceeds the pixel limit (MAX_IMAGE_PIXELS): ${msg}`, { cause: err });
  }
  return new LakeInferError('ImageDecodeFailed', `could not decode image: ${msg.split('\n')[0]}`, { cause: err });
}

function sharpOf(data: Buffer, limits: DecodeLimits): sharp.Sharp {
  // failOn 'error': truncated or corrupt data fails instead of decoding garbage; first frame of animations.
  return sharp(data, { limitInputPixels: limits.maxPixels, failOn: 'error', animated: false, sequentialRead: true });
}

/** Checks size and decodability; returns the oriented size and format. */
export async function probeImage(data: Buffer, limits: DecodeLimits = DEFAULT_LIMITS): Promise<{ width: number; height: number; format: string }> {
  if (data.length === 0) throw new LakeInferError('ImageEmpty', 'image blob is empty (0 bytes)');
  if (data.length > limits.maxBytes) {
    throw new LakeInferError('ImageTooLarge', `image is ${data.length} bytes, more than MAX_IMAGE_BYTES (${limits.maxBytes})`);
  }
  let meta: sharp.Metadata;
  try {
    meta = await sharpOf(data, limits).metadata();
  } catch (err) {
    throw decodeError(err);
  }
  if (!meta.width || !meta.height || !meta.format) throw new LakeInferError('ImageDecodeFailed', 'not an image (no width, height or format)');
  if (meta.width * meta.height > limits.maxPixels) {
    throw new LakeInferError('ImageTooLarge', `image is ${meta.width}x${meta.height}, more than MAX_IMAGE_PIXELS (${limits.maxPixels})`);
  }
  const oriented = meta.autoOrient ?? { width: meta.width, height: meta.height };
  return { width: oriented.width, height: oriented.height, format: meta.format };
}

/** Oriented 8-bit sRGB pixels of the whole image (for overlays and tests). */
export async function decodeRgb(data: Buffer, limits: DecodeLimits = DEFAULT_LIMITS): Promise<{ data: Buffer; width: number; height: number }> {
  await probeImage(data, limits);
  try {
    const { data: px, info } = await sharpOf(data, limits).rotate().toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    return { data: px, width: info.width, height: info.height };
  } catch (err) {
    throw decodeError(err);
  }
}

/** Decodes, orients, converts and resizes one image, and normalises it into a [3, H, W] float32 tensor. */
export async function prepareImage(data: Buffer, spec: InputSpec, limits: DecodeLimits = DEFAULT_LIMITS): Promise<Prepared> {
  const { width, height, format } = await probeImage(data, limits);
  const t = planResize(width, height, spec);
  const nw = Math.round(width * t.scaleX);
  const nh = Math.round(height * t.scaleY);
  let raw: Buffer;
  let info: sharp.OutputInfo;
  try {
    let img = sharpOf(data, limits).rotate().toColourspace('srgb').removeAlpha();
    if (nw !== width || nh !== height) img = img.resize(nw, nh, { fit: 'fill', kernel: spec.kernel });
    if (t.inW !== nw || t.inH !== nh) {
      img = img.extend({
        left: t.padX,
        top: t.padY,
        right: t.inW - nw - t.padX,
        bottom: t.inH - nh - t.padY,
        background: { r: spec.pad, g: spec.pad, b: spec.pad },
      });
    }
    ({ data: raw, info } = await img.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true }));
  } catch (err) {
    throw decodeError(err);
  }
  if (info.width !== t.inW || info.height !== t.inH || info.channels !== 3) {
    throw new LakeInferError('ImageDecodeFailed', `preprocessing produced ${info.width}x${info.height}x${info.channels}, expected ${t.inW}x${t.inH}x3`);
  }
  return { tensor: normalizeHwc(raw, t.inW, t.inH, spec), width, height, format, transform: t };
}

/** HWC uint8 RGB -> CHW float32, (v * scale - mean) / std per channel, optional BGR order. */
export function normalizeHwc(raw: Uint8Array, w: number, h: number, spec: Pick<InputSpec, 'scale' | 'mean' | 'std' | 'channelOrder'>): Float32Array {
  const plane = w * h;
  const out = new Float32Array(3 * plane);
  const order = spec.channelOrder === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  for (let c = 0; c < 3; c++) {
    const src = order[c]!;
    const mean = spec.mean[c]!;
    const std = spec.std[c]!;
    // The 256 possible values, each computed exactly in float64 once.
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = (v * spec.scale - mean) / std;
    const base = c * plane;
    for (let i = 0, j = src; i < plane; i++, j += 3) out[base + i] = lut[raw[j]!]!;
  }
  return out;
}
