/**
 * YOLACT (dbolya/yolact, as exported to ONNX in the paper), as its Detect layer and postprocess
 * compute it: priors, box decoding with variances (0.1, 0.2), candidates whose best class score
 * passes confThreshold, fast NMS per class (top topK, IoU > nmsThreshold against any higher-scoring
 * candidate), no second threshold, the top maxDetections across classes; then scoreThreshold
 * (params, strictly above), masks = sigmoid(proto . coefficients) cropped at prototype resolution
 * with one cell of padding, F.interpolate(bilinear) to the image and > 0.5. A detection whose mask is
 * empty keeps an empty RLE, as pycocotools encodes it.
 */
import { cropCells, fastNms, imageSlice, labelOf, categoryOf, protoMap, round6, sigmoid, toCocoBox, upsampleAbove, windowRle, type Detection } from '../postprocess';
import type { Adapter } from './types';

export interface PriorConfig {
  size: number;
  levels: readonly number[];
  scales: readonly number[];
  aspectRatios: readonly number[];
}

export const YOLACT_PRIORS: PriorConfig = { size: 550, levels: [69, 35, 18, 9, 5], scales: [24, 48, 96, 192, 384], aspectRatios: [1, 0.5, 2] };

const priorCache = new Map<string, Float32Array>();

/**
 * Priors as [cx, cy, w, h] (normalised), ordered level, row, column, aspect ratio; square anchors
 * of side scale * sqrt(ar) / size (use_square_anchors, pixel scales, sqrt not pre-applied).
 */
export function yolactPriors(cfg: PriorConfig = YOLACT_PRIORS): Float32Array {
  const key = JSON.stringify(cfg);
  const hit = priorCache.get(key);
  if (hit) return hit;
  const n = cfg.levels.reduce((a, l) => a + l * l * cfg.aspectRatios.length, 0);
  const out = new Float32Array(n * 4);
  let k = 0;
  cfg.levels.forEach((conv, li) => {
    const scale = cfg.scales[li]!;
    for (let i = 0; i < conv; i++) {
      for (let j = 0; j < conv; j++) {
        const cx = (j + 0.5) / conv;
        const cy = (i + 0.5) / conv;
        for (const ar of cfg.aspectRatios) {
          const w = (scale * Math.sqrt(ar)) / cfg.size;
          out[k++] = cx;
          out[k++] = cy;
          out[k++] = w;
          out[k++] = w;
        }
      }
    }
  });
  priorCache.set(key, out);
  return out;
}

const VARIANCES = [0.1, 0.2] as const;

