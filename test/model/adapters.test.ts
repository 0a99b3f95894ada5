import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { InferenceEngine } from '../../lib/model/engine';
import { analyzeImage } from '../../lib/model';
import { DEFAULT_LIMITS } from '../../lib/model/preprocess';
import { decodeRle } from '../../lib/model/rle';
import { LakeInferError } from '../../lib/util/errors';
import { Canvas, tempFile } from '../helpers/images';
import { CLASSIFIER_B, CLASSIFIER_W, classifierFixture, classifierSpec, softmax, yolov8SegFixture, yolov8SegSpec } from '../helpers/models';

function close(actual: number, expected: number, tol: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: expected ${expected} ± ${tol}, got ${actual}`);
}

describe('yolov8-seg adapter', () => {
  let engine: InferenceEngine;
  const spec = yolov8SegSpec();
  before(async () => {
    engine = await InferenceEngine.create(await tempFile('yolo.onnx', yolov8SegFixture()), spec, { workers: 1, intraOpThreads: 1, batchSize: 1 });
  });
  after(() => engine?.close());

  test('letterbox undone exactly; class-aware NMS; threshold', async () => {
    // 128x64 -> scale 0.5, 64x32 placed at padY = 16 in the 64x64 input.
    const img = await new Canvas(128, 64, [255, 255, 255]).png();
    const r = await analyzeImage(img, { spec, engine }, {}, DEFAULT_LIMITS);
    const got = r.detections.map((d) => ({ c: d.category_id, s: d.score, b: d.bbox, l: d.label }));
    assert.deepEqual(
      got.map((g) => [g.c, g.l, g.s]),
      [
        [0, 'cat', 0.9], // A
        [1, 'dog', 0.8], // B
        [1, 'dog', 0.5], // D: same box as A but another class, kept; C suppressed by A (IoU > 0.7); E below 0.25
      ],
    );
    // A: cx 16, cy 32, 16x16 in input -> ((8 - 0) / 0.5, (24 - 16) / 0.5) = (16, 16), 32x32.
    assert.deepEqual(got[0]!.b, [16, 16, 32, 32]);
    // B: cx 32, cy 32, 20x12 -> x (22 / 0.5) = 44, y (26 - 16) / 0.5 = 20, 40x24.
    assert.deepEqual(got[1]!.b, [44, 20, 40, 24]);
    assert.deepEqual(got[2]!.b, [16, 16, 32, 32]);
  });

  test('masks: process_mask (crop at prototype resolution, upsample, > 0) then scale_image, worked out by hand', async () => {
    // Prototypes are 16x16 for a 64x64 input (4 input px per cell); the image is 128x64, letterboxed
    // to 64x32 at padY 16, so scale_image cuts rows 16..47 and enlarges 2x with cv2.resize.
    const img = await new Canvas(128, 64, [255, 255, 255]).png();
    const r = await analyzeImage(img, { spec, engine }, {}, DEFAULT_LIMITS);
    const a = decodeRle(r.detections[0]!.segmentation!);
    const b = decodeRle(r.detections[1]!.segmentation!);
    const at = (m: Uint8Array, x: number, y: number): number => m[y * 128 + x]!;
    const extent = (m: Uint8Array): [number, number, number, number] => {
      let x0 = 128, y0 = 64, x1 = -1, y1 = -1;
      for (let y = 0; y < 64; y++) for (let x = 0; x < 128; x++) if (at(m, x, y)) [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
      return [x0, y0, x1, y1];
    };
    // A: box [8, 24, 24, 40] in the input -> cells x in [2, 6), y in [6, 10) keep logit +5, the others 0.
    // Bilinear upsampling is > 0 wherever a kept cell has weight: input x 6..25, y 22..41 (20 x 20).
    // scale_image: rows 6..25 of the cut image, enlarged 2x, round to 1 where the weight is 3/4: 12..51.
    assert.deepEqual(extent(a), [12, 12, 51, 51]);
    assert.equal(r.detections[0]!.area, 40 * 40);
    // B (coefficient -1): box [22, 26, 42, 38] -> cells x 6..10, y 7..9; cells x < 8 are -5, x >= 8 +5.
    // > 0 from input x 32 (where -5 and +5 weigh 3/8 : 5/8) to 45 (cell 10's reach), y 26..41 (16 rows):
    // in the image x 64..91 and y 20..51. The mask passes the box's right edge (84) by 7 px, as ultralytics' does.
    assert.deepEqual(extent(b), [64, 20, 91, 51]);
    assert.equal(r.detections[1]!.area, 28 * 32);
    assert.equal(at(b, 50, 30), 0, 'left half suppressed by the negative prototypes');
    assert.equal(at(b, 90, 30), 1, 'within one prototype cell of the box');
    assert.equal(at(b, 93, 30), 0, 'beyond the reach of the last kept cell');
  });

  test('scores are driven by the input: black detects nothing, the grey padding alone scales them', async () => {
    // Square: no padding, the input's maximum is 0.
    const black = await analyzeImage(await new Canvas(100, 100).png(), { spec, engine }, {}, DEFAULT_LIMITS);
    assert.deepEqual(black.detections, []);
    // Wide and black: only the 114/255 padding is bright, so A scores 0.9 * 114 / 255.
    const padded = await analyzeImage(await new Canvas(128, 64).png(), { spec, engine }, {}, DEFAULT_LIMITS);
    close(padded.detections[0]!.score, 0.9 * (114 / 255), 1e-6, 'A scaled by the padding value');
  });
});

describe('classification adapter and batching', () => {
  let engine: InferenceEngine;
  const spec = classifierSpec();
  const colours: Record<string, [number, number, number]> = { red: [255, 0, 0], green: [0, 255, 0], blue: [0, 0, 255], gray: [128, 128, 128] };

  function expected(rgb: [number, number, number]): number[] {
    const m = rgb.map((v) => v / 255);
    const logits = CLASSIFIER_B.map((b, k) => b + m.reduce((a, v, c) => a + v * CLASSIFIER_W[c]![k]!, 0));
    return softmax(logits);
  }

  before(async () => {
    engine = await InferenceEngine.create(await tempFile('cls.onnx', classifierFixture()), spec, { workers: 1, intraOpThreads: 1, batchSize: 4 });
  });
  after(() => engine?.close());

  test('softmax top-k with labels, exact', async () => {
    const r = await analyzeImage(await new Canvas(8, 8, colours.red).png(), { spec, engine }, { topK: 4 }, DEFAULT_LIMITS);
    const p = expected(colours.red!);
    assert.equal(r.detections.length, 0);
    assert.equal(r.classes!.length, 4);
    assert.equal(r.classes![0]!.label, 'red');
    for (const c of r.classes!) close(c.score, p[c.category_id]!, 1e-6, c.label);
    const r2 = await analyzeImage(await new Canvas(16, 16, colours.gray).png(), { spec, engine }, { topK: 2 }, DEFAULT_LIMITS);
    assert.equal(r2.classes!.length, 2);
    close(r2.classes![0]!.score, Math.max(...expected(colours.gray!)), 1e-6, 'gray top-1');
  });

  test('a backlog runs in batches, and each image gets its own result', async () => {
    assert.equal(engine.maxBatch, 4, 'dynamic batch dimension: configured batch size');
    const names = Object.keys(colours);
    const imgs = await Promise.all(Array.from({ length: 16 }, (_, i) => new Canvas(8, 8, colours[names[i % 4]!]).png()));
    const before = { ...engine.stats };
    const results = await Promise.all(imgs.map((im) => analyzeImage(im, { spec, engine }, { topK: 1 }, DEFAULT_LIMITS)));
    results.forEach((r, i) => {
      const p = expected(colours[names[i % 4]!]!);
      const best = p.indexOf(Math.max(...p));
      assert.equal(r.classes![0]!.category_id, best, `image ${i}`);
      close(r.classes![0]!.score, p[best]!, 1e-6, `image ${i} score`);
    });
    assert.ok(engine.stats.maxBatchSeen > 1, `expected batches of more than one image, saw at most ${engine.stats.maxBatchSeen}`);
    assert.ok(engine.stats.batches - before.batches < 16, 'fewer runs than images');
    assert.ok(results.some((r) => r.timings.batch > 1));
  });

  test('fixed input size mismatch is refused at load, naming the field', async () => {
    const bad = { ...spec, input: { ...spec.input } };
    const yolo = await tempFile('yolo2.onnx', yolov8SegFixture());
    await assert.rejects(
      InferenceEngine.create(yolo, { ...yolov8SegSpec(), input: { ...yolov8SegSpec().input, width: 640, height: 640 } }, { workers: 1, intraOpThreads: 1, batchSize: 1 }),
      (e: unknown) => e instanceof LakeInferError && e.code === 'ModelInvalid' && /input.height is 640 but the model expects 64/.test(e.message),
    );
    await assert.rejects(
      InferenceEngine.create(await tempFile('junk.onnx', Buffer.from('not a model')), bad, { workers: 1, intraOpThreads: 1, batchSize: 1 }),
      (e: unknown) => e instanceof LakeInferError && e.code === 'ModelInvalid' && /could not load/.test(e.message),
    );
  });
});
