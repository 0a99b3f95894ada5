/**
 * Shared postprocessing: result types, IoU and NMS, and instance masks from prototype masks.
 */
import { boxMaskToCounts, countsToString, type Rle } from './rle';

export interface Detection {
  /** COCO bbox in original-image pixels: [x, y, width, height]. */
  bbox: [number, number, number, number];
  score: number;
  category_id: number;
  label: string;
  segmentation?: Rle;
  /** Mask area in pixels (when there is a mask). */
  area?: number;
}

export interface Classification {
  category_id: number;
  label: string;
  score: number;
}

export interface ImageInference {
  detections: Detection[];
  classes?: Classification[];
}

export interface TensorView {
  data: Float32Array;
  dims: readonly number[];
}

/** Corner boxes [x1, y1, x2, y2]. */
export function iou(a: ArrayLike<number>, ai: number, b: ArrayLike<number>, bi: number): number {
  const ax1 = a[ai]!, ay1 = a[ai + 1]!, ax2 = a[ai + 2]!, ay2 = a[ai + 3]!;
  const bx1 = b[bi]!, by1 = b[bi + 1]!, bx2 = b[bi + 2]!, by2 = b[bi + 3]!;
  const iw = Math.min(ax2, bx2) - Math.max(ax1, bx1);
  const ih = Math.min(ay2, by2) - Math.max(ay1, by1);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  const union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter;
  return union <= 0 ? 0 : inter / union;
}

/** Indices sorted by descending score (stable: ties keep index order). */
export function argsortDesc(scores: ArrayLike<number>, indices: readonly number[]): number[] {
  return [...indices].sort((i, j) => scores[j]! - scores[i]! || i - j);
}

/** Greedy NMS over candidate indices (boxes as corners, 4 per index). Returns kept indices, best first. */
export function greedyNms(boxes: ArrayLike<number>, scores: ArrayLike<number>, candidates: readonly number[], iouThreshold: number, maxKeep: number): number[] {
  const order = argsortDesc(scores, candidates);
  const kept: number[] = [];
  for (const i of order) {
    if (kept.length >= maxKeep) break;
    let ok = true;
    for (const k of kept) {
      if (iou(boxes, 4 * i, boxes, 4 * k) > iouThreshold) {
        ok = false;
        break;
      }
    }
    if (ok) kept.push(i);
  }
  return kept;
}

/**
 * YOLACT's fast NMS for one class: candidates sorted by score (top `topK`), a candidate is dropped
 * when any higher-scoring candidate (kept or not) overlaps it by more than the threshold.
 */
export function fastNms(boxes: ArrayLike<number>, scores: ArrayLike<number>, candidates: readonly number[], iouThreshold: number, topK: number): number[] {
  const order = argsortDesc(scores, candidates).slice(0, topK);
  const kept: number[] = [];
  for (let j = 0; j < order.length; j++) {
    let maxIou = 0;
    for (let i = 0; i < j && maxIou <= iouThreshold; i++) maxIou = Math.max(maxIou, iou(boxes, 4 * order[i]!, boxes, 4 * order[j]!));
    if (maxIou <= iouThreshold) kept.push(order[j]!);
  }
  return kept;
}

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

export interface ProtoSource {
  data: Float32Array;
  /** Offset of this image's prototypes within data. */
  offset: number;
  ph: number;
  pw: number;
  nk: number;
  /** HWC: [ph, pw, nk] (YOLACT); CHW: [nk, ph, pw] (YOLO). */
  layout: 'HWC' | 'CHW';
}

/**
 * Proto-space coordinate u of an image pixel x (pixel centres): u = (x + 0.5) * sx + ox.
 * YOLACT (stretch over the whole image): sx = pw / imgW, ox = 0. Letterboxed: sx = scale * pw / inW, ox = pad * pw / inW.
 */
export interface ProtoMapping {
  sx: number;
  ox: number;
  sy: number;
  oy: number;
}

export interface InstanceMask {
  rle: Rle;
  area: number;
}

/**
 * Instance mask in original-image pixels: sigmoid(protos . coeffs) at prototype resolution, cropped
 * to the cells [x1, x2) x [y1, y2) (prototype coordinates), bilinearly upsampled (align_corners=false,
 * as F.interpolate) to the image and thresholded at 0.5. Only the region the crop can reach is computed.
 */
