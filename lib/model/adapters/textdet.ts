/**
 * Text detection for DBNet models (PaddleOCR PP-OCR det), reproducing PaddleOCR's DBPostProcess
 * (box_type 'quad', score_mode 'fast') and TextDetector's filter:
 *  1. bitmap = probability > thresh; the contours cv2.findContours(RETR_LIST) finds (outer borders
 *     of 8-connected regions and borders of their holes), in its order, at most maxCandidates;
 *  2. per contour the minimum-area rectangle (get_mini_boxes); shorter side < minSize: dropped;
 *  3. score = mean probability inside that rectangle as cv2.fillPoly draws it (box_score_fast);
 *     below boxThreshold: dropped;
 *  4. unclip by area * ratio / perimeter with Clipper (round joins), its minimum-area rectangle;
 *     shorter side < minSize + 2: dropped;
 *  5. corners to the image: round(x / mapWidth * imageWidth) (half to even), clipped;
 *  6. TextDetector: corners ordered clockwise from the top-left, clipped to the last pixel, boxes
 *     whose sides measure 3 px or less dropped.
 * Each detection carries the quadrilateral as `polygon`, its axis-aligned hull as `bbox`, and the
 * filled quadrilateral as its mask.
 */
import { fillPolygon, miniBox, unclip, type Pt } from '../geometry';
import { boxMaskToCounts, countsToString } from '../rle';
import { roundHalfEven } from '../resample';
import { categoryOf, imageSlice, round6, type Detection } from '../postprocess';
import type { Adapter } from './types';

interface Contour {
  /** Where cv2.findContours' raster scan starts following it. */
  start: number;
  hole: boolean;
  /** Its points as cv2.findContours(..., CHAIN_APPROX_SIMPLE) gives them, in its order (the hull's start depends on it). */
  points: Pt[];
}

/** Neighbour steps of OpenCV's border following, counter-clockwise from the right (y grows downwards). */
const CODE_DX = [1, 1, 0, -1, -1, -1, 0, 1];
const CODE_DY = [0, -1, -1, -1, 0, 1, 1, 1];
/** A visited border pixel: OpenCV's nbd (2), and nbd | -128 on a border's right side. */
const NBD = 2;
const NBD_RIGHT = NBD | -128;

/**
 * Follows one border from pixel i0 (Suzuki and Abe's border following, as OpenCV's icvFetchContour
 * does it on its padded image, marking what it visits) and keeps the points where the direction
 * changes (CHAIN_APPROX_SIMPLE), starting at `pt`.
 */
function followBorder(img: Int8Array, deltas: readonly number[], i0: number, hole: boolean, pt: Pt): Pt[] {
  const out: Pt[] = [];
  let s = hole ? 0 : 4;
  let sEnd = s;
  let i1: number;
  do {
    s = (s - 1) & 7;
    i1 = i0 + deltas[s]!;
  } while (img[i1] === 0 && s !== sEnd);
  if (s === sEnd) {
    // A single pixel.
    img[i0] = NBD_RIGHT;
    out.push(pt);
    return out;
  }
  let [x, y] = pt;
  let i3 = i0;
  let prevS = s ^ 4;
  for (;;) {
    sEnd = s;
    let i4 = i3;
    while (s < 15) {
      i4 = i3 + deltas[++s]!;
      if (img[i4] !== 0) break;
    }
    s &= 7;
    if (s >= 1 && s - 1 < sEnd) img[i3] = NBD_RIGHT;
    else if (img[i3] === 1) img[i3] = NBD;
    if (s !== prevS) {
      out.push([x, y]);
      prevS = s;
    }
    x += CODE_DX[s]!;
    y += CODE_DY[s]!;
    if (i4 === i0 && i3 === i1) break;
    i3 = i4;
    s = (s + 4) & 7;
  }
  return out;
}

