/**
 * PaddleOCR's text detector and text direction classifier end to end on real images, against
 * PaddleOCR's own code (DetResizeForTest / NormalizeImage / DBPostProcess / TextDetector's filter;
 * TextClassifier.resize_norm_img / ClsPostProcess) run on the same files with onnxruntime
 * (test/fixtures/reference/generate_ppocr_det.py and generate_ppocr_cls.py; committed). The model
 * input and the raw output are compared bit for bit first (the same bits in, the same bits out of
 * onnxruntime-node), then what lakeinfer makes of them: every quadrilateral and its score, every
 * class and probability.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { analyzeImage, InferenceEngine } from '../../lib/model';
import { bundledTextClassifierPath, bundledTextDetectorPath, CATALOG } from '../../lib/model/catalog';
import { DEFAULT_LIMITS, prepareImage } from '../../lib/model/preprocess';
import { parseModelSpec, type ModelSpec } from '../../lib/model/spec';

const FIXTURES = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'reference');
const sha = (a: Float32Array): string => createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');

async function session(path: string): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(path, { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
}

describe('PP-OCRv4 detector: equal to PaddleOCR on 22 real images', () => {
  const ref = JSON.parse(readFileSync(join(FIXTURES, 'ppocr_det.json'), 'utf8')) as { paddleocr: string; opencv: string; images: Record<string, { width: number; height: number; mapSha256: string; detections: { polygon: number[][]; score: number }[] }> };
  const spec: ModelSpec = parseModelSpec(CATALOG['ppocr-v4-det']);
  let engine: InferenceEngine;
  let raw: ort.InferenceSession;
  before(async () => {
    engine = await InferenceEngine.create(bundledTextDetectorPath(), spec, { workers: 1, intraOpThreads: 1, batchSize: 1 });
    raw = await session(bundledTextDetectorPath());
  });
  after(async () => {
    await engine?.close();
    await raw?.release();
  });

  test(`the same probability map, then the same boxes and box scores (PaddleOCR ${ref.paddleocr}, OpenCV ${ref.opencv})`, async () => {
    let boxes = 0;
    let fractional = 0;
    for (const [name, want] of Object.entries(ref.images)) {
      const data = readFileSync(join(FIXTURES, name));
      const prepared = await prepareImage(data, spec.input, DEFAULT_LIMITS);
      const t = prepared.transform;
      const out = await raw.run({ [raw.inputNames[0]!]: new ort.Tensor('float32', prepared.tensor, [1, 3, t.inH, t.inW]) });
      assert.equal(sha(out[raw.outputNames[0]!]!.data as Float32Array), want.mapSha256, `${name}: the probability map PaddleOCR's preprocessing and onnxruntime give`);
      const r = await analyzeImage(data, { spec, engine }, {}, DEFAULT_LIMITS);
      const got = r.detections.map((d) => ({ polygon: d.polygon!, score: d.score }));
      assert.equal(got.length, want.detections.length, `${name}: ${JSON.stringify(got.map((g) => g.polygon))} vs ${JSON.stringify(want.detections.map((w) => w.polygon))}`);
      // PaddleOCR's order: as its contours come; the same order here.
      got.forEach((g, i) => {
        const w = want.detections[i]!;
        assert.deepEqual(g.polygon, w.polygon, `${name} box ${i}: corners`);
        // Results carry scores to 6 decimals.
        assert.ok(Math.abs(g.score - w.score) <= 5e-7 + 1e-12, `${name} box ${i}: score ${g.score} vs ${w.score}`);
        boxes++;
        if (Math.abs(w.score * 255 - Math.round(w.score * 255)) > 1e-6) fractional++;
      });
    }
    assert.ok(boxes >= 40, `${boxes} boxes compared`);
    assert.ok(fractional > 0);
  });
});

describe('PP-OCR text direction classifier: equal to PaddleOCR on pages and text lines', () => {
  const ref = JSON.parse(readFileSync(join(FIXTURES, 'ppocr_cls.json'), 'utf8')) as { paddleocr: string; images: Record<string, { width: number; height: number; inputSha256: string; probs: number[]; label: string; score: number }> };
  const spec: ModelSpec = parseModelSpec(CATALOG['ppocr-cls']);
  let engine: InferenceEngine;
  let raw: ort.InferenceSession;
  before(async () => {
    engine = await InferenceEngine.create(bundledTextClassifierPath(), spec, { workers: 1, intraOpThreads: 1, batchSize: 1 });
    raw = await session(bundledTextClassifierPath());
  });
  after(async () => {
    await engine?.close();
    await raw?.release();
  });

  test(`resize_norm_img's input bit for bit, the same probabilities, ClsPostProcess's label (PaddleOCR ${ref.paddleocr})`, async () => {
    const labels = new Set<string>();
    for (const [name, want] of Object.entries(ref.images)) {
      const data = readFileSync(join(FIXTURES, 'ppocr', name));
      const prepared = await prepareImage(data, spec.input, DEFAULT_LIMITS);
      assert.deepEqual([prepared.transform.inW, prepared.transform.inH], [192, 48]);
      assert.equal(sha(prepared.tensor), want.inputSha256, `${name}: the input tensor resize_norm_img makes`);
      const out = await raw.run({ [raw.inputNames[0]!]: new ort.Tensor('float32', prepared.tensor, [1, 3, 48, 192]) });
      assert.deepEqual([...(out[raw.outputNames[0]!]!.data as Float32Array)], want.probs, `${name}: probabilities`);
      const r = await analyzeImage(data, { spec, engine }, {}, DEFAULT_LIMITS);
      assert.equal(r.classes![0]!.label, want.label, name);
      assert.ok(Math.abs(r.classes![0]!.score - want.score) <= 5e-7 + 1e-12, `${name}: ${r.classes![0]!.score} vs ${want.score} (results carry 6 decimals)`);
      labels.add(want.label);
    }
    assert.deepEqual([...labels].sort(), ['0', '180'], 'both directions among the fixtures');
    assert.ok(Object.keys(ref.images).some((n) => n.startsWith('lines/')), 'text lines as a detector crops them');
  });
});
