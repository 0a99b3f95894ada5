/**
 * COCO run-length encoding, byte-compatible with pycocotools (maskApi.c): runs over the mask in
 * column-major (Fortran) order starting with a run of zeros, compressed with rleToString's scheme
 * (delta against the run two back for i > 2, 5-bit groups with a continuation bit, offset 48).
 */
export interface Rle {
  /** [height, width], as pycocotools expects. */
  size: [number, number];
  counts: string;
}

class RunBuilder {
  readonly counts: number[] = [];
  private cur = 0;
  private len = 0;
  push(value: number, n: number): void {
    if (n <= 0) return;
    const v = value ? 1 : 0;
    if (v !== this.cur) {
      this.counts.push(this.len);
      this.cur = v;
      this.len = 0;
    }
    this.len += n;
  }
  finish(): number[] {
    this.counts.push(this.len);
    return this.counts;
  }
}

/** Runs of a row-major h x w mask (non-zero = 1), in COCO's column-major order. */
export function maskToCounts(mask: Uint8Array, h: number, w: number): number[] {
  if (mask.length !== h * w) throw new RangeError(`mask has ${mask.length} values, expected ${h}x${w}`);
  const b = new RunBuilder();
  for (let x = 0; x < w; x++) for (let y = 0; y < h; y++) b.push(mask[y * w + x]!, 1);
  return b.finish();
}

/**
 * Runs of an h x w mask that is zero outside the box [x0, x0+bw) x [y0, y0+bh), given only the
 * box's row-major pixels: cost is the box's area, not the image's.
 */
export function boxMaskToCounts(h: number, w: number, x0: number, y0: number, bw: number, bh: number, box: Uint8Array): number[] {
  if (box.length !== bw * bh) throw new RangeError(`box mask has ${box.length} values, expected ${bw}x${bh}`);
  if (x0 < 0 || y0 < 0 || x0 + bw > w || y0 + bh > h) throw new RangeError('box lies outside the image');
  const b = new RunBuilder();
  b.push(0, x0 * h);
  for (let x = 0; x < bw; x++) {
    b.push(0, y0);
    for (let y = 0; y < bh; y++) b.push(box[y * bw + x]!, 1);
    b.push(0, h - y0 - bh);
  }
  b.push(0, (w - x0 - bw) * h);
  return b.finish();
}

export function countsToString(counts: readonly number[]): string {
  let s = '';
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i]!;
    if (i > 2) x -= counts[i - 2]!;
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x >>= 5; // arithmetic shift, as in C on a signed long
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      s += String.fromCharCode(c + 48);
    }
  }
  return s;
}

export function stringToCounts(s: string): number[] {
  const counts: number[] = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      if (p >= s.length) throw new RangeError('truncated RLE string');
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      if (!more && c & 0x10 && 5 * k < 32) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2]!;
    counts.push(x);
  }
  return counts;
}

export function encodeMask(mask: Uint8Array, h: number, w: number): Rle {
  return { size: [h, w], counts: countsToString(maskToCounts(mask, h, w)) };
}

/** Row-major h x w mask of 0/1 from an RLE. */
export function decodeRle(rle: Rle): Uint8Array {
  const [h, w] = rle.size;
  const counts = stringToCounts(rle.counts);
  const out = new Uint8Array(h * w);
  let i = 0;
  let v = 0;
  for (const n of counts) {
    if (v) {
      for (let k = i; k < i + n; k++) {
        const x = Math.floor(k / h);
        const y = k - x * h;
        out[y * w + x] = 1;
      }
    }
    i += n;
    v ^= 1;
  }
  if (i !== h * w) throw new RangeError(`RLE covers ${i} pixels, expected ${h * w}`);
  return out;
}

export function rleArea(rle: Rle): number {
  const counts = stringToCounts(rle.counts);
  let a = 0;
  for (let i = 1; i < counts.length; i += 2) a += counts[i]!;
  return a;
}