/**
 * The contours cv2.findContours(bitmap, RETR_LIST, CHAIN_APPROX_SIMPLE) returns, in its order
 * (last found first), each with its points in OpenCV's order: the raster scan of the image padded
 * with background starts following an outer border at a foreground pixel after background, and a
 * hole's border at a background pixel after an unvisited foreground one, as OpenCV does. The points'
 * order matters: cv2.minAreaRect's float32 corners (which PaddleOCR truncates to pixels) depend on
 * where the convex hull of the points starts.
 */
export function findContours(bitmap: Uint8Array, w: number, h: number): Contour[] {
  const W = w + 2;
  const img = new Int8Array(W * (h + 2));
  for (let y = 0; y < h; y++) {
    const row = y * w;
    const at = (y + 1) * W + 1;
    for (let x = 0; x < w; x++) if (bitmap[row + x]) img[at + x] = 1;
  }
  const base = [1, -W + 1, -W, -W - 1, -1, W - 1, W, W + 1];
  const deltas = [...base, ...base];
  const contours: Contour[] = [];
  for (let y = 1; y <= h; y++) {
    let prev = 0;
    const row = y * W;
    for (let x = 1; x <= w; x++) {
      let p = img[row + x]!;
      if (p === prev) continue;
      if (!(prev === 0 && p === 1)) {
        // Not an outer border: a hole's, where background follows a foreground pixel not yet on a right border.
        if (p !== 0 || prev < 1) {
          prev = p;
          continue;
        }
        const ox = x - 1;
        contours.push({ start: (y - 1) * w + (ox - 1), hole: true, points: followBorder(img, deltas, row + ox, true, [ox - 1, y - 1]) });
      } else {
        contours.push({ start: (y - 1) * w + (x - 1), hole: false, points: followBorder(img, deltas, row + x, false, [x - 1, y - 1]) });
      }
      p = img[row + x]!;
      prev = p;
    }
  }
  // Found in raster order (an outer border before a hole border starting on the same pixel); returned last first.
  contours.sort((a, b) => a.start - b.start || Number(a.hole) - Number(b.hole));
  return contours.reverse();
}

/** box_score_fast: mean probability over the rectangle's integer-truncated outline, filled as cv2.fillPoly does. */
export function boxScoreFast(pred: Float32Array, w: number, h: number, box: readonly Pt[]): number {
  const xs = box.map((p) => p[0]);
  const ys = box.map((p) => p[1]);
  const clip = (v: number, hi: number): number => Math.min(Math.max(v, 0), hi);
  const xmin = clip(Math.floor(Math.min(...xs)), w - 1);
  const xmax = clip(Math.ceil(Math.max(...xs)), w - 1);
  const ymin = clip(Math.floor(Math.min(...ys)), h - 1);
  const ymax = clip(Math.ceil(Math.max(...ys)), h - 1);
  const mw = xmax - xmin + 1;
  const mh = ymax - ymin + 1;
  const mask = new Uint8Array(mw * mh);
  fillPolygon(mask, mw, mh, box.map(([x, y]) => [Math.trunc(x - xmin), Math.trunc(y - ymin)]));
  let sum = 0;
  let n = 0;
  for (let y = 0; y < mh; y++) {
    for (let x = 0; x < mw; x++) {
      if (!mask[y * mw + x]) continue;
      sum += pred[(ymin + y) * w + xmin + x]!;
      n++;
    }
  }
  return n === 0 ? 0 : sum / n;
}

/** TextDetector.order_points_clockwise: two leftmost by y (top-left, bottom-left), two rightmost likewise. */
function orderClockwise(pts: readonly Pt[]): Pt[] {
  const byX = [...pts].sort((a, b) => a[0] - b[0]);
  const [tl, bl] = byX.slice(0, 2).sort((a, b) => a[1] - b[1]) as [Pt, Pt];
  const [tr, br] = byX.slice(2).sort((a, b) => a[1] - b[1]) as [Pt, Pt];
  return [tl, tr, br, bl];
}

