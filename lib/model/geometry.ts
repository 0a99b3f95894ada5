/**
 * Plane geometry for text detection, following what PaddleOCR's DBPostProcess gets from its
 * libraries: the minimum-area rectangle (cv2.minAreaRect / boxPoints, in lib/model/rotatedRect.ts), the corner order
 * of get_mini_boxes, polygon rasterisation as cv2.fillPoly draws it (fixed-point scanlines plus the
 * 8-connected outline), and the "unclip" offset with Clipper 6.4.2 (the library pyclipper wraps).
 */
import * as ClipperLib from 'clipper-lib';
import { boxPointsCv, minAreaRectCv } from './rotatedRect';

export type Pt = [number, number];

export interface RotatedBox {
  /** The four corners in cv2.boxPoints' order (float32 values). */
  corners: Pt[];
  /** Side lengths, as cv2.minAreaRect reports them. */
  width: number;
  height: number;
}

/**
 * cv2.minAreaRect + cv2.boxPoints, in OpenCV's arithmetic (lib/model/rotatedRect.ts): the corners are
 * the float32 values OpenCV gives (290.99997 where the exact corner is 291), which PaddleOCR then
 * truncates to pixels.
 */
export function minAreaRect(points: readonly Pt[]): RotatedBox {
  if (points.length === 0) return { corners: [], width: 0, height: 0 };
  const r = minAreaRectCv(points);
  return { corners: boxPointsCv(r), width: r.size[0], height: r.size[1] };
}

/**
 * PaddleOCR's get_mini_boxes: the minimum-area rectangle's corners sorted by x, then ordered
 * top-left, top-right, bottom-right, bottom-left by comparing the y of the two leftmost and the
 * two rightmost; and its shorter side.
 */
export function miniBox(points: readonly Pt[]): { box: Pt[]; side: number } {
  const r = minAreaRect(points);
  const p = [...r.corners].sort((a, b) => a[0] - b[0]);
  if (p.length < 4) return { box: p, side: 0 };
  const [i1, i4] = p[1]![1] > p[0]![1] ? [0, 1] : [1, 0];
  const [i2, i3] = p[3]![1] > p[2]![1] ? [2, 3] : [3, 2];
  return { box: [p[i1]!, p[i2]!, p[i3]!, p[i4]!], side: Math.min(r.width, r.height) };
}

/** Signed area (shoelace) and perimeter of a closed polygon, as shapely's Polygon.area / .length. */
export function polygonAreaAndLength(poly: readonly Pt[]): { area: number; length: number } {
  let twice = 0;
  let length = 0;
  for (let i = 0; i < poly.length; i++) {
    const a = poly[i]!;
    const b = poly[(i + 1) % poly.length]!;
    twice += a[0] * b[1] - b[0] * a[1];
    length += Math.hypot(b[0] - a[0], b[1] - a[1]);
  }
  return { area: Math.abs(twice) / 2, length };
}

/**
 * DBNet's unclip: grow the box by area * ratio / perimeter with round joins. As PaddleOCR calls
 * pyclipper: coordinates truncated to integers, Clipper's defaults (miter limit 2, arc tolerance
 * 0.25), integer output vertices.
 */
export function unclip(box: readonly Pt[], ratio: number): Pt[] {
  const { area, length } = polygonAreaAndLength(box);
  if (length === 0) return [];
  const offset = new ClipperLib.ClipperOffset(2, 0.25);
  offset.AddPath(box.map(([x, y]) => ({ X: Math.trunc(x), Y: Math.trunc(y) })), ClipperLib.JoinType.jtRound, ClipperLib.EndType.etClosedPolygon);
  const out: { X: number; Y: number }[][] = [];
  offset.Execute(out, (area * ratio) / length);
  return out.flat().map((p) => [p.X, p.Y]);
}

/**
 * Clips the segment to [0, w-1] x [0, h-1] as OpenCV's clipLine does (y first, then x, each
 * intersection truncated toward zero). Undefined when nothing of it is inside.
 */
