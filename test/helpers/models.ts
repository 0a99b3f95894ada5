/**
 * Fixture models with exactly known outputs, and their model.json specs.
 */
import { GraphBuilder } from './onnx-builder';
import type { ModelSpec } from '../../lib/model/spec';
import { parseModelSpec } from '../../lib/model/spec';

export const YOLACT_MEAN = [123.68, 116.78, 103.94] as const;
export const YOLACT_STD = [58.4, 57.12, 57.38] as const;
export const LN4_OVER_VAR = Math.log(4) / 0.2;
export const N_PRIORS = 19248;
export const LEVEL0 = 69;

/**
 * YOLACT-format model (550x550, outputs loc/conf/mask/proto with YOLACT's shapes) whose outputs are
 * driven by the image:
 * - conf: at level-0 priors of aspect ratio 1, class c (1..3) logit = 4 * (x_c - 2), where x_c is the
 *   normalised channel c-1 sampled (nearest, half_pixel) at the cell; background logit -2; other
 *   classes -20. Every other prior: background 10, classes -20.
 * - loc: (0, 0, ln4/0.2, ln4/0.2) everywhere: boxes are the prior, four times as large.
 * - mask coefficients: (4, 0, ..., 0); proto channel 0 = mean of the normalised channels (linear
 *   resize to 138x138), others 0. So a mask is "mean normalised value > 0", cropped to the box.
 */
export function yolactFixture(opts: { priors?: Float32Array } = {}): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('input', [1, 3, 550, 550]);
  const x69 = g.node('Resize', [x, '', '', g.ints([1, 3, LEVEL0, LEVEL0])], {
    mode: { s: 'nearest' },
    coordinate_transformation_mode: { s: 'half_pixel' },
    nearest_mode: { s: 'round_prefer_floor' },
  });
  const t = g.node('Transpose', [x69], { perm: { ints: [0, 2, 3, 1] } });
  const logits = g.node('Mul', [g.node('Sub', [t, g.const([2], [1])]), g.const([4], [1])]);
  const a0 = g.node('Concat', [g.fill(-2, [1, LEVEL0, LEVEL0, 1]), logits, g.fill(-20, [1, LEVEL0, LEVEL0, 77])], { axis: { i: 3 } });
  const bgRow = [10, ...new Array(80).fill(-20)];
  const other = g.fill(bgRow, [1, LEVEL0, LEVEL0, 81]);
  const axes = g.ints([3]);
  const stack = g.node('Concat', [g.node('Unsqueeze', [a0, axes]), g.node('Unsqueeze', [other, axes]), g.node('Unsqueeze', [other, axes])], { axis: { i: 3 } });
  const lvl0 = g.node('Reshape', [stack, g.ints([1, LEVEL0 * LEVEL0 * 3, 81])]);
  const rest = g.fill(bgRow, [1, N_PRIORS - LEVEL0 * LEVEL0 * 3, 81]);
  g.node('Softmax', [g.node('Concat', [lvl0, rest], { axis: { i: 1 } })], { axis: { i: 2 } }, 'conf');
  g.node('Identity', [g.fill([0, 0, LN4_OVER_VAR, LN4_OVER_VAR], [1, N_PRIORS, 4])], {}, 'loc');
  g.node('Identity', [g.fill([4, ...new Array(31).fill(0)], [1, N_PRIORS, 32])], {}, 'mask');
  const x138 = g.node('Resize', [x, '', '', g.ints([1, 3, 138, 138])], { mode: { s: 'linear' }, coordinate_transformation_mode: { s: 'half_pixel' } });
  const mean = g.node('ReduceMean', [x138], { axes: { ints: [1] }, keepdims: { i: 1 } });
  g.node('Concat', [g.node('Transpose', [mean], { perm: { ints: [0, 2, 3, 1] } }), g.fill(0, [1, 138, 138, 31])], { axis: { i: 3 } }, 'proto');
  g.output('loc', [1, N_PRIORS, 4]);
  g.output('conf', [1, N_PRIORS, 81]);
  g.output('mask', [1, N_PRIORS, 32]);
  g.output('proto', [1, 138, 138, 32]);
  if (opts.priors) {
    g.node('Identity', [g.const(opts.priors, [N_PRIORS, 4])], {}, 'priors');
    g.output('priors', [N_PRIORS, 4]);
  }
  return g.build();
}

export const COCO_LIKE_LABELS = Array.from({ length: 80 }, (_, i) => (i === 0 ? 'person' : i === 1 ? 'bicycle' : i === 2 ? 'car' : `class${i + 1}`));

export function yolactSpec(): ModelSpec {
  return parseModelSpec({
    adapter: 'yolact',
    input: { width: 550, height: 550, resize: 'stretch', mean: YOLACT_MEAN, std: YOLACT_STD },
    labels: COCO_LIKE_LABELS,
  });
}

/**
 * YOLOv8-seg-format model (64x64 letterbox input, 2 classes, 4 mask coefficients, 6 anchors,
 * prototypes 16x16). output0 is constant except that class scores are multiplied by the image's
 * maximum value (so a black image detects nothing). Prototype channel 0 is +5 in the left half
 * (columns < 8) and -5 in the right half; the other channels are 0.
 */
export const YOLO_ANCHORS = [
  // cx, cy, w, h, score0, score1, coeff0..3
  [16, 32, 16, 16, 0.9, 0.0, 1, 0, 0, 0], // A: class 0
  [32, 32, 20, 12, 0.0, 0.8, -1, 0, 0, 0], // B: class 1, straddles the prototype halves
  [17, 32, 16, 16, 0.6, 0.0, 1, 0, 0, 0], // C: class 0, IoU with A > 0.7 -> suppressed
  [16, 32, 16, 16, 0.0, 0.5, 1, 0, 0, 0], // D: same box as A, class 1 -> kept (class-aware NMS)
  [50, 10, 8, 8, 0.1, 0.0, 1, 0, 0, 0], // E: below the 0.25 threshold
  [0, 0, 0, 0, 0.0, 0.0, 0, 0, 0, 0], // F: empty
];

