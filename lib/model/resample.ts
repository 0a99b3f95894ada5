/**
 * Reference resampling: bilinear with half-pixel centres and no antialiasing, in the exact arithmetic
 * of the two implementations our model families were trained and evaluated with.
 *
 * - `resizeBilinear`: torch.nn.functional.interpolate(mode='bilinear', align_corners=False) on float
 *   input (YOLACT's FastBaseTransform, yolact's and ultralytics' mask upsampling): source index
 *   `scale * (d + 0.5) - 0.5` in float32, clamped at 0, weights in float32, no rounding of the result.
 * - `resizeOpencvU8`: cv2.resize(INTER_LINEAR) on 8-bit images (ultralytics' letterbox, PaddleOCR's
 *   DetResizeForTest), bit-exact: 11-bit fixed-point weights (rounded half to even), weights clamped
 *   at the left and right borders but only the row index clipped at the top and bottom, and the
 *   vertical pass's two truncating shifts before the final rounding to 8 bits.
 *
 * Pixels are interleaved (HWC), row-major, `channels` per pixel.
 */

const fround = Math.fround;

/** Per output index: the two source indices and their weights along one axis. */
export interface FloatAxis {
  i0: Int32Array;
  i1: Int32Array;
  w0: Float32Array;
  w1: Float32Array;
}

/** torch's compute_source_index_and_lambda for upsample_bilinear2d (align_corners=False, no scale factor). */
export function torchAxis(inSize: number, outSize: number): FloatAxis {
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const w0 = new Float32Array(outSize);
  const w1 = new Float32Array(outSize);
  const scale = fround(inSize / outSize);
  for (let d = 0; d < outSize; d++) {
    if (inSize === outSize) {
      i0[d] = d;
      i1[d] = d;
      w0[d] = 1;
      continue;
    }
    let src = fround(fround(scale * fround(d + 0.5)) - 0.5);
    if (src < 0) src = 0;
    const a = Math.min(Math.floor(src), inSize - 1);
    const lambda = Math.min(Math.max(fround(src - a), 0), 1);
    i0[d] = a;
    i1[d] = a + (a < inSize - 1 ? 1 : 0);
    w1[d] = lambda;
    w0[d] = fround(1 - lambda);
  }
  return { i0, i1, w0, w1 };
}

/** Python's round(): half to even (cv::saturate_cast<short>(float) rounds the same way). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Per output index: the two source indices and 11-bit fixed-point weights along one axis. */
export interface FixedAxis {
  i0: Int32Array;
  i1: Int32Array;
  a0: Int32Array;
  a1: Int32Array;
}

const COEF_SCALE = 2048; // INTER_RESIZE_COEF_SCALE: 1 << 11

/**
 * cv::resize's INTER_LINEAR coefficients. `clampWeights`: the horizontal axis resets the weight to
 * (1, 0) where the source position falls off either border; the vertical axis keeps the weight and
 * only clips the row index.
 */
export function opencvAxis(inSize: number, outSize: number, clampWeights: boolean): FixedAxis {
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const a0 = new Int32Array(outSize);
  const a1 = new Int32Array(outSize);
  const scale = inSize / outSize; // double, as cv::resize computes it
  for (let d = 0; d < outSize; d++) {
    let f = fround((d + 0.5) * scale - 0.5);
    let s = Math.floor(f);
    f = fround(f - s);
    if (clampWeights) {
      if (s < 0) {
        f = 0;
        s = 0;
      }
      if (s >= inSize - 1) {
        f = 0;
        s = inSize - 1;
      }
    }
    i0[d] = Math.min(Math.max(s, 0), inSize - 1);
    i1[d] = Math.min(Math.max(s + 1, 0), inSize - 1);
    a0[d] = roundHalfEven(fround(1 - f) * COEF_SCALE);
    a1[d] = roundHalfEven(f * COEF_SCALE);
  }
  return { i0, i1, a0, a1 };
}

/** A rectangle of output pixels: computing only it costs its area, not the whole image's. */
export interface Window {
  x0: number;
  y0: number;
  w: number;
  h: number;
}

/**
 * The outputs along one axis whose two source taps touch source indices lo..hi (a map that is zero
 * elsewhere is zero outside them); contiguous, since source indices grow with the output index.
 */
export function touchedRange(i0: Int32Array, i1: Int32Array, lo: number, hi: number): [number, number] | undefined {
  let first = -1;
  let lastHit = -1;
  for (let d = 0; d < i0.length; d++) {
    if ((i0[d]! >= lo && i0[d]! <= hi) || (i1[d]! >= lo && i1[d]! <= hi)) {
      if (first < 0) first = d;
      lastHit = d;
    }
  }
  return first < 0 ? undefined : [first, lastHit];
}

