/**
 * cv2.minAreaRect and cv2.boxPoints in OpenCV's own arithmetic (OpenCV 5.1, modules/geometry:
 * convexHull's Sklansky scan, the rotating calipers in float32, RotatedRect::points), so the corners
 * PaddleOCR's DBPostProcess computes with are the same float32 values (290.99997, not 291): its box
 * score truncates them to pixels, so a corner one float32 step below an integer moves the averaging
 * window by a pixel. Our own implementation, written from the published algorithm and checked against
 * cv2 on thousands of point sets (test/model/rotatedRect.test.ts, fixture rotated_rect.json).
 *
 * Integer points (contours, Clipper's output) take OpenCV's integer path (exact products); other
 * points are rounded to float32 and take its float path (edge vectors normalised in double).
 * Built for x86-64 without fused multiply-adds, as OpenCV's portable code there is.
 */
/** x, y. */
type Pt = [number, number];

const f = Math.fround;

export interface CvRotatedRect {
  center: Pt;
  /** [width, height] as OpenCV reports them. */
  size: [number, number];
  /** Degrees in [-90, 0). */
  angle: number;
}

const sign = (v: number): number => (v > 0 ? 1 : 0) - (v < 0 ? 1 : 0);

/** One monotone half of Sklansky's scan over points sorted by x then y (indices into `sorted`). */
function sklansky(sorted: readonly Pt[], start: number, end: number, nsign: number, sign2: number, isFloat: boolean): number[] {
  const incr = end > start ? 1 : -1;
  let pprev = start;
  let pcur = pprev + incr;
  let pnext = pcur + incr;
  if (start === end || (sorted[start]![0] === sorted[end]![0] && sorted[start]![1] === sorted[end]![1])) return [start];
  const stack = [pprev, pcur, pnext];
  let size = 3;
  const after = end + incr;
  const unit = (x: number, y: number): [number, number] => {
    // cv::normalize(Vec2f): the norm in double, each component scaled in double and rounded to float.
    const n = Math.sqrt(x * x + y * y);
    const k = n ? 1 / n : 0;
    return [f(x * k), f(y * k)];
  };
  while (pnext !== after) {
    const cury = sorted[pcur]![1];
    const by = isFloat ? f(sorted[pnext]![1] - cury) : sorted[pnext]![1] - cury;
    if (sign(by) !== nsign) {
      let a: [number, number] = isFloat ? [f(sorted[pcur]![0] - sorted[pprev]![0]), f(cury - sorted[pprev]![1])] : [sorted[pcur]![0] - sorted[pprev]![0], cury - sorted[pprev]![1]];
      let b: [number, number] = [isFloat ? f(sorted[pnext]![0] - sorted[pcur]![0]) : sorted[pnext]![0] - sorted[pcur]![0], by];
      if (isFloat) {
        a = unit(a[0], a[1]);
        b = unit(b[0], b[1]);
      }
      const convexity = a[1] * b[0] - a[0] * b[1]; // int64 or double, as OpenCV's _DotTp
      if (sign(convexity) === sign2 && (a[0] !== 0 || a[1] !== 0)) {
        pprev = pcur;
        pcur = pnext;
        pnext += incr;
        stack[size] = pnext;
        size++;
      } else if (pprev === start) {
        pcur = pnext;
        stack[1] = pcur;
        pnext += incr;
        stack[2] = pnext;
      } else {
        stack[size - 2] = pnext;
        pcur = pprev;
        pprev = stack[size - 4]!;
        size--;
      }
    } else {
      pnext += incr;
      stack[size - 1] = pnext;
    }
  }
  return stack.slice(0, size - 1);
}

/**
 * cv::convexHull(points, clockwise, returnPoints=true): the hull's vertices in OpenCV's order,
 * starting where OpenCV starts (the cyclic shift that makes the input indices monotone).
 */
