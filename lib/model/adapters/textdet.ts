/**
 * Text detection for DBNet-style models (PaddleOCR PP-OCR det): a probability map [1, H, W] at the
 * input resolution -> binary map (> binThreshold) -> connected regions -> score = mean probability
 * over the region -> keep above boxThreshold -> "unclip" (grow by area * ratio / perimeter, as
 * DBPostProcess does) -> box and mask in original-image pixels.
 */
import { boxMaskToCounts, countsToString } from '../rle';
import { imageSlice, round6, toCocoBox, type Detection } from '../postprocess';
import { outputFor, type Adapter } from './types';

interface Region {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  sum: number;
  n: number;
  pixels: number[];
}

/** 8-connected regions of map > thr (iterative flood fill; no recursion). */
export function connectedRegions(prob: Float32Array, w: number, h: number, thr: number): Region[] {
  const seen = new Uint8Array(w * h);
  const regions: Region[] = [];
  const stack: number[] = [];
  for (let start = 0; start < w * h; start++) {
    if (seen[start] || !(prob[start]! > thr)) continue;
    const r: Region = { x0: w, y0: h, x1: -1, y1: -1, sum: 0, n: 0, pixels: [] };
    seen[start] = 1;
    stack.push(start);
    while (stack.length > 0) {
      const p = stack.pop()!;
      const x = p % w;
      const y = (p - x) / w;
      r.pixels.push(p);
      r.sum += prob[p]!;
      r.n++;
      if (x < r.x0) r.x0 = x;
      if (x > r.x1) r.x1 = x;
      if (y < r.y0) r.y0 = y;
      if (y > r.y1) r.y1 = y;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= w) continue;
          const q = yy * w + xx;
          if (!seen[q] && prob[q]! > thr) {
            seen[q] = 1;
            stack.push(q);
          }
        }
      }
    }
    regions.push(r);
  }
  return regions;
}

export const textDetectionAdapter: Adapter = (outputs, b, meta, spec, params) => {
  const post = spec.postprocess;
  const binThr = post.binThreshold ?? 0.3;
  const boxThr = params.scoreThreshold ?? post.boxThreshold ?? 0.6;
  const unclip = post.unclipRatio ?? 1.5;
  const minSize = post.minSize ?? 3;
  const maxDet = params.topK ?? post.maxDetections ?? 1000;
  const t = outputFor(outputs, spec, 'probability', ['sigmoid', 'prob', 'map'], 0);
  if (!t) throw new Error('text detection model has no output');
  const map = imageSlice(t, b, 3, 'probability map');
  const [, mh, mw] = map.dims as [number, number, number];
  const { scaleX, scaleY, padX, padY } = meta.transform;
  const W = meta.width;
  const H = meta.height;

  const found = connectedRegions(map.data, mw, mh, binThr)
    .filter((r) => Math.min(r.x1 - r.x0 + 1, r.y1 - r.y0 + 1) >= minSize)
    .map((r) => ({ r, score: r.sum / r.n }))
    .filter((x) => x.score >= boxThr)
    .sort((a, c) => c.score - a.score)
    .slice(0, maxDet);

  const detections: Detection[] = found.map(({ r, score }) => {
    const bw = r.x1 - r.x0 + 1;
    const bh = r.y1 - r.y0 + 1;
    const dist = (bw * bh * unclip) / (2 * (bw + bh));
    // Grown box in map pixels (edges, not centres), then to original pixels.
    const mx0 = r.x0 - dist, my0 = r.y0 - dist, mx1 = r.x1 + 1 + dist, my1 = r.y1 + 1 + dist;
    const bbox = toCocoBox((mx0 - padX) / scaleX, (my0 - padY) / scaleY, (mx1 - padX) / scaleX, (my1 - padY) / scaleY, W, H);
    const det: Detection = { bbox, score: round6(score), category_id: 1, label: spec.labels[0] ?? 'text' };
    if (params.masks !== false) {
      // Mask: the region grown by `dist` (square structuring element), sampled at each original pixel.
      const region = new Uint8Array(mw * mh);
      for (const p of r.pixels) region[p] = 1;
      const grown = dilate(region, mw, mh, Math.round(dist), r);
      const ix0 = Math.floor(bbox[0]), iy0 = Math.floor(bbox[1]);
      const ix1 = Math.min(W, Math.ceil(bbox[0] + bbox[2])), iy1 = Math.min(H, Math.ceil(bbox[1] + bbox[3]));
      const bw2 = ix1 - ix0, bh2 = iy1 - iy0;
      if (bw2 > 0 && bh2 > 0) {
        const box = new Uint8Array(bw2 * bh2);
        let area = 0;
        for (let y = 0; y < bh2; y++) {
          const my = Math.min(mh - 1, Math.max(0, Math.floor((iy0 + y + 0.5) * scaleY + padY)));
          for (let x = 0; x < bw2; x++) {
            const mx = Math.min(mw - 1, Math.max(0, Math.floor((ix0 + x + 0.5) * scaleX + padX)));
            if (grown[my * mw + mx]) {
              box[y * bw2 + x] = 1;
              area++;
            }
          }
        }
        if (area > 0) {
          det.segmentation = { size: [H, W], counts: countsToString(boxMaskToCounts(H, W, ix0, iy0, bw2, bh2, box)) };
          det.area = area;
        }
      }
    }
    return det;
  });
  return { detections };
};

/** Square dilation by radius rad, limited to the region's bounding box grown by rad. */
function dilate(src: Uint8Array, w: number, h: number, rad: number, r: Region): Uint8Array {
  if (rad <= 0) return src;
  const x0 = Math.max(0, r.x0 - rad), x1 = Math.min(w - 1, r.x1 + rad);
  const y0 = Math.max(0, r.y0 - rad), y1 = Math.min(h - 1, r.y1 + rad);
  const tmp = new Uint8Array(w * h);
  for (let y = r.y0; y <= r.y1; y++) {
    for (let x = x0; x <= x1; x++) {
      let v = 0;
      for (let k = Math.max(0, x - rad); k <= Math.min(w - 1, x + rad) && !v; k++) v = src[y * w + k]!;
      tmp[y * w + x] = v;
    }
  }
  const out = new Uint8Array(w * h);
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      let v = 0;
      for (let k = Math.max(r.y0, y - rad); k <= Math.min(r.y1, y + rad) && !v; k++) v = tmp[k * w + x]!;
      out[y * w + x] = v;
    }
  }
  return out;
}
