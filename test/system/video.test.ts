/**
 * A job over a container holding images and videos: every frame of each video exactly once, in
 * results.jsonl, Parquet (media, frame_index, frame_time_s) and COCO (file_name <blob>#frame=<i>),
 * with the same model output as the frames read sequentially give; partitions cut across videos
 * and keyframes; a video that cannot be read fails alone with its code and stage.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ContainerClient } from '@azure/storage-blob';
import { closeDefaultActivities } from '../../lib/orchestration/activities';
import { resetSettingsCache } from '../../lib/util/config';
import { parseJobRequest } from '../../lib/job/request';
import { DurableEngine } from '../../lib/local/durable/engine';
import { ModelCache, analyzePixels } from '../../lib/model';
import { DEFAULT_LIMITS } from '../../lib/model/preprocess';
import { cocoLines, type ImageResult } from '../../lib/partition/pipeline';
import type { FailureRecord } from '../../lib/partition/parts';
import type { Manifest } from '../../lib/fanin/finalize';
import { listAllBlobs, readBlob, readJson, writeBlob, writeJson } from '../../lib/storage';
import { serveBlob } from '../../lib/video/source';
import { probeVideo } from '../../lib/video/probe';
import { decodeFrames } from '../../lib/video/decode';
import { frameTimes } from '../../lib/video/frames';
import { useAzurite } from '../helpers/azurite';
import { registeredFunctions } from '../helpers/host';
import { Canvas } from '../helpers/images';
import { classifierFixture, classifierSpec } from '../helpers/models';
import { readParquetRows } from '../helpers/parquet';

const az = useAzurite();
const DIR = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'video');
const VIDEOS = ['h264-gop12.mp4', 'rotated.mov', 'vp9.webm'];
let out: ContainerClient;
let models: ContainerClient;

before(async () => {
  await az.ready;
  process.env['DATA_STORAGE'] = az.azurite.connectionString;
  process.env['MODELS_CONTAINER'] = 'vmodels';
  process.env['INFER_WORKERS'] = '1';
  resetSettingsCache();
  models = az.service.getContainerClient('vmodels');
  await models.create();
  await writeBlob(models, 'colours/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'colours/model.json', classifierSpec());
  const media = az.service.getContainerClient('media');
  await media.create();
  await writeBlob(media, 'cams/a.png', await new Canvas(8, 8, [255, 0, 0]).png());
  for (const v of VIDEOS) await writeBlob(media, `cams/${v}`, readFileSync(join(DIR, v)));
  await writeBlob(media, 'cams/broken.mp4', Buffer.from('this is no video '.repeat(50)));
  await writeBlob(media, 'cams/z.png', await new Canvas(8, 8, [0, 0, 255]).png());
  out = az.service.getContainerClient('vresults');
});
after(() => closeDefaultActivities());

/** What the model gives for each frame of a video read sequentially, frame by frame. */
async function sequentialClasses(name: string): Promise<{ top: string[]; times: number[] }> {
  const data = readFileSync(join(DIR, name));
  const src = await serveBlob(data.length, async (o, c) => Readable.from([data.subarray(o, c === undefined ? undefined : o + c)]));
  const cache = new ModelCache({ workers: 1, intraOpThreads: 1, batchSize: 1 });
  try {
    const model = await cache.get(models, 'colours');
    const p = await probeVideo(src.url, { timeoutMs: 30_000 });
    const top: string[] = [];
    await decodeFrames(src.url, { seekS: 0, pts: p.pts, width: p.width, height: p.height }, async (f) => {
      const a = await analyzePixels({ data: f.data, width: f.width, height: f.height }, model, { topK: 2 }, DEFAULT_LIMITS);
      top.push(a.classes!.map((c) => `${c.label}:${c.score.toFixed(6)}`).join(','));
    }, { timeoutMs: 60_000 });
    return { top, times: frameTimes(p) };
  } finally {
    await cache.close();
    await src.close();
  }
}