export function convexHullCv(points: readonly Pt[], clockwise: boolean, isFloat: boolean): Pt[] {
  const total = points.length;
  if (total === 0) return [];
  const order = points.map((_, i) => i).sort((i, j) => points[i]![0] - points[j]![0] || points[i]![1] - points[j]![1] || i - j);
  const sorted = order.map((i) => points[i]!);
  let miny = 0;
  let maxy = 0;
  for (let i = 1; i < total; i++) {
    const y = sorted[i]![1];
    if (sorted[miny]![1] > y) miny = i;
    if (sorted[maxy]![1] < y) maxy = i;
  }
  let hull: number[] = [];
  if (sorted[0]![0] === sorted[total - 1]![0] && sorted[0]![1] === sorted[total - 1]![1]) {
    hull = [0];
  } else {
    let tl = sklansky(sorted, 0, maxy, -1, 1, isFloat);
    let tr = sklansky(sorted, total - 1, maxy, -1, -1, isFloat);
    if (!clockwise) [tl, tr] = [tr, tl];
    for (let i = 0; i < tl.length - 1; i++) hull.push(tl[i]!);
    for (let i = tr.length - 1; i > 0; i--) hull.push(tr[i]!);
    const stop = tr.length > 2 ? tr[1]! : tl.length > 2 ? tl[tl.length - 2]! : -1;
    let bl = sklansky(sorted, 0, miny, 1, -1, isFloat);
    let br = sklansky(sorted, total - 1, miny, 1, 1, isFloat);
    if (clockwise) [bl, br] = [br, bl];
    if (stop >= 0) {
      const check = bl.length > 2 ? bl[1]! : bl.length + br.length > 2 ? br[2 - bl.length]! : -1;
      if (check === stop || (check >= 0 && sorted[check]![0] === sorted[stop]![0] && sorted[check]![1] === sorted[stop]![1])) {
        // All points on one line: the lower half mirrors the upper one.
        bl = bl.slice(0, 2);
        br = br.slice(0, 2);
      }
    }
    for (let i = 0; i < bl.length - 1; i++) hull.push(bl[i]!);
    for (let i = br.length - 1; i > 0; i--) hull.push(br[i]!);
    hull = hull.map((k) => order[k]!);
    hull = monotoneShift(hull);
  }
  return hull.map((i) => points[i]!);
}

/** convexHull's last step: a cyclic shift that makes the input indices ascending or descending, when one does. */
function monotoneShift(hull: number[]): number[] {
  const n = hull.length;
  if (n < 3) return hull;
  let minI = 0;
  let maxI = 0;
  let lt = 0;
  for (let i = 1; i < n; i++) {
    const idx = hull[i]!;
    lt += hull[i - 1]! < idx ? 1 : 0;
    if (lt > 1 && lt <= i - 2) break;
    if (idx < hull[minI]!) minI = i;
    if (idx > hull[maxI]!) maxI = i;
  }
  const dist = Math.abs(maxI - minI);
  if (!((dist === 1 || dist === n - 1) && (lt <= 1 || lt >= n - 2))) return hull;
  const ascending = (maxI + 1) % n === minI;
  const i0 = ascending ? minI : maxI;
  if (i0 === 0) return hull;
  const out: number[] = [];
  let j = i0;
  for (let i = 0; i < n; i++) {
    const cur = hull[j]!;
    out.push(cur);
    const nj = j + 1 < n ? j + 1 : 0;
    if (i < n - 1 && ascending !== cur < hull[nj]!) return hull;
    j = nj;
  }
  return out;
}

/** The rotating calipers (CALIPERS_MINAREARECT) in float32: the corner and the two side vectors. */
function calipers(pts: readonly Pt[], orientation: number): [Pt, Pt, Pt] {
  const n = pts.length;
  const vx = new Float32Array(n);
  const vy = new Float32Array(n);
  const inv = new Float32Array(n);
  let left = 0, bottom = 0, right = 0, top = 0;
  let [p0x, p0y] = pts[0]!;
  let leftX = p0x, rightX = p0x, topY = p0y, bottomY = p0y;
  for (let i = 0; i < n; i++) {
    if (p0x < leftX) [leftX, left] = [p0x, i];
    if (p0x > rightX) [rightX, right] = [p0x, i];
    if (p0y > topY) [topY, top] = [p0y, i];
    if (p0y < bottomY) [bottomY, bottom] = [p0y, i];
    const [px, py] = pts[i + 1 < n ? i + 1 : 0]!;
    const dx = f(px - p0x);
    const dy = f(py - p0y);
    vx[i] = dx;
    vy[i] = dy;
    inv[i] = 1 / Math.sqrt(dx * dx + dy * dy);
    p0x = px;
    p0y = py;
  }
  let baseA = orientation;
  let baseB = 0;
  const seq = [bottom, right, top, left];
  let minArea = 3.4028234663852886e38; // FLT_MAX
  let best = { left: 0, a: 0, width: 0, b: 0, height: 0, bottom: 0 };
  // The edge vectors as seen from each caliper side: (x, y), rotated 90 CW, 180, 90 CCW.
  const rot = (k: number, x: number, y: number): [number, number] => (k === 0 ? [x, y] : k === 1 ? [y, -x] : k === 2 ? [-x, -y] : [-y, x]);
  for (let k = 0; k < n; k++) {
    const r = [0, 1, 2, 3].map((s) => rot(s, vx[seq[s]!]!, vy[seq[s]!]!));
    let main = 0;
    for (let i = 1; i < 4; i++) {
      // firstVecIsRight(r[i], r[main]): rotate90CW(r[i]) . r[main] < 0, in float32.
      const [tx, ty] = [r[i]![1], -r[i]![0]];
      if (f(f(tx * r[main]![0]) + f(ty * r[main]![1])) < 0) main = i;
    }
    const p = seq[main]!;
    const leadX = f(vx[p]! * inv[p]!);
    const leadY = f(vy[p]! * inv[p]!);
    [baseA, baseB] = main === 0 ? [leadX, leadY] : main === 1 ? [leadY, -leadX] : main === 2 ? [-leadX, -leadY] : [-leadY, leadX];
    seq[main] = seq[main]! + 1 === n ? 0 : seq[main]! + 1;
    let dx = f(pts[seq[1]!]![0] - pts[seq[3]!]![0]);
    let dy = f(pts[seq[1]!]![1] - pts[seq[3]!]![1]);
    const width = f(f(dx * baseA) + f(dy * baseB));
    dx = f(pts[seq[2]!]![0] - pts[seq[0]!]![0]);
    dy = f(pts[seq[2]!]![1] - pts[seq[0]!]![1]);
    const height = f(f(-dx * baseB) + f(dy * baseA));
    const area = f(width * height);
    if (area <= minArea) {
      minArea = area;
      best = { left: seq[3]!, a: baseA, width, b: baseB, height, bottom: seq[0]! };
    }
  }
  const [A1, B1, A2, B2] = [best.a, best.b, -best.b, best.a];
  const C1 = f(f(A1 * pts[best.left]![0]) + f(pts[best.left]![1] * B1));
  const C2 = f(f(A2 * pts[best.bottom]![0]) + f(pts[best.bottom]![1] * B2));
  const idet = f(1 / f(f(A1 * B2) - f(A2 * B1)));
  const px = f(f(f(C1 * B2) - f(C2 * B1)) * idet);
  const py = f(f(f(A1 * C2) - f(A2 * C1)) * idet);
  return [
    [px, py],
    [f(A1 * best.width), f(B1 * best.width)],
    [f(A2 * best.height), f(B2 * best.height)],
  ];
}

