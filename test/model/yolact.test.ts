import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { InferenceEngine } from '../../lib/model/engine';
import { analyzeImage } from '../../lib/model';
import { yolactPriors } from '../../lib/model/adapters/yolact';
import { DEFAULT_LIMITS } from '../../lib/model/preprocess';
import type { Detection } from '../../lib/model/postprocess';
import { decodeRle, rleArea } from '../../lib/model/rle';
import { Canvas, maskIou, tempFile } from '../helpers/images';
import { COCO_LIKE_LABELS, LEVEL0, N_PRIORS, YOLACT_MEAN, YOLACT_STD, softmax, yolactFixture, yolactSpec } from '../helpers/models';

const W = 1100;
const H = 825; // stretched to 550x550: 2x horizontally, 1.5x vertically
const SX = W / 550;
const SY = H / 550;

/** Pixel (in 550 space) that ONNX Resize nearest/half_pixel/round_prefer_floor samples for cell j. */
function samplePixel(j: number): number {
  const v = ((j + 0.5) * 550) / LEVEL0 - 0.5;
  return v - Math.floor(v) === 0.5 ? Math.floor(v) : Math.round(v);
}

interface Obj {
  i: number;
  j: number;
  cls: 1 | 2 | 3;
  r: number;
}
const MARKER: Record<number, [number, number, number]> = { 1: [255, 128, 128], 2: [128, 255, 128], 3: [128, 128, 255] };
const DISC: [number, number, number] = [128, 128, 128];
const OBJECTS: Obj[] = [
  { i: 20, j: 30, cls: 1, r: 40 }, // disc inside its box: mask = disc
  { i: 50, j: 15, cls: 2, r: 130 }, // disc larger than its box: mask = box (cropped)
  { i: 45, j: 55, cls: 3, r: 60 },
];

function centre(o: Obj): { cx: number; cy: number } {
  return { cx: (samplePixel(o.j) + 0.5) * SX, cy: (samplePixel(o.i) + 0.5) * SY };
}

function scene(): Canvas {
  const c = new Canvas(W, H);
  for (const o of OBJECTS) {
    const { cx, cy } = centre(o);
    c.disc(cx, cy, o.r, DISC);
  }
  for (const o of OBJECTS) {
    const sx = samplePixel(o.j);
    const sy = samplePixel(o.i);
    c.rect((sx - 4) * SX, (sy - 4) * SY, (sx + 5) * SX, (sy + 5) * SY, MARKER[o.cls]!);
  }
  return c;
}

/** The box the fixture predicts for a level-0 cell: the prior (24/550 square) grown 4x, in pixels. */
function expectedBox(o: Obj, shiftX = 0): [number, number, number, number] {
  const cx = (o.j + 0.5) / LEVEL0 + shiftX;
  const cy = (o.i + 0.5) / LEVEL0;
  const half = 48 / 550;
  const x1 = Math.max(0, (cx - half) * W);
  const y1 = Math.max(0, (cy - half) * H);
  const x2 = Math.min(W, (cx + half) * W);
  const y2 = Math.min(H, (cy + half) * H);
  return [x1, y1, x2 - x1, y2 - y1];
}

function expectedScore(o: Obj): number {
  const px = MARKER[o.cls]!;
  const norm = px.map((v, c) => (v - YOLACT_MEAN[c]!) / YOLACT_STD[c]!);
  const logits = [-2, ...norm.map((v) => 4 * (v - 2)), ...new Array(77).fill(-20)];
  return softmax(logits)[o.cls]!;
}

function expectedMask(o: Obj, box: number[]): Uint8Array {
  const { cx, cy } = centre(o);
  const m = new Uint8Array(W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const inDisc = (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= o.r * o.r;
      const inBox = x + 0.5 >= box[0]! && x + 0.5 < box[0]! + box[2]! && y + 0.5 >= box[1]! && y + 0.5 < box[1]! + box[3]!;
      if (inDisc && inBox) m[y * W + x] = 1;
    }
  }
  return m;
}