export function yolov8SegFixture(): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('images', [1, 3, 64, 64]);
  const A = YOLO_ANCHORS.length;
  const rows = 10;
  const D = new Float32Array(rows * A);
  YOLO_ANCHORS.forEach((v, a) => v.forEach((val, r) => (D[r * A + a] = val)));
  const isScore = Array.from({ length: rows }, (_, r) => (r === 4 || r === 5 ? 1 : 0));
  const max = g.node('Reshape', [g.node('ReduceMax', [x], { keepdims: { i: 1 } }), g.ints([1, 1, 1])]);
  const factor = g.node('Add', [g.node('Mul', [g.const(isScore, [1, rows, 1]), max]), g.const(isScore.map((s) => 1 - s), [1, rows, 1])]);
  g.node('Mul', [g.const(D, [1, rows, A]), factor], {}, 'output0');
  const P = new Float32Array(4 * 16 * 16);
  for (let y = 0; y < 16; y++) for (let xx = 0; xx < 16; xx++) P[y * 16 + xx] = xx < 8 ? 5 : -5;
  g.node('Identity', [g.const(P, [1, 4, 16, 16])], {}, 'output1');
  g.output('output0', [1, rows, A]);
  g.output('output1', [1, 4, 16, 16]);
  return g.build();
}

export function yolov8SegSpec(): ModelSpec {
  return parseModelSpec({ adapter: 'yolov8-seg', input: { width: 64, height: 64, resize: 'letterbox', scale: 1 / 255 }, labels: ['cat', 'dog'] });
}

/**
 * Classifier with a dynamic batch: logits = mean colour (scale 1/255) . W + b, for labels
 * red, green, blue, gray: W = [[4,0,0,1],[0,4,0,1],[0,0,4,1]], b = [0,0,0,-1].
 */
export function classifierFixture(): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('pixel_values', ['batch', 3, 8, 8]);
  const pooled = g.node('Flatten', [g.node('GlobalAveragePool', [x])], { axis: { i: 1 } });
  const W = [4, 0, 0, 1, 0, 4, 0, 1, 0, 0, 4, 1];
  g.node('Add', [g.node('MatMul', [pooled, g.const(W, [3, 4])]), g.const([0, 0, 0, -1], [4])], {}, 'logits');
  g.output('logits', ['batch', 4]);
  return g.build();
}

export const CLASSIFIER_W = [
  [4, 0, 0, 1],
  [0, 4, 0, 1],
  [0, 0, 4, 1],
];
export const CLASSIFIER_B = [0, 0, 0, -1];

export function classifierSpec(): ModelSpec {
  return parseModelSpec({ adapter: 'classification', input: { width: 8, height: 8, resize: 'stretch', scale: 1 / 255 }, labels: ['red', 'green', 'blue', 'gray'] });
}

export function softmax(xs: number[]): number[] {
  const m = Math.max(...xs);
  const e = xs.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/**
 * The classifier above, except that its logits are log(mean colour - 0.2): finite for the plain grey
 * a plan-time probe feeds (114/255), NaN for images darker than 0.2 on average in some channel.
 */
export function nanForDarkFixture(): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('pixel_values', ['batch', 3, 8, 8]);
  const pooled = g.node('Flatten', [g.node('GlobalAveragePool', [x])], { axis: { i: 1 } });
  const logged = g.node('Log', [g.node('Sub', [pooled, g.const([0.2], [1])])]);
  const W = [4, 0, 0, 1, 0, 4, 0, 1, 0, 0, 4, 1];
  g.node('Add', [g.node('MatMul', [logged, g.const(W, [3, 4])]), g.const([0, 0, 0, -1], [4])], {}, 'logits');
  g.output('logits', ['batch', 4]);
  return g.build();
}

/**
 * A stand-in for `yolo export model=yolov8n-seg.pt format=onnx imgsz=640` (which needs PyTorch and
 * downloads weights): the same input and output shapes, [1, 3, 640, 640] -> output0 [1, 116, 8400]
 * and output1 [1, 32, 160, 160], and one confident detection of class 0 (a box in the middle whose
 * score is the image's brightest value), so that the README's walkthrough runs as written.
 */
export function yolov8SegStandIn(): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('images', [1, 3, 640, 640]);
  const rows = 4 + 80 + 32;
  const A = 8400;
  const D = new Float32Array(rows * A);
  // Anchor 0: a box centred at (320, 320), 300 x 200, class 0; its mask coefficients positive.
  [320, 320, 300, 200].forEach((v, r) => (D[r * A] = v));
  D[4 * A] = 1;
  for (let k = 0; k < 32; k++) D[(84 + k) * A] = 1;
  const isScore = Array.from({ length: rows }, (_, r) => (r === 4 ? 1 : 0));
  const max = g.node('Reshape', [g.node('ReduceMax', [x], { keepdims: { i: 1 } }), g.ints([1, 1, 1])]);
  const factor = g.node('Add', [g.node('Mul', [g.const(isScore, [1, rows, 1]), max]), g.const(isScore.map((s) => 1 - s), [1, rows, 1])]);
  g.node('Mul', [g.const(D, [1, rows, A]), factor], {}, 'output0');
  g.node('Identity', [g.const(new Float32Array(32 * 160 * 160).fill(1), [1, 32, 160, 160])], {}, 'output1');
  g.output('output0', [1, rows, A]);
  g.output('output1', [1, 32, 160, 160]);
  return g.build();
}