/** cv2.minAreaRect(points). */
export function minAreaRectCv(points: readonly Pt[]): CvRotatedRect {
  const isFloat = points.some(([x, y]) => !Number.isInteger(x) || !Number.isInteger(y));
  const input = isFloat ? points.map(([x, y]): Pt => [f(x), f(y)]) : points;
  const hull = convexHullCv(input, false, isFloat);
  let angle = -Math.PI / 2;
  const box: CvRotatedRect = { center: [0, 0], size: [0, 0], angle: 0 };
  const n = hull.length;
  if (n > 2) {
    const [o, v1, v2] = calipers(hull, 1);
    box.center = [f(o[0] + f(f(v1[0] + v2[0]) * 0.5)), f(o[1] + f(f(v1[1] + v2[1]) * 0.5))];
    box.size = [f(Math.sqrt(v2[0] * v2[0] + v2[1] * v2[1])), f(Math.sqrt(v1[0] * v1[0] + v1[1] * v1[1]))];
    if (v1[0] === 0 && v1[1] > 0) box.size = [box.size[1], box.size[0]];
    else angle = -Math.atan2(v1[0], v1[1]);
  } else if (n === 2) {
    const [p, q] = hull as [Pt, Pt];
    box.center = [f(f(p[0] + q[0]) * 0.5), f(f(p[1] + q[1]) * 0.5)];
    const dx = f(p[0] - q[0]);
    const dy = f(p[1] - q[1]);
    const len = f(Math.sqrt(dx * dx + dy * dy));
    box.size = [0, len];
    if (dx === 0) box.size = [len, 0];
    else if (dy < 0) {
      angle = Math.atan2(dy, dx);
      box.size = [len, 0];
    } else if (dy > 0) angle = -Math.atan2(dx, dy);
  } else if (n === 1) {
    box.center = [hull[0]![0], hull[0]![1]];
  }
  box.angle = f((angle * 180) / Math.PI);
  return box;
}

/** cv2.boxPoints(rect): RotatedRect::points in float32, in its order. */
export function boxPointsCv(r: CvRotatedRect): Pt[] {
  const t = (r.angle * Math.PI) / 180;
  const b = f(f(Math.cos(t)) * 0.5);
  const a = f(f(Math.sin(t)) * 0.5);
  const [w, h] = r.size;
  const [cx, cy] = r.center;
  const ah = f(a * h), aw = f(a * w), bh = f(b * h), bw = f(b * w);
  return [
    [f(f(cx - ah) - bw), f(f(cy + bh) - aw)],
    [f(f(cx + ah) - bw), f(f(cy - bh) - aw)],
    [f(f(cx + ah) + bw), f(f(cy - bh) + aw)],
    [f(f(cx - ah) + bw), f(f(cy + bh) + aw)],
  ];
}