/**
 * cv2.resize(src, (dw, dh), interpolation=INTER_LINEAR) for 8-bit images, bit for bit; with a
 * window, only that part of the output (its pixels equal the whole output's).
 */
export function resizeOpencvU8(src: Uint8Array, sw: number, sh: number, channels: number, dw: number, dh: number, window?: Window): Uint8Array {
  if (sw === dw && sh === dh && !window) {
    checkSizes(src.length, sw, sh, channels, dw, dh);
    return Uint8Array.from(src);
  }
  const w = window ?? { x0: 0, y0: 0, w: dw, h: dh };
  const out = new Uint8Array(w.w * w.h * channels);
  resizeOpencvU8Rows(src, sw, sh, channels, dw, dh, window, (y, row) => out.set(row, y * row.length));
  return out;
}

/**
 * resizeOpencvU8 a row at a time: `emit(y, row)` gets each output row of the window (y from 0;
 * `row` holds its w x channels values and is reused for the next row), so a caller can consume the
 * resized image (normalise it into a tensor) without holding it whole.
 */
export function resizeOpencvU8Rows(src: Uint8Array, sw: number, sh: number, channels: number, dw: number, dh: number, window: Window | undefined, emit: (y: number, row: Uint8Array) => void): void {
  checkSizes(src.length, sw, sh, channels, dw, dh);
  const win = window ?? { x0: 0, y0: 0, w: dw, h: dh };
  const x = windowed(opencvAxis(sw, dw, true), win.x0, win.w);
  const y = windowed(opencvAxis(sh, dh, false), win.y0, win.h);
  dw = win.w;
  dh = win.h;
  const rowLen = dw * channels;
  const out = new Uint8Array(rowLen);
  // Per output column: source byte offsets of the two taps and their weights, computed once.
  const off0 = new Int32Array(dw);
  const off1 = new Int32Array(dw);
  for (let dx = 0; dx < dw; dx++) {
    off0[dx] = x.i0[dx]! * channels;
    off1[dx] = x.i1[dx]! * channels;
  }
  const wa = x.a0;
  const wb = x.a1;
  const stride = sw * channels;
  const rows = rowPair(
    () => new Int32Array(rowLen),
    (r, buf) => {
      const base = r * stride;
      let o = 0;
      if (channels === 3) {
        // Unrolled for RGB: the common case, about twice as fast.
        for (let dx = 0; dx < dw; dx++, o += 3) {
          const p0 = base + off0[dx]!;
          const p1 = base + off1[dx]!;
          const c0 = wa[dx]!;
          const c1 = wb[dx]!;
          buf[o] = src[p0]! * c0 + src[p1]! * c1;
          buf[o + 1] = src[p0 + 1]! * c0 + src[p1 + 1]! * c1;
          buf[o + 2] = src[p0 + 2]! * c0 + src[p1 + 2]! * c1;
        }
        return;
      }
      for (let dx = 0; dx < dw; dx++) {
        const p0 = base + off0[dx]!;
        const p1 = base + off1[dx]!;
        const c0 = wa[dx]!;
        const c1 = wb[dx]!;
        for (let c = 0; c < channels; c++) buf[o++] = src[p0 + c]! * c0 + src[p1 + c]! * c1;
      }
    },
  );
  for (let dy = 0; dy < dh; dy++) {
    const [h0, h1] = rows(y.i0[dy]!, y.i1[dy]!);
    const b0 = y.a0[dy]!;
    const b1 = y.a1[dy]!;
    for (let i = 0; i < rowLen; i++) out[i] = (((b0 * (h0[i]! >> 4)) >> 16) + ((b1 * (h1[i]! >> 4)) >> 16) + 2) >> 2;
    emit(dy, out);
  }
}

/**
 * F.interpolate(x, (dh, dw), mode='bilinear', align_corners=False) of HWC values (8-bit pixels or
 * floats): out = w_y0 * (w_x0 * a + w_x1 * b) + w_y1 * (w_x0 * c + w_x1 * d), as torch nests it, in
 * torch's float32 arithmetic on x86-64: each `p * q + r * s` is a fused multiply-add,
 * fma(p, q, float32(r * s)) (its kernels are built with FMA for AVX2), so one rounding fewer than
 * plain float32. Measured against torch 2.15 on 872x1000, 333x777 and 480x640 photos to 550x550
 * and 32 float masks 138x138 to 550x550: bit for bit (test/model/resample.test.ts). The products are
 * exact in double (24-bit weights times 8-bit pixels or 24-bit floats), so double sums rounded once
 * to float32 give the fused result.
 */
