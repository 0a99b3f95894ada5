/**
 * Image classification: one output of [classes] scores per image (logits, softmaxed unless
 * model.json says postprocess.softmax = false), top-k with labels.
 */
import { categoryOf, imageSlice, labelOf, round6, type Classification } from '../postprocess';
import { softmaxRow } from './yolact';
import type { Adapter } from './types';

export const classificationAdapter: Adapter = (outputs, b, _meta, spec, params) => {
  const t = outputs['scores']!;
  // Accept [N, C], [N, C, 1, 1] and similar: everything after the batch dimension is the class axis.
  const flat = { data: t.data, dims: [t.dims[0]!, t.data.length / t.dims[0]!] };
  const row = imageSlice(t.dims.length === 1 ? t : flat, b, 1, 'scores');
  const n = row.data.length;
  let probs: Float32Array = row.data;
  if (spec.postprocess.softmax !== false) {
    probs = new Float32Array(n);
    softmaxRow(row.data, probs, 0, n);
  }
  const k = Math.min(params.topK ?? spec.postprocess.topK ?? 5, n);
  const min = params.scoreThreshold ?? 0;
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => probs[j]! - probs[i]! || i - j);
  const classes: Classification[] = order
    .slice(0, k)
    .filter((i) => probs[i]! >= min)
    .map((i) => ({ category_id: categoryOf(spec, i, i), label: labelOf(spec.labels, i), score: round6(probs[i]!) }));
  return { detections: [], classes };
};