function close(actual: number, expected: number, tol: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: expected ${expected} ± ${tol}, got ${actual}`);
}

/** The best detection of each class (detections come best first). */
function byClass(dets: Detection[]): Map<number, Detection> {
  const m = new Map<number, Detection>();
  for (const d of dets) if (!m.has(d.category_id)) m.set(d.category_id, d);
  return m;
}

describe('YOLACT adapter on a fixture model driven by the image', () => {
  let engine: InferenceEngine;
  let shifted: InferenceEngine;
  let png: Buffer;
  const spec = yolactSpec();
  const shift = 0.1;

  before(async () => {
    engine = await InferenceEngine.create(await tempFile('yolact.onnx', yolactFixture()), spec, { workers: 1, intraOpThreads: 1, batchSize: 1 });
    const moved = Float32Array.from(yolactPriors());
    for (let p = 0; p < N_PRIORS; p++) moved[4 * p] = moved[4 * p]! + shift;
    shifted = await InferenceEngine.create(await tempFile('yolact-priors.onnx', yolactFixture({ priors: moved })), spec, { workers: 1, intraOpThreads: 1, batchSize: 1 });
    png = await scene().png();
  });
  after(async () => {
    await engine?.close();
    await shifted?.close();
  });

  test('priors: 19248 in level, row, column, ratio order with square anchors', () => {
    const p = yolactPriors();
    assert.equal(p.length, N_PRIORS * 4);
    assert.deepEqual(Array.from(p.subarray(0, 12)), Array.from(Float32Array.from([0.5 / 69, 0.5 / 69, 24 / 550, 24 / 550, 0.5 / 69, 0.5 / 69, (24 * Math.SQRT1_2) / 550, (24 * Math.SQRT1_2) / 550, 0.5 / 69, 0.5 / 69, (24 * Math.SQRT2) / 550, (24 * Math.SQRT2) / 550])));
    const k = (5 * 69 + 7) * 3; // level 0, row 5, column 7, ratio 1
    assert.deepEqual(Array.from(p.subarray(4 * k, 4 * k + 2)), Array.from(Float32Array.from([7.5 / 69, 5.5 / 69])));
    const l1 = 3 * 69 * 69; // first prior of level 1
    assert.deepEqual(Array.from(p.subarray(4 * l1, 4 * l1 + 4)), Array.from(Float32Array.from([0.5 / 35, 0.5 / 35, 48 / 550, 48 / 550])));
    const last = N_PRIORS - 1; // level 4, row 4, column 4, ratio 2
    assert.deepEqual(Array.from(p.subarray(4 * last, 4 * last + 4)), Array.from(Float32Array.from([4.5 / 5, 4.5 / 5, (384 * Math.SQRT2) / 550, (384 * Math.SQRT2) / 550])));
  });

  test('finds the three objects first: classes, boxes, scores; the reference selection keeps the other NMS survivors after them', async () => {
    const r = await analyzeImage(png, { spec, engine }, {}, DEFAULT_LIMITS);
    assert.equal(r.width, W);
    assert.equal(r.height, H);
    // dbolya/yolact's fast_nms applies no second threshold: per class, every candidate that survives
    // NMS is kept, then the best max_num_detections (100) across classes.
    assert.equal(r.detections.length, 100);
    assert.deepEqual(new Set(r.detections.slice(0, 3).map((d) => d.category_id)), new Set(OBJECTS.map((o) => o.cls)));
    assert.ok(r.detections.slice(3).every((d) => d.score <= 0.05), 'the rest are survivors at or below confThreshold');
    // With the second threshold (postprocess.secondThreshold), exactly the three objects.
    const strictSpec = { ...spec, postprocess: { ...spec.postprocess, secondThreshold: true } };
    const strictEngine = await InferenceEngine.create(await tempFile('yolact-strict.onnx', yolactFixture()), strictSpec, { workers: 1, intraOpThreads: 1, batchSize: 1 });
    try {
      const strict = await analyzeImage(png, { spec: strictSpec, engine: strictEngine }, {}, DEFAULT_LIMITS);
      assert.equal(strict.detections.length, 3, JSON.stringify(strict.detections.map((d) => [d.category_id, d.score])));
    } finally {
      await strictEngine.close();
    }
    const got = byClass(r.detections);
    for (const o of OBJECTS) {
      const d = got.get(o.cls);
      assert.ok(d, `class ${o.cls} detected`);
      assert.equal(d.label, COCO_LIKE_LABELS[o.cls - 1]);
      const eb = expectedBox(o);
      d.bbox.forEach((v, k) => close(v, eb[k]!, 0.002, `class ${o.cls} bbox[${k}]`));
      close(d.score, expectedScore(o), 1e-5, `class ${o.cls} score`);
    }
    // Sorted by score, best first.
    assert.deepEqual(r.detections.map((d) => d.score), [...r.detections.map((d) => d.score)].sort((a, b) => b - a));
  });

  test('masks: the disc, cropped to the box, at the original resolution', async () => {
    const r = await analyzeImage(png, { spec, engine }, {}, DEFAULT_LIMITS);
    for (const o of OBJECTS) {
      const d = byClass(r.detections).get(o.cls)!;
      assert.ok(d.segmentation, `class ${o.cls} has a mask`);
      assert.deepEqual(d.segmentation.size, [H, W]);
      const mask = decodeRle(d.segmentation);
      assert.equal(rleArea(d.segmentation), d.area);
      // YOLACT crops at prototype resolution with one cell of padding (crop(..., padding=1)).
      const b = expectedBox(o);
      const cw = W / 138, ch = H / 138;
      const exp = expectedMask(o, [b[0] - cw, b[1] - ch, b[2] + 2 * cw, b[3] + 2 * ch]);
      const iou = maskIou(mask, exp);
      assert.ok(iou > 0.85, `class ${o.cls} mask IoU ${iou.toFixed(3)}`);
      const { cx, cy } = centre(o);
      assert.equal(mask[Math.floor(cy) * W + Math.floor(cx)], 1, 'centre is in the mask');
      // Well outside the disc (and inside the box where possible): not in the mask.
      const outside = Math.floor(cy) * W + Math.min(W - 1, Math.floor(cx + o.r + 16));
      if (o.r + 16 < expectedBox(o)[2] / 2) assert.equal(mask[outside], 0, 'outside the disc');
    }
    // The big disc reaches 34 px beyond its box on each side: cropping removes it.
    const big = OBJECTS[1]!;
    const d = byClass(r.detections).get(big.cls)!;
    const mask = decodeRle(d.segmentation!);
    const { cy } = centre(big);
    const box = expectedBox(big);
    assert.equal(mask[Math.floor(cy) * W + Math.floor(box[0] + box[2] + 20)], 0, 'right of the box, inside the disc: cropped');
    assert.equal(mask[Math.floor(cy) * W + Math.floor(box[0] - 20)], 0, 'left of the box, inside the disc: cropped');
    assert.equal(mask[Math.floor(cy) * W + Math.floor(box[0] + 10)], 1, 'inside the box and the disc');
    const padded = (box[2] + (2 * W) / 138) * (box[3] + (2 * H) / 138);
    close(d.area!, padded, padded * 0.05, 'cropped mask fills its box (with one prototype cell of padding)');
  });

  test('priors output, when the model has one, is used instead of generated priors', async () => {
    const r = await analyzeImage(png, { spec, engine: shifted }, {}, DEFAULT_LIMITS);
    const got = byClass(r.detections);
    for (const o of OBJECTS) {
      const eb = expectedBox(o, shift);
      got.get(o.cls)!.bbox.forEach((v, k) => close(v, eb[k]!, 0.002, `shifted class ${o.cls} bbox[${k}]`));
    }
  });

  test('job params: scoreThreshold, topK and masks off', async () => {
    const scores = OBJECTS.map(expectedScore).sort((a, b) => b - a);
    const r = await analyzeImage(png, { spec, engine }, { scoreThreshold: (scores[1]! + scores[2]!) / 2 }, DEFAULT_LIMITS);
    assert.equal(r.detections.length, 2);
    const r2 = await analyzeImage(png, { spec, engine }, { topK: 1, masks: false }, DEFAULT_LIMITS);
    assert.equal(r2.detections.length, 1);
    close(r2.detections[0]!.score, scores[0]!, 1e-5, 'top-1 score');
    assert.equal(r2.detections[0]!.segmentation, undefined);
  });

  test('EXIF orientation: a JPEG stored rotated with orientation 6 gives the upright results', async () => {
    const upright = scene();
    // Store the image turned a quarter counter-clockwise; orientation 6 says "turn 90 clockwise to view".
    const stored = await upright.sharp().rotate(-90).jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).withMetadata({ orientation: 6 }).toBuffer();
    const meta = await sharp(stored).metadata();
    assert.equal(meta.width, H);
    assert.equal(meta.orientation, 6);
    const r = await analyzeImage(stored, { spec, engine }, {}, DEFAULT_LIMITS);
    assert.equal(r.width, W);
    assert.equal(r.height, H);
    const got = byClass(r.detections);
    assert.equal(r.detections.filter((d) => d.score > 0.05).length, 3);
    for (const o of OBJECTS) {
      const eb = expectedBox(o);
      got.get(o.cls)!.bbox.forEach((v, k) => close(v, eb[k]!, 0.002, `rotated class ${o.cls} bbox[${k}]`));
      close(got.get(o.cls)!.score, expectedScore(o), 0.02, `rotated class ${o.cls} score (JPEG)`);
    }
  });
});