export const textDetectionAdapter: Adapter = (outputs, b, meta, spec, params) => {
  const post = spec.postprocess;
  const thresh = post.binThreshold ?? 0.3;
  const boxThresh = params.scoreThreshold ?? post.boxThreshold ?? 0.6;
  const ratio = post.unclipRatio ?? 1.5;
  const minSize = post.minSize ?? 3;
  const maxCandidates = post.maxCandidates ?? 1000;
  const map = imageSlice(outputs['probability']!, b, 3, 'probability map');
  const [, mh, mw] = map.dims as [number, number, number];
  const pred = map.data;
  const W = meta.width;
  const H = meta.height;
  const { scaleX, scaleY, padX, padY } = meta.transform;
  // PaddleOCR maps map pixels to the image by x / mapWidth * imageWidth; with padding (a letterboxed
  // input) the padding is taken off first.
  const toImage = (x: number, y: number): Pt =>
    padX === 0 && padY === 0 ? [(Math.fround(x) / mw) * W, (Math.fround(y) / mh) * H] : [(x - padX) / scaleX, (y - padY) / scaleY];

  const bitmap = new Uint8Array(mw * mh);
  for (let i = 0; i < bitmap.length; i++) bitmap[i] = pred[i]! > thresh ? 1 : 0;
  const found: { quad: Pt[]; score: number }[] = [];
  for (const contour of findContours(bitmap, mw, mh).slice(0, maxCandidates)) {
    const mini = miniBox(contour.points);
    if (mini.side < minSize) continue;
    const score = boxScoreFast(pred, mw, mh, mini.box);
    if (boxThresh > score) continue;
    const grown = miniBox(unclip(mini.box, ratio));
    if (grown.side < minSize + 2) continue;
    const mapped = grown.box.map(([x, y]): Pt => {
      const [ix, iy] = toImage(x, y);
      return [Math.min(Math.max(roundHalfEven(ix), 0), W), Math.min(Math.max(roundHalfEven(iy), 0), H)];
    });
    const quad = orderClockwise(mapped).map(([x, y]): Pt => [Math.trunc(Math.min(Math.max(x, 0), W - 1)), Math.trunc(Math.min(Math.max(y, 0), H - 1))]);
    const side = (p: Pt, q: Pt): number => Math.trunc(Math.hypot(p[0] - q[0], p[1] - q[1]));
    if (side(quad[0]!, quad[1]!) <= 3 || side(quad[0]!, quad[3]!) <= 3) continue;
    found.push({ quad, score });
  }
  const kept = params.topK !== undefined && found.length > params.topK ? [...found].sort((a, c) => c.score - a.score).slice(0, params.topK) : found;

  const detections: Detection[] = kept.map(({ quad, score }) => {
    const xs = quad.map((p) => p[0]);
    const ys = quad.map((p) => p[1]);
    const x0 = Math.min(...xs), y0 = Math.min(...ys), x1 = Math.max(...xs), y1 = Math.max(...ys);
    const det: Detection = {
      bbox: [x0, y0, x1 - x0, y1 - y0],
      polygon: quad,
      score: round6(score),
      category_id: categoryOf(spec, 0, 1),
      label: spec.labels[0] ?? 'text',
    };
    if (params.masks !== false) {
      // The quadrilateral filled as cv2.fillPoly would, inside its hull (which lies inside the image).
      const bw = x1 - x0 + 1;
      const bh = y1 - y0 + 1;
      const box = new Uint8Array(bw * bh);
      fillPolygon(box, bw, bh, quad.map(([x, y]) => [x - x0, y - y0]));
      det.segmentation = { size: [H, W], counts: countsToString(boxMaskToCounts(H, W, x0, y0, bw, bh, box)) };
      det.area = box.reduce((a, v) => a + v, 0);
    }
    return det;
  });
  return { detections };
};