export const yolactAdapter: Adapter = (outputs, b, meta, spec, params) => {
  const post = spec.postprocess;
  const confThresh = post.confThreshold ?? 0.05;
  const nmsThresh = post.nmsThreshold ?? 0.5;
  const topK = post.topK ?? 200;
  const maxDet = Math.min(post.maxDetections ?? 100, params.topK ?? Number.POSITIVE_INFINITY);

  const loc = imageSlice(outputs['loc']!, b, 2, 'loc');
  const conf = imageSlice(outputs['conf']!, b, 2, 'conf');
  const coef = imageSlice(outputs['mask']!, b, 2, 'mask');
  const proto = imageSlice(outputs['proto']!, b, 3, 'proto');
  const priorsOut = outputs['priors'];
  const P = loc.dims[0]!;
  const nc = conf.dims[1]!;
  const nk = coef.dims[1]!;
  const [ph, pw, pk] = proto.dims as [number, number, number];
  if (conf.dims[0] !== P || coef.dims[0] !== P || pk !== nk) {
    throw new Error(`YOLACT outputs disagree: loc [${loc.dims}], conf [${conf.dims}], mask [${coef.dims}], proto [${proto.dims}]`);
  }
  const priors = priorsOut !== undefined ? imageSlice(priorsOut, b, 2, 'priors').data : yolactPriors();
  if (priors.length !== P * 4) throw new Error(`YOLACT has ${P} predictions but ${priors.length / 4} priors`);

  let scores = conf.data;
  if (post.softmax === true) {
    scores = new Float32Array(conf.data.length);
    for (let p = 0; p < P; p++) softmaxRow(conf.data, scores, p * nc, nc);
  }

  // Candidates: priors whose best non-background score passes the threshold.
  const cand: number[] = [];
  for (let p = 0; p < P; p++) {
    let best = 0;
    for (let c = 1; c < nc; c++) best = Math.max(best, scores[p * nc + c]!);
    if (best > confThresh) cand.push(p);
  }
  const boxes = new Float32Array(cand.length * 4);
  cand.forEach((p, k) => {
    const l = loc.data;
    const pcx = priors[4 * p]!, pcy = priors[4 * p + 1]!, pw0 = priors[4 * p + 2]!, ph0 = priors[4 * p + 3]!;
    const cx = pcx + l[4 * p]! * VARIANCES[0] * pw0;
    const cy = pcy + l[4 * p + 1]! * VARIANCES[0] * ph0;
    const w = pw0 * Math.exp(l[4 * p + 2]! * VARIANCES[1]);
    const h = ph0 * Math.exp(l[4 * p + 3]! * VARIANCES[1]);
    boxes[4 * k] = cx - w / 2;
    boxes[4 * k + 1] = cy - h / 2;
    boxes[4 * k + 2] = cx + w / 2;
    boxes[4 * k + 3] = cy + h / 2;
  });
  // Per class, in class order: the survivors of fast NMS, best first (as fast_nms gathers them).
  const all = cand.map((_, k) => k);
  const found: { k: number; c: number; score: number }[] = [];
  const classScores = new Float32Array(cand.length);
  for (let c = 1; c < nc; c++) {
    cand.forEach((p, k) => (classScores[k] = scores[p * nc + c]!));
    for (const k of fastNms(boxes, classScores, all, nmsThresh, topK)) {
      if (post.secondThreshold && !(classScores[k]! > confThresh)) continue;
      found.push({ k, c, score: classScores[k]! });
    }
  }
  // Across classes: best first (a stable sort: ties keep class order), the top maxDetections.
  found.sort((a, b2) => b2.score - a.score);
  const minScore = params.scoreThreshold ?? 0;
  const keep = found.slice(0, maxDet).filter((f) => minScore <= 0 || f.score > minScore);

  const W = meta.width;
  const H = meta.height;
  const protoSrc = { data: proto.data, ph, pw, nk, layout: 'HWC' as const };
  return {
    detections: keep.map(({ k, c, score }) => {
      const x1 = Math.min(boxes[4 * k]!, boxes[4 * k + 2]!), x2 = Math.max(boxes[4 * k]!, boxes[4 * k + 2]!);
      const y1 = Math.min(boxes[4 * k + 1]!, boxes[4 * k + 3]!), y2 = Math.max(boxes[4 * k + 1]!, boxes[4 * k + 3]!);
      const det: Detection = { bbox: toCocoBox(x1 * W, y1 * H, x2 * W, y2 * H, W, H), score: round6(score), category_id: categoryOf(spec, c - 1, c), label: labelOf(spec.labels, c - 1) };
      if (params.masks !== false) {
        // Crop at prototype resolution with yolact's one cell of padding, then upsample to the image.
        const cells = cropCells(Math.max(x1 * pw - 1, 0), Math.min(x2 * pw + 1, pw), Math.max(y1 * ph - 1, 0), Math.min(y2 * ph + 1, ph), pw, ph);
        const win = cells ? upsampleAbove(protoMap(protoSrc, coef.data, cand[k]! * nk, cells, sigmoid), pw, ph, cells, W, H, 0.5) : undefined;
        const m = windowRle(win, W, H);
        det.segmentation = m.rle;
        det.area = m.area;
      }
      return det;
    }),
  };
};

export function softmaxRow(src: ArrayLike<number>, dst: Float32Array, off: number, n: number): void {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, src[off + i]!);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(src[off + i]! - max);
  for (let i = 0; i < n; i++) dst[off + i] = Math.exp(src[off + i]! - max) / sum;
}
