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
  /** Enough of its points for the convex hull: the outermost point on each side of each row. */
  points: Pt[];
}

/** Leftmost and rightmost member of each row of a pixel set (all the convex hull needs). */
function rowExtremes(pixels: readonly number[], w: number): Pt[] {
  const lo = new Map<number, number>();
  const hi = new Map<number, number>();
  for (const p of pixels) {
    const y = Math.floor(p / w);
    const x = p - y * w;
    if (!(lo.get(y)! <= x)) lo.set(y, x);
    if (!(hi.get(y)! >= x)) hi.set(y, x);
  }
  const out: Pt[] = [];
  for (const [y, x] of lo) out.push([x, y], [hi.get(y)!, y]);
  return out;
}

/** Pixels connected to `seed` whose `member` flag is set (8- or 4-connected), labelled `id`. */
function flood(member: (p: number) => boolean, label: Int32Array, id: number, seed: number, w: number, h: number, eight: boolean): number[] {
  const out: number[] = [];
  const stack = [seed];
  label[seed] = id;
  while (stack.length > 0) {
    const p = stack.pop()!;
    out.push(p);
    const x = p % w;
    const y = (p - x) / w;
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        if ((dx === 0 && dy === 0) || (!eight && dx !== 0 && dy !== 0)) continue;
        const xx = x + dx;
        const yy = y + dy;
        if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
        const q = yy * w + xx;
        if (label[q] === 0 && member(q)) {
          label[q] = id;
          stack.push(q);
        }
      }
    }
  }
  return out;
}

/**
 * The contours cv2.findContours(bitmap, RETR_LIST, ...) returns, as point sets for their hulls, in
 * its order (last found first). Outside the image counts as background, as OpenCV pads it.
 */
export function findContours(bitmap: Uint8Array, w: number, h: number): Contour[] {
  const fg = new Int32Array(w * h);
  const bg = new Int32Array(w * h);
  const contours: Contour[] = [];
  let regions = 0;
  for (let p = 0; p < w * h; p++) {
    if (bitmap[p] && fg[p] === 0) {
      const pixels = flood((q) => bitmap[q] === 1, fg, ++regions, p, w, h, true);
      contours.push({ start: p, hole: false, points: rowExtremes(pixels, w) });
    }
  }
  // Background regions (4-connected) touching the image edge are the outside; the others are holes.
  let zones = 0;
  for (let p = 0; p < w * h; p++) {
    if (bitmap[p] || bg[p] !== 0) continue;
    const pixels = flood((q) => bitmap[q] === 0, bg, ++zones, p, w, h, false);
    const touchesEdge = pixels.some((q) => {
      const x = q % w;
      const y = (q - x) / w;
      return x === 0 || y === 0 || x === w - 1 || y === h - 1;
    });
    if (touchesEdge) continue;
    // The hole's border is followed from the pixel left of its first pixel, on the region around it:
    // the foreground pixels of that region next to (4-connected) the hole.
    const owner = fg[p - 1]!;
    const border = new Set<number>();
    for (const q of pixels) {
      const x = q % w;
      for (const n of [q - w, q + w, x > 0 ? q - 1 : -1, x < w - 1 ? q + 1 : -1]) if (n >= 0 && n < w * h && fg[n] === owner) border.add(n);
    }
    contours.push({ start: p - 1, hole: true, points: rowExtremes([...border], w) });
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
