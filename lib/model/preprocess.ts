/**
 * Image decoding and preprocessing: sharp decodes (EXIF orientation, any colour space / depth /
 * palette / alpha to 8-bit sRGB: for JPEG and PNG the same pixels as cv2.imread), then the model
 * family's reference resize (lib/model/resample.ts: float bilinear as torch, or OpenCV's 8-bit
 * INTER_LINEAR bit for bit) with its reference sizing (stretch, ultralytics' letterbox, PaddleOCR's
 * multiple-of-32 fit), and normalisation into NCHW float32 in float32 arithmetic.
 * Every failure is a per-image LakeInferError with a clear code; nothing here throws anything else.
 */
import sharp from 'sharp';
import { LakeInferError } from '../util/errors';
import { resizeBilinearRows, resizeOpencvU8Rows, roundHalfEven } from './resample';
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

/** Oriented 8-bit RGB pixels, interleaved, row-major. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface Prepared {
  /** NCHW float32 for one image: [3, inH, inW]. */
  tensor: Float32Array;
  /** Original size after EXIF orientation. */
  width: number;
  height: number;
  format: string;
  transform: Transform;
  /** The decoded image (reference paths), so overlays need not decode it again. */
  pixels?: RgbImage;
}

export interface DecodeLimits {
  maxBytes: number;
  maxPixels: number;
}

export const DEFAULT_LIMITS: DecodeLimits = { maxBytes: 64 * 1024 * 1024, maxPixels: 100_000_000 };

/**
 * Size of the model input for an image of w x h, and the transform to it, as each reference sizes it:
 * stretch: the model size (YOLACT); letterbox: ultralytics' LetterBox (r = min(W/w, H/h), new size
 * round(w r) x round(h r) with Python's half-to-even round, padding round(d - 0.1) before and
 * round(d + 0.1) after); fit32: PaddleOCR's DetResizeForTest (limit_type 'max': ratio from the longer
 * side when it exceeds maxSide, int() of the scaled size, then round(x / 32) * 32, at least 32);
 * height: PaddleOCR's resize_norm_img (classifier, recogniser): `height` high, ceil(height w / h) wide
 * but at most `width`, on the left of a `width`-wide input (the rest is padding).
 */
