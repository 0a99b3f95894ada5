/**
 * Each adapter against its model family's reference postprocessing, computed independently in
 * Python with torch, OpenCV, shapely and pycocotools on seeded raw outputs
 * (test/fixtures/reference/generate_adapters.py; committed, so no Python runs here).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADAPTER_IMPLS } from '../../lib/model/adapters';
import { resolveRoles } from '../../lib/model/adapters/roles';
import { boxScoreFast, findContours } from '../../lib/model/adapters/textdet';
import { CATALOG } from '../../lib/model/catalog';
import { miniBox, unclip } from '../../lib/model/geometry';
import { planResize } from '../../lib/model/preprocess';
import { categoryOf, type TensorView } from '../../lib/model/postprocess';
import { parseModelSpec } from '../../lib/model/spec';
import { LakeInferError } from '../../lib/util/errors';

const FIXTURES = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'reference');

interface RefDet {
  category_id: number;
  score: number;
  box: number[];
  counts: string;
  area: number;
}
const ref = JSON.parse(readFileSync(join(FIXTURES, 'adapters.json'), 'utf8')) as {
  yolact: { width: number; height: number; P: number; C: number; K: number; ph: number; pw: number; postprocess: Record<string, number>; loc: string; conf: string; mask: string; proto: string; priors: string; detections: RefDet[] };
  yolov8seg: { width: number; height: number; input: number; nc: number; nm: number; anchors: number; protoSize: number; postprocess: Record<string, number>; output0: string; output1: string; detections: RefDet[] };
  contours: { width: number; height: number; bitmap: string; contours: { side: number; box: number[][] }[] }[];
  dbnet: { mapWidth: number; mapHeight: number; width: number; height: number; probability: string; contours: { side: number; box: number[][]; score?: number }[]; detections: { polygon: number[][]; score: number }[] }[];
};

function f32(b64: string): Float32Array {
  const b = Buffer.from(b64, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}
const view = (b64: string, dims: number[]): TensorView => ({ data: f32(b64), dims });

function compareDetections(got: { category_id: number; score: number; bbox: number[]; segmentation?: { counts: string }; area?: number }[], want: RefDet[]): void {
  assert.equal(got.length, want.length, 'number of detections');
  want.forEach((w, i) => {
    const g = got[i]!;
    assert.equal(g.category_id, w.category_id, `detection ${i}: class`);
    assert.ok(Math.abs(g.score - w.score) < 1e-6, `detection ${i}: score ${g.score} vs ${w.score}`);
    const [x1, y1, x2, y2] = w.box as [number, number, number, number];
    [x1, y1, x2 - x1, y2 - y1].forEach((v, k) => assert.ok(Math.abs(g.bbox[k]! - v) < 2e-3, `detection ${i}: bbox[${k}] ${g.bbox[k]} vs ${v}`));
    assert.equal(g.segmentation?.counts, w.counts, `detection ${i}: mask RLE`);
    assert.equal(g.area, w.area, `detection ${i}: mask area`);
  });
}

describe('adapters equal their reference postprocessing', () => {
  test('YOLACT: Detect (fast NMS, no second threshold, top-k) and postprocess (crop, upsample, > 0.5): every detection and mask', () => {
    const r = ref.yolact;
    const spec = parseModelSpec({ adapter: 'yolact', input: { width: 550, height: 550, resize: 'stretch' }, labels: ['a', 'b', 'c', 'd', 'e', 'f'], postprocess: r.postprocess });
    const outputs = {
      loc: view(r.loc, [1, r.P, 4]),
      conf: view(r.conf, [1, r.P, r.C]),
      mask: view(r.mask, [1, r.P, r.K]),
      proto: view(r.proto, [1, r.ph, r.pw, r.K]),
      priors: view(r.priors, [r.P, 4]),
    };
    const meta = { width: r.width, height: r.height, transform: planResize(r.width, r.height, spec.input) };
    const got = ADAPTER_IMPLS.yolact(outputs, 0, meta, spec, {}).detections;
    compareDetections(got, r.detections);
    // Empty masks keep an empty RLE, as pycocotools encodes an all-zero mask.
    assert.ok(r.detections.some((d) => d.area === 0), 'the fixture has an empty mask');
  });

  test('YOLOv8-seg: NMS, scale_boxes, process_mask(upsample=True) and scale_image: every detection and mask', () => {
    const r = ref.yolov8seg;
    const spec = parseModelSpec({ adapter: 'yolov8-seg', input: { width: r.input, height: r.input, resize: 'letterbox', resample: 'opencv', divisor: 255 }, postprocess: r.postprocess });
    const outputs = { detections: view(r.output0, [1, 4 + r.nc + r.nm, r.anchors]), protos: view(r.output1, [1, r.nm, r.protoSize, r.protoSize]) };
    const meta = { width: r.width, height: r.height, transform: planResize(r.width, r.height, spec.input) };
    compareDetections(ADAPTER_IMPLS['yolov8-seg'](outputs, 0, meta, spec, {}).detections, r.detections);
  });

  for (const [i, r] of ref.dbnet.entries()) {
    test(`DBNet case ${i}: contours, mini boxes and box scores exactly as OpenCV; final quads within the unclip rounding`, () => {
      const pred = f32(r.probability);
      const bitmap = Uint8Array.from(pred, (v) => (v > 0.3 ? 1 : 0));
      const contours = findContours(bitmap, r.mapWidth, r.mapHeight);
      assert.equal(contours.length, r.contours.length, 'cv2.findContours(RETR_LIST) finds as many contours, holes included');
      contours.forEach((c, k) => {
        const want = r.contours[k]!;
        const mini = miniBox(c.points);
        // get_mini_boxes of cv2.boxPoints: the same float32 corners in the same order, the same shorter side.
        assert.equal(mini.side, want.side, `contour ${k}: shorter side`);
        assert.deepEqual(mini.box, want.box, `contour ${k}: corners`);
        if (want.score !== undefined) assert.ok(Math.abs(boxScoreFast(pred, r.mapWidth, r.mapHeight, mini.box) - want.score) < 1e-6, `contour ${k}: box_score_fast`);
      });
      const spec = parseModelSpec({ adapter: 'text-detection', input: { width: 960, height: 960, resize: 'fit32', resample: 'opencv' }, labels: ['text'] });
      const meta = { width: r.width, height: r.height, transform: { scaleX: r.mapWidth / r.width, scaleY: r.mapHeight / r.height, padX: 0, padY: 0, inW: r.mapWidth, inH: r.mapHeight } };
      const got = ADAPTER_IMPLS['text-detection']({ probability: view(r.probability, [1, 1, r.mapHeight, r.mapWidth]) }, 0, meta, spec, {}).detections;
      assert.equal(got.length, r.detections.length, 'number of text boxes');
      r.detections.forEach((w, k) => {
        const g = got[k]!;
        assert.ok(Math.abs(g.score - w.score) < 1e-6, `box ${k}: score`);
        // The reference's unclip here is shapely's exact round buffer; Clipper (PaddleOCR's) rounds its
        // vertices to integers: corners agree within one map pixel, scaled to the image.
        const tol = Math.ceil(Math.max(r.width / r.mapWidth, r.height / r.mapHeight));
        g.polygon!.forEach((p, j) => p.forEach((v, a) => assert.ok(Math.abs(v - w.polygon[j]![a]!) <= tol, `box ${k} corner ${j}: ${JSON.stringify(g.polygon)} vs ${JSON.stringify(w.polygon)}`)));
        const xs = g.polygon!.map((p) => p[0]);
        const ys = g.polygon!.map((p) => p[1]);
        assert.deepEqual(g.bbox, [Math.min(...xs), Math.min(...ys), Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)], 'bbox is the hull');
      });
    });
  }
});

test('findContours on 12 random bitmaps (holes, islands in holes, single pixels, diagonal touches, the image edge): as OpenCV, in its order, and the mini boxes of its contours bit for bit', () => {
  let total = 0;
  for (const [i, c] of ref.contours.entries()) {
    const bitmap = new Uint8Array(Buffer.from(c.bitmap, 'base64'));
    const got = findContours(bitmap, c.width, c.height);
    assert.equal(got.length, c.contours.length, `case ${i}: number of contours`);
    got.forEach((g, k) => {
      total++;
      const mini = miniBox(g.points);
      const want = c.contours[k]!;
      // Equal-area ties included: the rotating calipers keep the rectangle OpenCV's float32 rounding keeps.
      assert.equal(mini.side, want.side, `case ${i} contour ${k}: side`);
      assert.deepEqual(mini.box, want.box, `case ${i} contour ${k}: corners`);
    });
  }
  assert.ok(total > 40, `${total} contours`);
});

describe('output roles by shape (numeric names from a plain torch.onnx.export)', () => {
  test('yolact: loc, conf, mask, proto and priors told apart by shape, whatever their order', () => {
    const shapes = { '811': [1, 19248, 81], '765': [1, 19248, 4], '900': [19248, 4], '812': [1, 138, 138, 32], '813': [1, 19248, 32] };
    assert.deepEqual(resolveRoles('yolact', { outputs: {} }, shapes), { loc: '765', conf: '811', mask: '813', proto: '812', priors: '900' });
    // Without priors, and with a symbolic batch dimension.
    assert.deepEqual(resolveRoles('yolact', { outputs: {} }, { a: ['N', 19248, 32], b: ['N', 138, 138, 32], c: ['N', 19248, 81], d: ['N', 19248, 4] }), { loc: 'd', conf: 'c', mask: 'a', proto: 'b' });
  });

  test('ambiguous shapes: a clear error naming every output and how to map them', () => {
    // 32 classes and 32 mask coefficients: conf and mask have the same shape.
    const shapes = { x: [1, 100, 4], y: [1, 100, 32], z: [1, 100, 32], p: [1, 20, 20, 32] };
    assert.throws(
      () => resolveRoles('yolact', { outputs: {} }, shapes),
      (e: unknown) => e instanceof LakeInferError && e.code === 'ModelInvalid' && e.target === 'outputs' && /'y' \[1, 100, 32\]/.test(e.message) && /model\.json "outputs"/.test(e.message),
    );
    // model.json settles it.
    assert.deepEqual(resolveRoles('yolact', { outputs: { conf: 'z', mask: 'y' } }, shapes), { conf: 'z', mask: 'y', loc: 'x', proto: 'p' });
    // A mapping to an output the model lacks, or shapes that cannot fit, fail at once.
    assert.throws(() => resolveRoles('yolact', { outputs: { conf: 'nope' } }, shapes), /does not output/);
    assert.throws(() => resolveRoles('yolov8-seg', { outputs: {} }, { a: [1, 116, 8400] }), /finds no outputs/);
    assert.throws(() => resolveRoles('classification', { outputs: {} }, { a: [1, 10], b: [1, 10] }), /cannot tell/);
  });

  test('yolov8-seg and DBNet by shape; a symbolic dimension defers only a genuine choice to run time', () => {
    assert.deepEqual(resolveRoles('yolov8-seg', { outputs: {} }, { '1': [1, 32, 160, 160], '0': [1, 116, 8400] }), { detections: '0', protos: '1' });
    assert.deepEqual(resolveRoles('text-detection', { outputs: {} }, { 'sigmoid_0.tmp_0': ['N', 1, 'H', 'W'] }), { probability: 'sigmoid_0.tmp_0' });
    // Two rank-3 outputs whose last dims are unknown: loc and mask cannot be told apart until run time.
    assert.equal(resolveRoles('yolact', { outputs: {} }, { a: [1, 'n', 'k'], b: [1, 'n', 'j'], c: [1, 'n', 81], p: [1, 138, 138, 32] }), undefined);
  });
});

describe('COCO category ids', () => {
  // The 80 categories of COCO 2017 (instances_val2017.json "categories"): id and name.
  const OFFICIAL: [number, string][] = [
    [1, 'person'], [2, 'bicycle'], [3, 'car'], [4, 'motorcycle'], [5, 'airplane'], [6, 'bus'], [7, 'train'], [8, 'truck'], [9, 'boat'],
    [10, 'traffic light'], [11, 'fire hydrant'], [13, 'stop sign'], [14, 'parking meter'], [15, 'bench'], [16, 'bird'], [17, 'cat'], [18, 'dog'],
    [19, 'horse'], [20, 'sheep'], [21, 'cow'], [22, 'elephant'], [23, 'bear'], [24, 'zebra'], [25, 'giraffe'], [27, 'backpack'], [28, 'umbrella'],
    [31, 'handbag'], [32, 'tie'], [33, 'suitcase'], [34, 'frisbee'], [35, 'skis'], [36, 'snowboard'], [37, 'sports ball'], [38, 'kite'],
    [39, 'baseball bat'], [40, 'baseball glove'], [41, 'skateboard'], [42, 'surfboard'], [43, 'tennis racket'], [44, 'bottle'], [46, 'wine glass'],
    [47, 'cup'], [48, 'fork'], [49, 'knife'], [50, 'spoon'], [51, 'bowl'], [52, 'banana'], [53, 'apple'], [54, 'sandwich'], [55, 'orange'],
    [56, 'broccoli'], [57, 'carrot'], [58, 'hot dog'], [59, 'pizza'], [60, 'donut'], [61, 'cake'], [62, 'chair'], [63, 'couch'], [64, 'potted plant'],
    [65, 'bed'], [67, 'dining table'], [70, 'toilet'], [72, 'tv'], [73, 'laptop'], [74, 'mouse'], [75, 'remote'], [76, 'keyboard'], [77, 'cell phone'],
    [78, 'microwave'], [79, 'oven'], [80, 'toaster'], [81, 'sink'], [82, 'refrigerator'], [84, 'book'], [85, 'clock'], [86, 'vase'], [87, 'scissors'],
    [88, 'teddy bear'], [89, 'hair drier'], [90, 'toothbrush'],
  ];

  test('the catalog COCO models map every label to its official id', () => {
    for (const name of ['yolact-resnet50', 'yolov8-seg']) {
      const spec = parseModelSpec(CATALOG[name]);
      assert.deepEqual(spec.labels.map((l, i) => [spec.categoryIds![i], l]), OFFICIAL, name);
    }
  });

  test('detections carry the dataset id: yolact class 12 (stop sign) is COCO 13, yolov8 class 79 (toothbrush) is 90', () => {
    const yolact = parseModelSpec(CATALOG['yolact-resnet50']);
    assert.equal(categoryOf(yolact, 12 - 1, 12), 13);
    assert.equal(categoryOf(parseModelSpec(CATALOG['yolov8-seg']), 79, 79), 90);
    // Without categoryIds: the adapter's own numbering.
    assert.equal(categoryOf({}, 11, 12), 12);
    assert.throws(() => parseModelSpec({ ...CATALOG['yolact-resnet50'], categoryIds: [1, 2, 3] }), (e: unknown) => e instanceof LakeInferError && e.target === 'categoryIds');
  });
});

test('unclip: Clipper grows a 40 x 10 box by area * 1.5 / perimeter = 6 on every side', () => {
  const grown = unclip([[0, 0], [40, 0], [40, 10], [0, 10]], 1.5);
  const mini = miniBox(grown);
  assert.deepEqual(mini.box, [[-6, -6], [46, -6], [46, 16], [-6, 16]]);
  assert.equal(mini.side, 22);
  // Round joins: every vertex is an integer within the grown box, some strictly inside its corners.
  assert.ok(grown.every(([x, y]) => Number.isInteger(x) && Number.isInteger(y) && x >= -6 && x <= 46 && y >= -6 && y <= 16));
  assert.ok(grown.length > 8, `${grown.length} vertices: corners are arcs`);
});