test('images and videos in one job: each frame once, equal to the sequential read, in every format; a broken video fails alone', async () => {
  const e = new DurableEngine(registeredFunctions(), { maxConcurrentActivities: 2 });
  const job = parseJobRequest({ jobId: 'mixed', input: { container: 'media', prefix: 'cams/', extensions: ['.png', '.mp4', '.mov', '.webm'] }, output: { container: 'vresults' }, model: { name: 'colours' }, partitionSize: 7, params: { topK: 2 } });
  await e.start('inferenceJob', 'mixed', { job, options: { parallel: 3, perGeneration: 100, retry: { firstRetryMs: 10, maxAttempts: 2, backoffCoefficient: 1, maxRetryMs: 20 } } });
  const s = await e.waitFor('mixed', 180_000);
  e.close();
  assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
  const lines = (await readBlob(out, 'mixed/results.jsonl'))!.data.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as ImageResult);
  const frames = 60 + 60 + 30;
  assert.equal(lines.length, 2 + frames);
  assert.deepEqual(lines.filter((r) => !r.frame).map((r) => r.source.name), ['cams/a.png', 'cams/z.png']);
  for (const v of VIDEOS) {
    const mine = lines.filter((r) => r.source.name === `cams/${v}`);
    const ref = await sequentialClasses(v);
    assert.deepEqual(mine.map((r) => r.frame!.index), ref.top.map((_, i) => i), `${v}: every frame once, in order`);
    assert.deepEqual(mine.map((r) => r.classes!.map((c) => `${c.label}:${c.score.toFixed(6)}`).join(',')), ref.top, `${v}: the model's output on each frame equals the sequential read's`);
    assert.deepEqual(mine.map((r) => r.frame!.time), ref.times, `${v}: frame times from timestamps`);
  }
  assert.deepEqual([lines.find((r) => r.source.name === 'cams/rotated.mov')!.width, lines.find((r) => r.source.name === 'cams/rotated.mov')!.height], [48, 64], 'rotation applied');
  const failures = (await readBlob(out, 'mixed/_failures.jsonl'))!.data.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as FailureRecord);
  assert.deepEqual(failures.map((f) => [f.blob, f.stage, f.code]), [['cams/broken.mp4', 'probe', 'VideoUnsupported']]);
  const m = (await readJson<Manifest>(out, 'mixed/_manifest.json'))!;
  assert.deepEqual([m.status, m.counts.images, m.counts.succeeded, m.counts.failed], ['succeeded', 2 + frames + 1, 2 + frames, 1]);
  // Parquet: a row per frame (one class each at topK 2: two rows), with its index and time.
  const parts = (await listAllBlobs(out, { prefix: 'mixed/results.parquet/' })).filter((b) => b.name.endsWith('.parquet'));
  const rows = (await Promise.all(parts.map(async (b) => readParquetRows((await readBlob(out, b.name))!.data).rows))).flat();
  const videoRows = rows.filter((r) => r['media'] === 'video' && r['status'] === 'ok');
  assert.equal(videoRows.length, frames * 2);
  const webm = videoRows.filter((r) => r['image'] === 'cams/vp9.webm' && r['detection_index'] === 0).map((r) => [r['frame_index'], r['frame_time_s']]);
  assert.deepEqual(webm.map((x) => x[0]), Array.from({ length: 30 }, (_, i) => i));
  assert.ok(rows.some((r) => r['image'] === 'cams/broken.mp4' && r['status'] === 'failed' && r['media'] === 'video' && r['error_code'] === 'VideoUnsupported'));
  assert.ok(rows.filter((r) => r['media'] === 'image').every((r) => r['frame_index'] === null));
  // COCO holds detections (a classifier has none); an annotation of a frame names it.
  const frameResult = lines.find((r) => r.source.name === 'cams/h264-gop12.mp4' && r.frame!.index === 59)!;
  const ann = JSON.parse(cocoLines({ ...frameResult, detections: [{ category_id: 1, label: 'red', score: 0.9, bbox: [0, 0, 1, 1] }] }, 7).slice(2)) as { file_name: string; image_id: number };
  assert.deepEqual([ann.file_name, ann.image_id], ['cams/h264-gop12.mp4#frame=59', 7]);
  // The report's video view: each video with its frame counts and a detections-per-frame timeline.
  const report = (await readBlob(out, 'mixed/report.html'))!.data.toString();
  assert.match(report, /<section id="videos"><h2>Videos \(4\)<\/h2>/);
  assert.match(report, /<h3>cams\/h264-gop12\.mp4<\/h3><p class="muted">60 frames inferred, 0 failed/);
  assert.match(report, /<h3>cams\/broken\.mp4<\/h3><p class="muted">0 frames inferred, 1 failed/);
  // Per-frame result files.
  assert.ok(await readBlob(out, 'mixed/results/cams/vp9.webm.frame-0000029.json'));
});