export function planResize(w: number, h: number, spec: InputSpec): Transform {
  switch (spec.resize) {
    case 'stretch':
      return { scaleX: spec.width / w, scaleY: spec.height / h, padX: 0, padY: 0, inW: spec.width, inH: spec.height };
    case 'letterbox': {
      const r = Math.min(spec.width / w, spec.height / h);
      const nw = Math.max(1, roundHalfEven(w * r));
      const nh = Math.max(1, roundHalfEven(h * r));
      const padX = Math.max(0, roundHalfEven((spec.width - nw) / 2 - 0.1));
      const padY = Math.max(0, roundHalfEven((spec.height - nh) / 2 - 0.1));
      return { scaleX: nw / w, scaleY: nh / h, padX, padY, inW: spec.width, inH: spec.height };
    }
    case 'height': {
      // resize_norm_img: ratio = w / float(h); resized_w = imgW if ceil(imgH * ratio) > imgW else int(ceil(imgH * ratio)).
      const want = Math.ceil(spec.height * (w / h));
      const nw = Math.max(1, want > spec.width ? spec.width : want);
      return { scaleX: nw / w, scaleY: spec.height / h, padX: 0, padY: 0, inW: spec.width, inH: spec.height };
    }
    case 'fit32': {
      const ratio = Math.max(w, h) > spec.maxSide ? (h > w ? spec.maxSide / h : spec.maxSide / w) : 1;
      const nw = Math.max(roundHalfEven(Math.trunc(w * ratio) / 32) * 32, 32);
      const nh = Math.max(roundHalfEven(Math.trunc(h * ratio) / 32) * 32, 32);
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
export async function decodeRgb(data: Buffer, limits: DecodeLimits = DEFAULT_LIMITS): Promise<RgbImage & { format: string }> {
  const { format } = await probeImage(data, limits);
  try {
    const { data: px, info } = await sharpOf(data, limits).rotate().toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded ${info.channels} channels`);
    return { data: px, width: info.width, height: info.height, format };
  } catch (err) {
    throw decodeError(err);
  }
}

/** Decodes, orients, converts and resizes one image, and normalises it into a [3, H, W] float32 tensor. */
export async function prepareImage(data: Buffer, spec: InputSpec, limits: DecodeLimits = DEFAULT_LIMITS): Promise<Prepared> {
  if (spec.resample === 'libvips') return prepareWithLibvips(data, spec, limits);
  const pixels = await decodeRgb(data, limits);
  return { ...preparePixels(pixels, spec), format: pixels.format, pixels: { data: pixels.data, width: pixels.width, height: pixels.height } };
}

/**
 * The reference preprocessing of decoded pixels: reference sizing, the reference resize, padding
 * with `pad` (letterbox), normalisation. Pure: tests feed it exact pixel arrays.
 */
export function preparePixels(img: RgbImage, spec: InputSpec): Omit<Prepared, 'format' | 'pixels'> {
  const { width, height } = img;
  // A plain Uint8Array view of the pixels (sharp gives a Buffer): the kernels' element loads stay monomorphic.
  const data = img.data.constructor === Uint8Array ? img.data : new Uint8Array(img.data.buffer, img.data.byteOffset, img.data.length);
  const t = planResize(width, height, spec);
  const nw = Math.round(width * t.scaleX);
  const nh = Math.round(height * t.scaleY);
  const norm = normalizer(spec);
  const plane = t.inW * t.inH;
  const tensor = new Float32Array(3 * plane);
  const order = channelOrder(spec);
  if (t.inW !== nw || t.inH !== nh) {
    for (let c = 0; c < 3; c++) tensor.fill(norm(c, spec.pad), c * plane, (c + 1) * plane);
  }
  // Each resized row goes straight into the tensor's three planes (no resized image kept whole).
  const planes = [0, 1, 2].map((c) => c * plane + t.padY * t.inW + t.padX);
  if (spec.resample === 'opencv') {
    const luts = channelLuts(norm);
    const put = (y: number, row: Uint8Array): void => rowToPlanes(row, nw, tensor, planes, y * t.inW, luts, order);
    if (nw === width && nh === height) {
      const rowLen = width * 3;
      for (let y = 0; y < nh; y++) put(y, data.subarray(y * rowLen, (y + 1) * rowLen));
    } else resizeOpencvU8Rows(data, width, height, 3, nw, nh, undefined, put);
  } else {
    const fr = Math.fround;
    // norm(c, v) inlined when plain: (v - mean) / std in float32 (YOLACT's: no divisor or scale).
    const plain = spec.divisor === undefined && spec.scale === 1;
    const [mean, std] = [spec.mean.map(fr), spec.std.map(fr)];
    resizeBilinearRows(data, width, height, 3, nw, nh, undefined, (y, row) => {
      for (let c = 0; c < 3; c++) {
        const at = planes[c]! + y * t.inW;
        const m = mean[c]!;
        const sd = std[c]!;
        for (let x = 0, i = order[c]!; x < nw; x++, i += 3) tensor[at + x] = plain ? fr(fr(row[i]! - m) / sd) : norm(c, row[i]!);
      }
    });
  }
  return { tensor, width, height, transform: t };
}

/**
 * Per-channel normalisation in float32, step by step as the references compute it:
 * ((v / divisor) * scale - mean[c]) / std[c], steps with identity values skipped (they are exact).
 */
export function normalizer(spec: Pick<InputSpec, 'divisor' | 'scale' | 'mean' | 'std'>): (c: number, v: number) => number {
  const f = Math.fround;
  const divisor = spec.divisor === undefined ? undefined : f(spec.divisor);
  const scale = f(spec.scale);
  const mean = spec.mean.map(f);
  const std = spec.std.map(f);
  return (c, v) => {
    let x = f(v);
    if (divisor !== undefined) x = f(x / divisor);
    if (scale !== 1) x = f(x * scale);
    return f(f(x - mean[c]!) / std[c]!);
  };
}

/** The pixel channel each tensor channel takes (RGB pixels; BGR models take them reversed). */
function channelOrder(spec: Pick<InputSpec, 'channelOrder'>): number[] {
  return spec.channelOrder === 'BGR' ? [2, 1, 0] : [0, 1, 2];
}

/**
 * One row of 8-bit RGB pixels into the three planes of a CHW tensor through per-channel tables:
 * tensor channel c takes pixel channel order[c]; `planes[c] + rowAt` is where the row starts.
 */
function rowToPlanes(row: Uint8Array, n: number, tensor: Float32Array, planes: number[], rowAt: number, luts: Float32Array[], order: number[]): void {
  const [l0, l1, l2] = [luts[0]!, luts[1]!, luts[2]!];
  const [s0, s1, s2] = [order[0]!, order[1]!, order[2]!];
  const [a0, a1, a2] = [planes[0]! + rowAt, planes[1]! + rowAt, planes[2]! + rowAt];
  for (let x = 0, j = 0; x < n; x++, j += 3) {
    tensor[a0 + x] = l0[row[j + s0]!]!;
    tensor[a1 + x] = l1[row[j + s1]!]!;
    tensor[a2 + x] = l2[row[j + s2]!]!;
  }
}

/** For 8-bit values: each channel's 256 normalised values, computed once. */
function channelLuts(norm: (c: number, v: number) => number): Float32Array[] {
  return [0, 1, 2].map((c) => Float32Array.from({ length: 256 }, (_, v) => norm(c, v)));
}

/** The first landing's path: sharp resizes (antialiased when shrinking) and rounds to 8 bits. */
async function prepareWithLibvips(data: Buffer, spec: InputSpec, limits: DecodeLimits): Promise<Prepared> {
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

/** HWC uint8 RGB -> CHW float32, normalised per channel (normalizer), optional BGR order. */
export function normalizeHwc(raw: Uint8Array, w: number, h: number, spec: Pick<InputSpec, 'divisor' | 'scale' | 'mean' | 'std' | 'channelOrder'>): Float32Array {
  const plane = w * h;
  const out = new Float32Array(3 * plane);
  // The whole image as one row of w x h pixels.
  rowToPlanes(raw, plane, out, [0, plane, 2 * plane], 0, channelLuts(normalizer(spec)), channelOrder(spec));
  return out;
}
