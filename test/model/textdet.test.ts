import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { InferenceEngine } from '../../lib/model/engine';
import { analyzeImage } from '../../lib/model';
import { bundledTextDetectorPath, CATALOG } from '../../lib/model/catalog';
import { DEFAULT_LIMITS } from '../../lib/model/preprocess';
import { parseModelSpec } from '../../lib/model/spec';
import { decodeRle } from '../../lib/model/rle';
import { measureTextBoxes, renderTextScene, type TextScene } from '../../lib/cli/textImages';
import { boxIou } from '../helpers/images';
import { colourOf, renderOverlay } from '../../lib/model/overlay';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';

const SCENES: TextScene[] = [
  {
    width: 800, height: 600, background: '#ffffff',
    lines: [
      { text: 'Invoice 2026-11', x: 40, y: 80, size: 48, color: '#111111', weight: 'bold' },
      { text: 'Total amount: 1,234.56 EUR', x: 40, y: 200, size: 36, color: '#222222' },
      { text: 'Data Lake inference', x: 300, y: 420, size: 40, color: '#0033aa' },
    ],
  },
  {
    width: 1024, height: 512, background: '#f3e2b5',
    lines: [
      { text: 'SERVERLESS', x: 60, y: 150, size: 72, color: '#3a1f00', weight: 'bold' },
      { text: 'fan-out with durable functions', x: 60, y: 330, size: 40, color: '#202020' },
    ],
  },
  {
    width: 640, height: 900, background: '#1d2b3a',
    lines: [
      { text: 'Night mode', x: 50, y: 120, size: 56, color: '#f0f0f0', weight: 'bold' },
      { text: 'white on dark', x: 50, y: 400, size: 44, color: '#ffffff' },
      { text: 'ONNX + sharp', x: 120, y: 700, size: 50, color: '#ffd24a' },
    ],
  },
];

let engine: InferenceEngine;
const spec = parseModelSpec(CATALOG['ppocr-v4-det']);

before(async () => {
  engine = await InferenceEngine.create(bundledTextDetectorPath(), spec, { workers: 1, intraOpThreads: 2, batchSize: 1 });
});
after(() => engine?.close());

test('the real PP-OCRv4 detector finds rendered text lines (IoU > 0.5 for most)', async () => {
  let matched = 0;
  let total = 0;
  const report: string[] = [];
  for (const scene of SCENES) {
    const truth = await measureTextBoxes(scene);
    const r = await analyzeImage(await renderTextScene(scene), { spec, engine }, {}, DEFAULT_LIMITS);
    assert.equal(r.width, scene.width);
    for (const [i, gt] of truth.entries()) {
      total++;
      const best = Math.max(0, ...r.detections.map((d) => boxIou(d.bbox, gt)));
      report.push(`${scene.lines[i]!.text}: IoU ${best.toFixed(2)}`);
      if (best > 0.5) matched++;
    }
    for (const d of r.detections) {
      assert.equal(d.label, 'text');
      assert.ok(d.score >= 0.6 && d.score <= 1, `score ${d.score}`);
      assert.ok(d.segmentation, 'each text instance has a mask');
      const m = decodeRle(d.segmentation);
      const [x, y, w, h] = d.bbox;
      assert.equal(m[Math.floor(y + h / 2) * scene.width + Math.floor(x + w / 2)], 1, 'box centre is in the mask');
    }
    // No hallucinated text: every detection overlaps some real line.
    for (const d of r.detections) assert.ok(truth.some((gt) => boxIou(d.bbox, gt) > 0.1), `detection ${JSON.stringify(d.bbox)} matches no line`);
  }
  console.log(report.join('\n'));
  assert.ok(matched / total >= 0.75, `matched ${matched}/${total}:\n${report.join('\n')}`);
});

test('a blank page has no text', async () => {
  const r = await analyzeImage(await renderTextScene({ width: 640, height: 480, background: '#ffffff', lines: [] }), { spec, engine }, {}, DEFAULT_LIMITS);
  assert.deepEqual(r.detections, []);
});

test('overlay PNG: text masks tinted and boxes drawn, scaled to maxSide', async () => {
  const scene = SCENES[0]!;
  const img = await renderTextScene(scene, 'png');
  const r = await analyzeImage(img, { spec, engine }, {}, DEFAULT_LIMITS);
  const o = await renderOverlay(img, r.detections, { maxSide: 400 });
  assert.equal(o.width, 400);
  assert.equal(o.height, 300);
  const { data, info } = await sharp(o.png).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.width, 400);
  // Far from any text (bottom-left corner): the white page, untouched.
  assert.deepEqual([...data.subarray((290 * 400 + 5) * info.channels, (290 * 400 + 5) * info.channels + 3)], [255, 255, 255]);
  // Inside a mask but between glyphs the page is tinted toward the class colour.
  const d = r.detections[0]!;
  const [x, y, w, h] = d.bbox.map((v) => v / 2);
  // White page under the mask colour at 45% opacity.
  const tint = colourOf(d.category_id).map((c) => 255 * 0.55 + c * 0.45);
  let tinted = 0;
  for (let yy = Math.ceil(y!); yy < y! + h!; yy++) {
    for (let xx = Math.ceil(x!); xx < x! + w!; xx++) {
      const p = (yy * 400 + xx) * info.channels;
      if (tint.every((v, c) => Math.abs(data[p + c]! - v) < 12)) tinted++;
    }
  }
  assert.ok(tinted > (w! * h!) / 4, `tinted ${tinted} of ${Math.round(w! * h!)} pixels`);
  await writeFile(join(tmpdir(), 'lakeinfer-overlay-test.png'), o.png);
});