export function resizeBilinear(src: ArrayLike<number>, sw: number, sh: number, channels: number, dw: number, dh: number, window?: Window): Float32Array {
  const w = window ?? { x0: 0, y0: 0, w: dw, h: dh };
  const out = new Float32Array(w.w * w.h * channels);
  resizeBilinearRows(src, sw, sh, channels, dw, dh, window, (y, row) => out.set(row, y * row.length));
  return out;
}

/** resizeBilinear a row at a time (as resizeOpencvU8Rows): `row` is float32, reused for the next row. */
export function resizeBilinearRows(src: ArrayLike<number>, sw: number, sh: number, channels: number, dw: number, dh: number, window: Window | undefined, emit: (y: number, row: Float32Array) => void): void {
  checkSizes(src.length, sw, sh, channels, dw, dh);
  const win = window ?? { x0: 0, y0: 0, w: dw, h: dh };
  const x = windowed(torchAxis(sw, dw), win.x0, win.w);
  const y = windowed(torchAxis(sh, dh), win.y0, win.h);
  dw = win.w;
  dh = win.h;
  const rowLen = dw * channels;
  const out = new Float32Array(rowLen);
  const off0 = new Int32Array(dw);
  const off1 = new Int32Array(dw);
  for (let dx = 0; dx < dw; dx++) {
    off0[dx] = x.i0[dx]! * channels;
    off1[dx] = x.i1[dx]! * channels;
  }
  const wa = x.w0;
  const wb = x.w1;
  const stride = sw * channels;
  const rows = rowPair(
    () => new Float32Array(rowLen),
    (r, buf) => {
      const base = r * stride;
      let o = 0;
      if (channels === 3) {
        // Unrolled for RGB: the common case, about twice as fast.
        for (let dx = 0; dx < dw; dx++, o += 3) {
          const p0 = base + off0[dx]!;
          const p1 = base + off1[dx]!;
          const c0 = wa[dx]!;
          const c1 = wb[dx]!;
          buf[o] = src[p0]! * c0 + fround(src[p1]! * c1);
          buf[o + 1] = src[p0 + 1]! * c0 + fround(src[p1 + 1]! * c1);
          buf[o + 2] = src[p0 + 2]! * c0 + fround(src[p1 + 2]! * c1);
        }
        return;
      }
      for (let dx = 0; dx < dw; dx++) {
        const p0 = base + off0[dx]!;
        const p1 = base + off1[dx]!;
        const c0 = wa[dx]!;
        const c1 = wb[dx]!;
        for (let c = 0; c < channels; c++) buf[o++] = src[p0 + c]! * c0 + fround(src[p1 + c]! * c1);
      }
    },
  );
  for (let dy = 0; dy < dh; dy++) {
    const [h0, h1] = rows(y.i0[dy]!, y.i1[dy]!);
    const g0 = y.w0[dy]!;
    const g1 = y.w1[dy]!;
    for (let i = 0; i < rowLen; i++) out[i] = g0 * h0[i]! + fround(g1 * h1[i]!);
    emit(dy, out);
  }
}

/**
 * The horizontal pass of the two source rows an output row blends, each computed once while
 * consecutive output rows share it (enlarging reuses rows; shrinking moves on).
 */
function rowPair<B extends Int32Array | Float32Array | Float64Array>(make: () => B, fill: (row: number, buf: B) => void): (r0: number, r1: number) => [B, B] {
  const cache: [number, B][] = [
    [-1, make()],
    [-1, make()],
  ];
  const get = (r: number, keep: number): B => {
    const hit = cache.find((e) => e[0] === r);
    if (hit) return hit[1];
    const slot = cache[0]![0] === keep ? cache[1]! : cache[0]!;
    slot[0] = r;
    fill(r, slot[1]);
    return slot[1];
  };
  return (r0, r1) => {
    const b0 = get(r0, r1);
    return [b0, get(r1, r0)];
  };
}

/** The part of an axis table for outputs from..from+n-1. */
function windowed<A extends FloatAxis | FixedAxis>(axis: A, from: number, n: number): A {
  if (from === 0 && n === axis.i0.length) return axis;
  if (from < 0 || n < 1 || from + n > axis.i0.length) throw new RangeError(`resize window ${from}+${n} outside 0..${axis.i0.length}`);
  return Object.fromEntries(Object.entries(axis).map(([k, v]) => [k, (v as Int32Array | Float32Array).subarray(from, from + n)])) as unknown as A;
}

function checkSizes(len: number, sw: number, sh: number, channels: number, dw: number, dh: number): void {
  for (const [name, v] of Object.entries({ sw, sh, channels, dw, dh })) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`resize: ${name} must be a positive integer, got ${v}`);
  }
  if (len !== sw * sh * channels) throw new RangeError(`resize: ${len} values for ${sw}x${sh}x${channels}`);
}
