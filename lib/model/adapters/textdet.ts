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

/** A horizontal run of equal pixels in row y, columns x0..x1. */
interface Run {
  y: number;
  x0: number;
  x1: number;
}

/** Union-find over run indices. */
function unionFind(n: number): { find: (i: number) => number; union: (a: number, b: number) => void } {
  const parent = Int32Array.from({ length: n }, (_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) {
      parent[i] = parent[parent[i]!]!;
      i = parent[i]!;
    }
    return i;
  };
  return { find, union: (a, b) => void (parent[find(a)] = find(b)) };
}

/**
 * Runs of foreground (value 1) or background (0) per row, and their connected sets: runs in
 * adjacent rows join when their columns overlap, or for 8-connectivity touch diagonally too.
 */
function components(bitmap: Uint8Array, w: number, h: number, value: 0 | 1, eight: boolean): { runs: Run[]; rowStart: Int32Array; set: Int32Array } {
  const runs: Run[] = [];
  const rowStart = new Int32Array(h + 1);
  for (let y = 0; y < h; y++) {
    rowStart[y] = runs.length;
    const row = y * w;
    for (let x = 0; x < w; ) {
      if ((bitmap[row + x] ? 1 : 0) !== value) {
        x++;
        continue;
      }
      const x0 = x;
      while (x < w && (bitmap[row + x] ? 1 : 0) === value) x++;
      runs.push({ y, x0, x1: x - 1 });
    }
  }
  rowStart[h] = runs.length;
  const uf = unionFind(runs.length);
  const reach = eight ? 1 : 0;
  for (let y = 1; y < h; y++) {
    let j = rowStart[y - 1]!;
    for (let i = rowStart[y]!; i < rowStart[y + 1]!; i++) {
      const a = runs[i]!;
      while (j < rowStart[y]! && runs[j]!.x1 + reach < a.x0) j++;
      for (let k = j; k < rowStart[y]! && runs[k]!.x0 <= a.x1 + reach; k++) uf.union(i, k);
    }
  }
  return { runs, rowStart, set: Int32Array.from(runs, (_, i) => uf.find(i)) };
}

/**
 * The contours cv2.findContours(bitmap, RETR_LIST, ...) returns, as point sets for their hulls, in
 * its order (last found first): the outer border of each 8-connected foreground region, and the
 * border of each hole (a 4-connected background region not reaching the image edge: OpenCV pads
 * the image with background) on the region around it. Computed on row runs, not pixels: a text
 * map is mostly long empty rows.
 */
export function findContours(bitmap: Uint8Array, w: number, h: number): Contour[] {
  const fg = components(bitmap, w, h, 1, true);
  const contours: Contour[] = [];
  // Foreground: each set's first run (raster order) is where OpenCV starts following it; the run
  // ends are the leftmost and rightmost points of every row, all the convex hull needs.
  const outer = new Map<number, Contour>();
  fg.runs.forEach((r, i) => {
    let c = outer.get(fg.set[i]!);
    if (!c) {
      c = { start: r.y * w + r.x0, hole: false, points: [] };
      outer.set(fg.set[i]!, c);
      contours.push(c);
    }
    c.points.push([r.x0, r.y], [r.x1, r.y]);
  });
  // Background: sets with a run on the image edge are the outside; the others are holes.
  const bg = components(bitmap, w, h, 0, false);
  const outside = new Set<number>();
  bg.runs.forEach((r, i) => {
    if (r.y === 0 || r.y === h - 1 || r.x0 === 0 || r.x1 === w - 1) outside.add(bg.set[i]!);
  });
  const fgRunAt = (y: number, x: number): number => {
    for (let i = fg.rowStart[y]!; i < fg.rowStart[y + 1]!; i++) if (fg.runs[i]!.x0 <= x && x <= fg.runs[i]!.x1) return i;
    return -1;
  };
  const holes = new Map<number, { owner: number; contour: Contour }>();
  bg.runs.forEach((r, i) => {
    const set = bg.set[i]!;
    if (outside.has(set)) return;
    let hole = holes.get(set);
    if (!hole) {
      // Followed from the pixel left of the hole's first pixel, on that pixel's region.
      hole = { owner: fg.set[fgRunAt(r.y, r.x0 - 1)]!, contour: { start: r.y * w + r.x0 - 1, hole: true, points: [] } };
      holes.set(set, hole);
      contours.push(hole.contour);
    }
    // The owner's pixels 4-adjacent to this run: left and right of it, and above and below it.
    const pts = hole.contour.points;
    for (const x of [r.x0 - 1, r.x1 + 1]) {
      const k = fgRunAt(r.y, x);
      if (k >= 0 && fg.set[k] === hole.owner) pts.push([x, r.y]);
    }
    for (const y of [r.y - 1, r.y + 1]) {
      for (let k = fg.rowStart[y]!; k < fg.rowStart[y + 1]!; k++) {
        const f = fg.runs[k]!;
        if (fg.set[k] !== hole.owner || f.x1 < r.x0 || f.x0 > r.x1) continue;
        pts.push([Math.max(f.x0, r.x0), y], [Math.min(f.x1, r.x1), y]);
      }
    }
  });
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