function clipSegment(w: number, h: number, p: Pt, q: Pt): [Pt, Pt] | undefined {
  let [x1, y1] = p;
  let [x2, y2] = q;
  const right = w - 1;
  const bottom = h - 1;
  const code = (x: number, y: number): number => (x < 0 ? 1 : 0) + (x > right ? 2 : 0) + (y < 0 ? 4 : 0) + (y > bottom ? 8 : 0);
  let c1 = code(x1, y1);
  let c2 = code(x2, y2);
  if ((c1 & c2) === 0 && (c1 | c2) !== 0) {
    if (c1 & 12) {
      const a = c1 < 8 ? 0 : bottom;
      x1 += Math.trunc(((a - y1) * (x2 - x1)) / (y2 - y1));
      y1 = a;
      c1 = (x1 < 0 ? 1 : 0) + (x1 > right ? 2 : 0);
    }
    if (c2 & 12) {
      const a = c2 < 8 ? 0 : bottom;
      x2 += Math.trunc(((a - y2) * (x2 - x1)) / (y2 - y1));
      y2 = a;
      c2 = (x2 < 0 ? 1 : 0) + (x2 > right ? 2 : 0);
    }
    if ((c1 & c2) === 0 && (c1 | c2) !== 0) {
      if (c1) {
        const a = c1 === 1 ? 0 : right;
        y1 += Math.trunc(((a - x1) * (y2 - y1)) / (x2 - x1));
        x1 = a;
        c1 = 0;
      }
      if (c2) {
        const a = c2 === 1 ? 0 : right;
        y2 += Math.trunc(((a - x2) * (y2 - y1)) / (x2 - x1));
        x2 = a;
        c2 = 0;
      }
    }
  }
  return (c1 | c2) === 0 ? [[x1, y1], [x2, y2]] : undefined;
}

/** An 8-connected line (Bresenham, drawn left to right) into a w x h mask, clipped first. */
function drawLine(mask: Uint8Array, w: number, h: number, p: Pt, q: Pt): void {
  const clipped = clipSegment(w, h, p, q);
  if (!clipped) return;
  let [[x, y], [x2, y2]] = clipped;
  if (x > x2) [x, y, x2, y2] = [x2, y2, x, y];
  const dx = x2 - x;
  const dy = Math.abs(y2 - y);
  const sy = y2 < y ? -1 : 1;
  const yMajor = dy > dx;
  const major = yMajor ? dy : dx;
  const minor = yMajor ? dx : dy;
  let err = major - 2 * minor;
  for (let i = 0; i <= major; i++) {
    mask[y * w + x] = 1;
    const stepMinor = err < 0;
    err += -2 * minor + (stepMinor ? 2 * major : 0);
    if (yMajor) {
      y += sy;
      if (stepMinor) x += 1;
    } else {
      x += 1;
      if (stepMinor) y += sy;
    }
  }
}

const XY_SHIFT = 16;
const XY_ONE = 1 << XY_SHIFT;

/**
 * cv2.fillPoly(mask, [poly], 1) for one polygon of integer vertices (shift 0, LINE_8): the outline
 * drawn as 8-connected lines, the inside filled scanline by scanline between edge pairs in 16-bit
 * fixed point (left end rounded up, right end down; an edge covers its upper row, not its lower).
 */
export function fillPolygon(mask: Uint8Array, w: number, h: number, poly: readonly Pt[]): void {
  interface Edge {
    y0: number;
    y1: number;
    x: number;
    dx: number;
  }
  const edges: Edge[] = [];
  for (let i = 0; i < poly.length; i++) {
    const p0 = poly[i === 0 ? poly.length - 1 : i - 1]!;
    const p1 = poly[i]!;
    drawLine(mask, w, h, p0, p1);
    let c0: Pt = p0;
    let c1: Pt = p1;
    const outside = (p: Pt): boolean => p[0] < 0 || p[0] >= w || p[1] < 0 || p[1] >= h;
    if (outside(p0) || outside(p1)) {
      // Edges of lines that leave the image start from the clipped end points.
      const c = clipSegment(w, h, p0, p1);
      if (c && c[0][1] !== c[1][1]) [c0, c1] = c;
      else if (c) [c0, c1] = [[c[0][0], p0[1]], [c[1][0], p1[1]]];
    }
    if (p0[1] === p1[1]) continue;
    const dx = Math.trunc(((c1[0] - c0[0]) * XY_ONE) / (c1[1] - c0[1]));
    if (p0[1] < p1[1]) edges.push({ y0: p0[1], y1: p1[1], x: c0[0] * XY_ONE + (p0[1] - c0[1]) * dx, dx });
    else edges.push({ y0: p1[1], y1: p0[1], x: c1[0] * XY_ONE + (p1[1] - c1[1]) * dx, dx });
  }
  if (edges.length < 2) return;
  const yMin = Math.min(...edges.map((e) => e.y0));
  const yMax = Math.min(Math.max(...edges.map((e) => e.y1)), h);
  for (let y = yMin; y < yMax; y++) {
    const active = edges.filter((e) => e.y0 <= y && y < e.y1).map((e) => e.x + (y - e.y0) * e.dx);
    if (y < 0) continue;
    active.sort((a, b) => a - b);
    for (let k = 0; k + 1 < active.length; k += 2) {
      let x1 = Math.floor((active[k]! + XY_ONE - 1) / XY_ONE);
      let x2 = Math.floor(active[k + 1]! / XY_ONE);
      if (x1 >= w || x2 < 0) continue;
      x1 = Math.max(x1, 0);
      x2 = Math.min(x2, w - 1);
      for (let x = x1; x <= x2; x++) mask[y * w + x] = 1;
    }
  }
}