export function instanceMask(src: ProtoSource, coeffs: ArrayLike<number>, coeffOffset: number, crop: { x1: number; y1: number; x2: number; y2: number }, map: ProtoMapping, imgW: number, imgH: number): InstanceMask | undefined {
  const { data, offset, ph, pw, nk, layout } = src;
  const cx0 = Math.max(0, Math.ceil(crop.x1));
  const cy0 = Math.max(0, Math.ceil(crop.y1));
  const cx1 = Math.min(pw - 1, Math.ceil(crop.x2) - 1);
  const cy1 = Math.min(ph - 1, Math.ceil(crop.y2) - 1);
  if (cx1 < cx0 || cy1 < cy0) return undefined;
  const low = new Float32Array(ph * pw);
  const plane = ph * pw;
  for (let y = cy0; y <= cy1; y++) {
    for (let x = cx0; x <= cx1; x++) {
      let acc = 0;
      if (layout === 'HWC') {
        const base = offset + (y * pw + x) * nk;
        for (let k = 0; k < nk; k++) acc += data[base + k]! * coeffs[coeffOffset + k]!;
      } else {
        const base = offset + y * pw + x;
        for (let k = 0; k < nk; k++) acc += data[base + k * plane]! * coeffs[coeffOffset + k]!;
      }
      low[y * pw + x] = sigmoid(acc);
    }
  }
  // Image pixels whose sample position s = u - 0.5 lies in (c0 - 1, c1 + 1) can see a non-zero cell.
  const ix0 = Math.max(0, Math.floor((cx0 - 1 + 0.5 - map.ox) / map.sx - 0.5));
  const ix1 = Math.min(imgW - 1, Math.ceil((cx1 + 1 + 0.5 - map.ox) / map.sx - 0.5));
  const iy0 = Math.max(0, Math.floor((cy0 - 1 + 0.5 - map.oy) / map.sy - 0.5));
  const iy1 = Math.min(imgH - 1, Math.ceil((cy1 + 1 + 0.5 - map.oy) / map.sy - 0.5));
  if (ix1 < ix0 || iy1 < iy0) return undefined;
  const bw = ix1 - ix0 + 1;
  const bh = iy1 - iy0 + 1;
  // Separable bilinear weights: columns once, rows as they come.
  const colI = new Int32Array(bw);
  const colF = new Float32Array(bw);
  for (let i = 0; i < bw; i++) [colI[i], colF[i]] = sampleAt((ix0 + i + 0.5) * map.sx + map.ox, pw);
  const box = new Uint8Array(bw * bh);
  let area = 0;
  for (let j = 0; j < bh; j++) {
    const [r0, g] = sampleAt((iy0 + j + 0.5) * map.sy + map.oy, ph);
    const r1 = Math.min(r0 + 1, ph - 1);
    const row0 = r0 * pw;
    const row1 = r1 * pw;
    for (let i = 0; i < bw; i++) {
      const c0 = colI[i]!;
      const c1 = Math.min(c0 + 1, pw - 1);
      const f = colF[i]!;
      const top = low[row0 + c0]! * (1 - f) + low[row0 + c1]! * f;
      const bot = low[row1 + c0]! * (1 - f) + low[row1 + c1]! * f;
      if (top * (1 - g) + bot * g > 0.5) {
        box[j * bw + i] = 1;
        area++;
      }
    }
  }
  if (area === 0) return undefined;
  const counts = boxMaskToCounts(imgH, imgW, ix0, iy0, bw, bh, box);
  return { rle: { size: [imgH, imgW], counts: countsToString(counts) }, area };
}

/**
 * Bilinear sampling index and weight along one axis for continuous coordinate u (pixel centres at
 * k + 0.5), clamped at the edges as F.interpolate(align_corners=False) does: [index, fraction].
 */
function sampleAt(u: number, size: number): [number, number] {
  const s = Math.max(0, u - 0.5);
  const i0 = Math.floor(s);
  return i0 >= size - 1 ? [size - 1, 0] : [i0, s - i0];
}

/** Clips corner box to the image and returns a COCO [x, y, w, h] bbox. */
export function toCocoBox(x1: number, y1: number, x2: number, y2: number, w: number, h: number): [number, number, number, number] {
  const cx1 = Math.min(Math.max(x1, 0), w);
  const cy1 = Math.min(Math.max(y1, 0), h);
  const cx2 = Math.min(Math.max(x2, 0), w);
  const cy2 = Math.min(Math.max(y2, 0), h);
  return [round3(cx1), round3(cy1), round3(cx2 - cx1), round3(cy2 - cy1)];
}

/** Coordinates are rounded to 1/1000 px: exact enough, and results stay small. */
export function round3(v: number): number {
  return Math.round(v * 1000) / 1000;
}

/** Times are kept to 0.1 ms. */
export function round1(v: number): number {
  return Math.round(v * 10) / 10;
}

/** Scores keep six decimals (COCO evaluation ranks by score). */
export function round6(v: number): number {
  return Math.round(v * 1e6) / 1e6;
}

/** One image's view of a possibly batched output: strips a leading batch dimension when present. */
export function imageSlice(t: TensorView, b: number, rank: number, what: string): TensorView {
  if (t.dims.length === rank + 1) {
    const per = t.dims.slice(1).reduce((a, d) => a * d, 1);
    if (b >= t.dims[0]!) throw new RangeError(`${what}: batch index ${b} out of ${t.dims[0]}`);
    return { data: t.data.subarray(b * per, (b + 1) * per), dims: t.dims.slice(1) };
  }
  if (t.dims.length === rank && b === 0) return t;
  throw new RangeError(`${what}: expected ${rank} dims (plus batch), got [${t.dims.join(', ')}]`);
}

export function labelOf(labels: readonly string[], index: number): string {
  return labels[index] ?? `class_${index}`;
}
