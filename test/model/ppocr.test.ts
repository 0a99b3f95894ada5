/**
 * PaddleOCR's text detector and text direction classifier end to end on real images, against
 * PaddleOCR's own code (DetResizeForTest / NormalizeImage / DBPostProcess / TextDetector's filter;
 * TextClassifier.resize_norm_img / ClsPostProcess) run on the same files with onnxruntime
 * (test/fixtures/reference/generate_ppocr_det.py and generate_ppocr_cls.py; committed). The model
 * input and the raw output are compared bit for bit first (the same bits in, the same bits out of
 * onnxruntime-node), then what lakeinfer makes of them: every quadrilateral and its score, every
 * class and probability. onnxruntime's kernels differ by the CPU's instruction sets (last float
 * bits), so a fixture holds one reference run per kind of CPU (reference_runs.py): the test takes
 * the run whose bits onnxruntime-node gives here; on a kind of CPU no run was recorded on, it runs
 * PaddleOCR's code itself (CI installs it: PADDLEOCR_SRC and .ci/requirements.txt), or skips
 * outside CI naming what is missing.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { analyzeImage, InferenceEngine } from '../../lib/model';
import { bundledTextClassifierPath, bundledTextDetectorPath, CATALOG } from '../../lib/model/catalog';
import { DEFAULT_LIMITS, prepareImage } from '../../lib/model/preprocess';
import { parseModelSpec, type ModelSpec } from '../../lib/model/spec';
import { needPython } from '../helpers/python';

const FIXTURES = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'reference');
const sha = (a: Float32Array): string => createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');

interface ReferenceRun<I> {
  cpu: string;
  onnxruntime: string;
  opencv: string;
  images: Record<string, I>;
}

/**
 * The reference run that onnxruntime-node agrees with on this machine: a committed one whose raw
 * output for `image` has our bits (`ours`), else PaddleOCR's code run here (generator `script`), else (no
 * Python reference outside CI) undefined after skipping the test.
 */
function referenceRun<I>(t: TestContext, fixture: string, script: string, model: string, bits: (image: I) => string, image: string, ours: string): ReferenceRun<I> | undefined {
  const runs = (JSON.parse(readFileSync(join(FIXTURES, fixture), 'utf8')) as { runs: ReferenceRun<I>[] }).runs;
  const recorded = runs.find((r) => r.images[image] !== undefined && bits(r.images[image]) === ours);
  if (recorded) return recorded;
  const kinds = runs.map((r) => `${r.cpu}, onnxruntime ${r.onnxruntime}`).join('; ');
  const src = process.env['PADDLEOCR_SRC'];
  if (!src || !existsSync(join(src, 'ppocr'))) {
    const what = `PaddleOCR 2.10.0's source in PADDLEOCR_SRC (pip download paddleocr==2.10.0 --no-deps, unzipped) to run the reference on this kind of CPU (recorded: ${kinds})`;
    if (process.env['CI'] === 'true') throw new Error(`${what} is missing in CI`);
    t.skip(`needs ${what}`);
    return undefined;
  }
  if (!needPython(t, 'cv2', 'onnxruntime', 'numpy', 'shapely', 'pyclipper')) return undefined;
  const out = join(mkdtempSync(join(tmpdir(), 'lakeinfer-ref-')), fixture);
  execFileSync('python3', [join(FIXTURES, script), src, model, '--out', out], { stdio: 'ignore' });
  const live = (JSON.parse(readFileSync(out, 'utf8')) as { runs: ReferenceRun<I>[] }).runs[0]!;
  t.diagnostic(`no recorded run has this CPU's bits (recorded: ${kinds}); PaddleOCR's code ran here: ${live.cpu}, onnxruntime ${live.onnxruntime}`);
  return live;
}

async function session(path: string): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(path, { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
}

describe('PP-OCRv4 detector: equal to PaddleOCR on 22 real images', () => {
  type Det = { width: number; height: number; mapSha256: string; detections: { polygon: number[][]; score: number }[] };
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

  test('the same probability map, then the same boxes and box scores (PaddleOCR 2.10.0, OpenCV 5.1.0)', async (tc) => {
    let boxes = 0;
    let fractional = 0;
    const map = async (name: string): Promise<string> => {
      const prepared = await prepareImage(readFileSync(join(FIXTURES, name)), spec.input, DEFAULT_LIMITS);
      const t = prepared.transform;
      const out = await raw.run({ [raw.inputNames[0]!]: new ort.Tensor('float32', prepared.tensor, [1, 3, t.inH, t.inW]) });
      return sha(out[raw.outputNames[0]!]!.data as Float32Array);
    };
    const ref = referenceRun<Det>(tc, 'ppocr_det.json', 'generate_ppocr_det.py', bundledTextDetectorPath(), (d) => d.mapSha256, 'photo.jpg', await map('photo.jpg'));
    if (!ref) return;
    for (const [name, want] of Object.entries(ref.images)) {
      const data = readFileSync(join(FIXTURES, name));
      assert.equal(await map(name), want.mapSha256, `${name}: the probability map PaddleOCR's preprocessing and onnxruntime give (${ref.cpu})`);
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
  type Cls = { width: number; height: number; inputSha256: string; probs: number[]; label: string; score: number };
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

  test("resize_norm_img's input bit for bit, the same probabilities, ClsPostProcess's label (PaddleOCR 2.10.0)", async (tc) => {
    const labels = new Set<string>();
    const run = async (name: string): Promise<{ input: string; probs: number[] }> => {
      const prepared = await prepareImage(readFileSync(join(FIXTURES, 'ppocr', name)), spec.input, DEFAULT_LIMITS);
      assert.deepEqual([prepared.transform.inW, prepared.transform.inH], [192, 48]);
      const out = await raw.run({ [raw.inputNames[0]!]: new ort.Tensor('float32', prepared.tensor, [1, 3, 48, 192]) });
      return { input: sha(prepared.tensor), probs: [...(out[raw.outputNames[0]!]!.data as Float32Array)] };
    };
    const firstName = 'page-01.jpg';
    const ref = referenceRun<Cls>(tc, 'ppocr_cls.json', 'generate_ppocr_cls.py', bundledTextClassifierPath(), (c) => JSON.stringify(c.probs), firstName, JSON.stringify((await run(firstName)).probs));
    if (!ref) return;
    for (const [name, want] of Object.entries(ref.images)) {
      const data = readFileSync(join(FIXTURES, 'ppocr', name));
      const ours = await run(name);
      assert.equal(ours.input, want.inputSha256, `${name}: the input tensor resize_norm_img makes`);
      assert.deepEqual(ours.probs, want.probs, `${name}: probabilities (${ref.cpu})`);
      const r = await analyzeImage(data, { spec, engine }, {}, DEFAULT_LIMITS);
      assert.equal(r.classes![0]!.label, want.label, name);
      assert.ok(Math.abs(r.classes![0]!.score - want.score) <= 5e-7 + 1e-12, `${name}: ${r.classes![0]!.score} vs ${want.score} (results carry 6 decimals)`);
      labels.add(want.label);
    }
    assert.deepEqual([...labels].sort(), ['0', '180'], 'both directions among the fixtures');
    assert.ok(Object.keys(ref.images).some((n) => n.startsWith('lines/')), 'text lines as a detector crops them');
  });
});
