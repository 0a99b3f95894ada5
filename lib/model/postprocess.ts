/**
 * Shared postprocessing: result types, IoU and NMS, and instance masks from prototype masks.
 */
import { resizeBilinear, torchAxis, touchedRange } from './resample';
import { boxMaskToCounts, countsToString, type Rle } from './rle';
import type { ModelSpec } from './spec';

export interface Detection {
  /** COCO bbox in original-image pixels: [x, y, width, height]. */
  bbox: [number, number, number, number];
  score: number;
  category_id: number;
  label: string;
  segmentation?: Rle;
  /** Mask area in pixels (when there is a mask). */
  area?: number;
  /** Text detection: the quadrilateral's corners, clockwise from the top-left (PaddleOCR's box). */
  polygon?: [number, number][];
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
  ph: number;
  pw: number;
  nk: number;
  /** HWC: [ph, pw, nk] (YOLACT); CHW: [nk, ph, pw] (YOLO). */
  layout: 'HWC' | 'CHW';
}

/** Prototype cells x0..x1, y0..y1 (inclusive). */
export interface Cells {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/**
 * The cells a crop keeps: those at index c with lo <= c < hi (as yolact's crop and ultralytics'
 * crop_mask compare the integer index with the box edges), within the map.
 */
export function cropCells(x1: number, x2: number, y1: number, y2: number, pw: number, ph: number): Cells | undefined {
  const c: Cells = { x0: Math.max(0, Math.ceil(x1)), x1: Math.min(pw - 1, Math.ceil(x2) - 1), y0: Math.max(0, Math.ceil(y1)), y1: Math.min(ph - 1, Math.ceil(y2) - 1) };
  return c.x1 < c.x0 || c.y1 < c.y0 ? undefined : c;
}

/**
 * One instance's prototype-resolution map: activation(protos . coeffs) on the kept cells, zero on
 * the others (the crop multiplies them by 0).
 */
export function protoMap(src: ProtoSource, coeffs: ArrayLike<number>, coeffOffset: number, cells: Cells, activation: (v: number) => number): Float32Array {
  const { data, ph, pw, nk, layout } = src;
  const out = new Float32Array(ph * pw);
  const plane = ph * pw;
  for (let y = cells.y0; y <= cells.y1; y++) {
    for (let x = cells.x0; x <= cells.x1; x++) {
      let acc = 0;
      if (layout === 'HWC') {
        const base = (y * pw + x) * nk;
        for (let k = 0; k < nk; k++) acc += data[base + k]! * coeffs[coeffOffset + k]!;
      } else {
        const base = y * pw + x;
        for (let k = 0; k < nk; k++) acc += data[base + k * plane]! * coeffs[coeffOffset + k]!;
      }
      out[y * pw + x] = activation(acc);
    }
  }
  return out;
}

/** A binary mask that is zero outside the window: w x h values at (x0, y0) of a larger image. */
export interface MaskWindow {
  x0: number;
  y0: number;
  w: number;
  h: number;
  data: Uint8Array;
}

/**
 * F.interpolate(map, (outH, outW), mode='bilinear', align_corners=False) > threshold, for a map that
 * is zero outside `cells`: only the outputs those cells reach are computed.
 */
export function upsampleAbove(map: Float32Array, mw: number, mh: number, cells: Cells, outW: number, outH: number, threshold: number): MaskWindow | undefined {
  const ax = torchAxis(mw, outW);
  const ay = torchAxis(mh, outH);
  const xr = touchedRange(ax.i0, ax.i1, cells.x0, cells.x1);
  const yr = touchedRange(ay.i0, ay.i1, cells.y0, cells.y1);
  if (!xr || !yr) return undefined;
  const win = { x0: xr[0], y0: yr[0], w: xr[1] - xr[0] + 1, h: yr[1] - yr[0] + 1 };
  const v = resizeBilinear(map, mw, mh, 1, outW, outH, win);
  const data = new Uint8Array(v.length);
  for (let i = 0; i < v.length; i++) data[i] = v[i]! > threshold ? 1 : 0;
  return { ...win, data };
}

/** A window's mask as COCO RLE over the whole W x H image; an empty mask is an all-zero RLE. */
export function windowRle(win: MaskWindow | undefined, W: number, H: number): { rle: Rle; area: number } {
  const area = win ? win.data.reduce((a, b) => a + b, 0) : 0;
  const counts = win && area > 0 ? boxMaskToCounts(H, W, win.x0, win.y0, win.w, win.h, win.data) : [W * H];
  return { rle: { size: [H, W], counts: countsToString(counts) }, area };
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

/** The dataset category id of label `index` (model.json categoryIds), else the adapter's own numbering. */
export function categoryOf(spec: Pick<ModelSpec, 'categoryIds'>, index: number, fallback: number): number {
  return spec.categoryIds?.[index] ?? fallback;
}
