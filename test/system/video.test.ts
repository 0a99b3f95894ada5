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
import { partSummaryName, type FailureRecord, type PartitionSummary } from '../../lib/partition/parts';
import type { Manifest } from '../../lib/fanin/finalize';
import { listAllBlobs, readBlob, readJson, writeBlob, writeJson } from '../../lib/storage';
import { serveBlob } from '../../lib/video/source';
import { probeVideo } from '../../lib/video/probe';
import { decodeFrames } from '../../lib/video/decode';
import { frameTimes } from '../../lib/video/frames';
import sharp from 'sharp';
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

/** A video held in memory, served as the loopback URL ffmpeg reads. */
async function served(data: Buffer): Promise<{ url: string; close: () => Promise<void> }> {
  return serveBlob(data.length, async (o, c) => Readable.from([data.subarray(o, c === undefined ? undefined : o + c)]));
}

test('annotated videos (overlays on, as eval.py --video writes one): a frame per frame inferred, in order, the source\'s duration, each the frame\'s overlay; segments from partitions that cut across keyframes, joined without a second encode', async () => {
  const e = new DurableEngine(registeredFunctions(), { maxConcurrentActivities: 2 });
  const job = parseJobRequest({ jobId: 'annotated', input: { container: 'media', prefix: 'cams/', extensions: ['.mp4', '.webm'] }, output: { container: 'vresults', overlays: true }, model: { name: 'colours' }, partitionSize: 7, params: { topK: 1 }, toleratedFailurePercent: 100 });
  await e.start('inferenceJob', 'annotated', { job, options: { parallel: 3, perGeneration: 100, retry: { firstRetryMs: 10, maxAttempts: 2, backoffCoefficient: 1, maxRetryMs: 20 } } });
  const s = await e.waitFor('annotated', 180_000);
  e.close();
  assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
  const m = (await readJson<Manifest>(out, 'annotated/_manifest.json'))!;
  assert.deepEqual(m.annotatedVideos, { 'cams/h264-gop12.mp4': 'overlays/cams/h264-gop12.mp4.mp4', 'cams/vp9.webm': 'overlays/cams/vp9.webm.mp4' });
  assert.ok(m.files.includes('annotated/overlays/cams/h264-gop12.mp4.mp4'));
  for (const [video, frames] of [['cams/h264-gop12.mp4', 60], ['cams/vp9.webm', 30]] as const) {
    const source = await served((await readBlob(az.service.getContainerClient('media'), video))!.data);
    const annotated = await served((await readBlob(out, `annotated/${m.annotatedVideos![video]}`))!.data);
    try {
      const src = await probeVideo(source.url, { timeoutMs: 30_000 });
      const a = await probeVideo(annotated.url, { timeoutMs: 30_000 });
      assert.equal(a.codec, 'h264');
      const segs: unknown[] = [];
      for (let n = 0; n < m.counts.partitions; n++) segs.push(...((await readJson<PartitionSummary>(out, partSummaryName('annotated/', n)))?.annotated ?? []).filter((x) => x.video === video).map((x) => [x.first, x.frames, x.seconds, x.time]));
      assert.equal(a.pts.length, frames, `${video}: one annotated frame per frame inferred; segments ${JSON.stringify(segs)}; pts ${a.pts.join(',')}`);
      const duration = (t: typeof a): number => ((t.pts[t.pts.length - 1]! - t.pts[0]!) * t.tb.num) / t.tb.den;
      assert.ok(Math.abs(duration(a) - duration(src)) < 0.15, `${video}: ${duration(a)} s annotated vs ${duration(src)} s source; segments ${JSON.stringify(segs)}; pts ${a.pts.join(',')}`);
      // Each annotated frame is that frame's overlay (lossy H.264: compared by PSNR).
      let k = 0;
      let worst = Infinity;
      await decodeFrames(annotated.url, { seekS: 0, pts: a.pts, width: a.width, height: a.height }, async (f) => {
        const png = (await readBlob(out, `annotated/overlays/${video}.frame-${String(k).padStart(7, '0')}.png`))!.data;
        const want = await sharp(png).removeAlpha().raw().toBuffer();
        let se = 0;
        for (let i = 0; i < want.length; i++) se += (want[i]! - f.data[i]!) ** 2;
        worst = Math.min(worst, 10 * Math.log10((255 * 255) / Math.max(1e-9, se / want.length)));
        k++;
      }, { timeoutMs: 60_000 });
      assert.equal(k, frames);
      assert.ok(worst > 28, `${video}: every annotated frame is its overlay (worst PSNR ${worst.toFixed(1)} dB)`);
    } finally {
      await source.close();
      await annotated.close();
    }
  }
  // A video that could not be read has no annotated video; its segments are working files.
  assert.equal((m.annotatedVideos as Record<string, string>)['cams/broken.mp4'], undefined);
  const report = (await readBlob(out, 'annotated/report.html'))!.data.toString();
  assert.match(report, /<video controls preload="metadata" width="480" src="overlays\/cams\/h264-gop12\.mp4\.mp4">/);
});

test('a half-done video resumes: partitions done in the first run are not run again, the rest are, each frame once', async () => {
  const job = parseJobRequest({ jobId: 'half', input: { container: 'media', prefix: 'cams/h264', extensions: ['.mp4'] }, output: { container: 'vresults' }, model: { name: 'colours' }, partitionSize: 7, params: { topK: 1 }, toleratedFailurePercent: 0 });
  const options = { parallel: 2, perGeneration: 100, retry: { firstRetryMs: 10, maxAttempts: 2, backoffCoefficient: 1, maxRetryMs: 20 } };
  const ran: number[][] = [[], []];
  const run = (round: number) =>
    new DurableEngine(registeredFunctions(), {
      maxConcurrentActivities: 2,
      runActivity: async (name, input, _attempt, go) => {
        const n = (input as { n?: number }).n;
        if (name === 'inferPartition') ran[round]!.push(n!);
        // The first run: partitions 5 and later are lost for good (an instance that kept dying).
        if (round === 0 && name === 'inferPartition' && n! >= 5) throw new Error(`partition ${n} lost`);
        return go();
      },
    });
  const first = run(0);
  await first.start('inferenceJob', 'half', { job, options });
  const s1 = await first.waitFor('half', 120_000);
  first.close();
  assert.equal(s1.runtimeStatus, 'Failed', 'the first run ends with the failed partitions');
  const second = run(1);
  await second.start('inferenceJob', 'half', { job, options });
  const s2 = await second.waitFor('half', 120_000);
  second.close();
  assert.equal(s2.runtimeStatus, 'Completed', JSON.stringify(s2.output));
  const partitions = Math.ceil(60 / 7);
  const firstDone = [...new Set(ran[0]!.filter((n) => n < 5))].sort((a, b) => a - b);
  assert.deepEqual(firstDone, [0, 1, 2, 3, 4]);
  const lines = (await readBlob(out, 'half/results.jsonl'))!.data.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as ImageResult);
  assert.deepEqual(lines.map((r) => r.frame!.index), Array.from({ length: 60 }, (_, i) => i), 'each frame once, in order');
  const m = (await readJson<Manifest>(out, 'half/_manifest.json'))!;
  assert.equal(m.counts.partitions, partitions);
  assert.equal(m.counts.skipped, 35, 'the frames of the five partitions done before are skipped, not inferred again');
  assert.equal(m.counts.succeeded, 25);
});
