/**
 * Video through the models (issue 25's figures), in `npm run bench`:
 * - frames/s of a video job (default settings, warm) for the text detector and the YOLACT-shaped
 *   model on a 1080p H.264 clip, beside the bare ceiling on the same frames (the frames decoded and
 *   preprocessed once, then only session.run: two single-threaded sessions on worker threads, the
 *   best layout measured here);
 * - the paper's Table 1 case: a 15 s, 60 fps 1080p video (900 frames) through YOLACT, its total time
 *   and time per frame, beside the paper's figures (other hardware: said so in the table);
 * - a 4K video job with annotated video on: the activity processes' peak memory and the local disk a
 *   segment's raw frames took.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { BlobServiceClient } from '@azure/storage-blob';
import type { Manifest } from '../lib/fanin/finalize';
import { startLocalHost, type LocalHost } from '../lib/local/host/host';
import { submit, watch } from '../lib/cli/client';
import { preparePixels } from '../lib/model/preprocess';
import type { ModelSpec } from '../lib/model/spec';
import { partSummaryName, type PartitionSummary } from '../lib/partition/parts';
import { readJson, writeBlob } from '../lib/storage';
import { runFfmpeg } from '../lib/video/ffmpeg';
import { serveBlob } from '../lib/video/source';
import { probeVideo } from '../lib/video/probe';
import { decodeFrames } from '../lib/video/decode';
import { measured } from './cpu';

export interface VideoModelRow {
  model: string;
  clip: string;
  frames: number;
  pipelineFramesPerSec: number;
  bareFramesPerSec: number;
  overBare: number;
  pipelineForeignCores: number;
  bareForeignCores: number;
}

export interface Table1Row {
  clip: string;
  frames: number;
  totalSeconds: number;
  secondsPerFrame: number;
  firstResultSeconds: number;
  foreignCores: number;
  paper: string;
}

export interface Video4kRow {
  clip: string;
  frames: number;
  framesPerSec: number;
  peakActivityRssMiB: number;
  scratchMiBPerSegment: number;
  annotatedVideoMiB: number;
}

export interface VideoModelsBench {
  models: VideoModelRow[];
  table1?: Table1Row;
  video4k: Video4kRow;
}

interface BenchModel {
  name: string;
  spec: ModelSpec;
  onnx: Buffer;
  frames: number;
}

async function encode(dir: string, name: string, size: string, rate: number, frames: number): Promise<Buffer> {
  const file = join(dir, name);
  const r = await runFfmpeg(['-nostdin', '-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=${rate}`, '-frames:v', String(frames), '-c:v', 'libx264', '-preset', 'veryfast', '-g', String(rate), '-pix_fmt', 'yuv420p', '-y', file], { timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`encoding ${name} failed: ${r.stderr.slice(-300)}`);
  return readFile(file);
}

/** The bare ceiling on a clip's frames: decoded and preprocessed once, then only inference. */
async function bareOnFrames(m: BenchModel, clip: Buffer): Promise<{ framesPerSec: number; foreignCores: number }> {
  const src = await serveBlob(clip.length, async (o, c) => Readable.from([clip.subarray(o, c === undefined ? undefined : o + c)]));
  const batches: { data: Float32Array; shape: number[] }[] = [];
  try {
    const p = await probeVideo(src.url, { timeoutMs: 60_000 });
    await decodeFrames(src.url, { seekS: 0, pts: p.pts.slice(0, m.frames), width: p.width, height: p.height }, async (f) => {
      const prep = preparePixels({ data: f.data, width: f.width, height: f.height }, m.spec.input);
      batches.push({ data: prep.tensor, shape: [1, 3, prep.transform.inH, prep.transform.inW] });
    }, { timeoutMs: 600_000 });
  } finally {
    await src.close();
  }
  const sessions = 2;
  const workers = Array.from({ length: sessions }, (_, k) => new Worker(join(__dirname, 'bareWorker.js'), { workerData: { onnx: m.onnx, threads: 1, batches: batches.filter((_, i) => i % sessions === k) } }));
  // Listened for from the start: a worker exits right after its 'done', which can be before a later listener (it waited for ever).
  const exited = workers.map((w) => new Promise((r) => w.once('exit', r)));
  const wait = (type: string): Promise<void[]> =>
    Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            w.on('message', (msg: { type: string; message?: string }) => {
              if (msg.type === 'error') reject(new Error(msg.message));
              else if (msg.type === type) resolve();
            });
            // A worker that dies (an uncaught error, out of memory) sends nothing: say so instead of waiting for ever.
            w.once('error', reject);
            w.once('exit', (code) => reject(new Error(`a bare inference worker exited (code ${code}) before '${type}'`)));
          }),
      ),
    );
  await wait('ready');
  const fig = await measured(async () => {
    const done = wait('done');
    for (const w of workers) w.postMessage('go');
    await done;
    return batches.length;
  });
  await Promise.all(exited);
  return { framesPerSec: Math.round((batches.length / fig.wallS) * 100) / 100, foreignCores: fig.foreignCores };
}

async function videoJob(host: LocalHost, service: BlobServiceClient, id: string, blob: string, model: string, extra: Record<string, unknown> = {}): Promise<Manifest> {
  await submit({ url: host.url }, { jobId: id, input: { container: 'bench-vm', prefix: blob, extensions: ['.mp4'] }, output: { container: 'bench-vm-out', prefix: 'runs/', ...extra }, model: { name: model } });
  const done = await watch({ url: host.url }, id, () => undefined, 200, 7_200_000);
  if (done.runtimeStatus !== 'Completed') throw new Error(`bench job ${id} ended ${done.runtimeStatus}: ${JSON.stringify(done.output)}`);
  return (await readJson<Manifest>(service.getContainerClient('bench-vm-out'), `runs/${id}/_manifest.json`))!;
}

export async function videoModelsBench(cs: string, models: BenchModel[], log: (m: string) => void, opts: { table1Frames?: number } = {}): Promise<VideoModelsBench> {
  const dir = await mkdtemp(join(tmpdir(), 'lakeinfer-bench-vm-'));
  const service = BlobServiceClient.fromConnectionString(cs);
  const input = service.getContainerClient('bench-vm');
  await input.createIfNotExists();
  await service.getContainerClient('bench-vm-out').createIfNotExists();
  const modelsC = service.getContainerClient('models');
  for (const m of models) {
    await writeBlob(modelsC, `${m.name}/model.onnx`, m.onnx);
    await writeBlob(modelsC, `${m.name}/model.json`, JSON.stringify(m.spec));
  }
  let host = await startLocalHost({ storageConnectionString: cs, settings: { MODELS_CONTAINER: 'models' }, log: () => undefined, activityOutput: () => undefined });
  try {
    const rows: VideoModelRow[] = [];
    let k = 0;
    for (const m of models) {
      const clip = await encode(dir, `${m.name}.mp4`, '1920x1080', 30, m.frames);
      await writeBlob(input, `clips/${m.name}/clip.mp4`, clip);
      // One cold run (processes load the model), then the timed warm one.
      await videoJob(host, service, `vm-${m.name}-${k++}`, `clips/${m.name}/`, m.name);
      const fig = await measured(async () => (await videoJob(host, service, `vm-${m.name}-${k++}`, `clips/${m.name}/`, m.name)).counts.succeeded);
      const pipeline = Math.round((m.frames / fig.wallS) * 100) / 100;
      const bare = await bareOnFrames(m, clip);
      const row: VideoModelRow = { model: m.name, clip: `1920x1080 H.264 30 fps, ${m.frames} frames`, frames: m.frames, pipelineFramesPerSec: pipeline, bareFramesPerSec: bare.framesPerSec, overBare: Math.round((pipeline / bare.framesPerSec) * 100) / 100, pipelineForeignCores: fig.foreignCores, bareForeignCores: bare.foreignCores };
      log(`video ${m.name}: ${row.pipelineFramesPerSec} frames/s through the pipeline, bare ${row.bareFramesPerSec} on the same frames (${row.overBare})`);
      rows.push(row);
    }
    // The paper's Table 1 case: a 15 s, 60 fps video through YOLACT.
    let table1: Table1Row | undefined;
    const yolact = models.find((m) => m.spec.adapter === 'yolact');
    const t1Frames = opts.table1Frames ?? 900;
    if (yolact && t1Frames > 0) {
      const clip = await encode(dir, 'table1.mp4', '1920x1080', 60, t1Frames);
      await writeBlob(input, 'table1/clip.mp4', clip);
      let m: Manifest | undefined;
      const fig = await measured(async () => {
        m = await videoJob(host, service, `vm-table1-${k++}`, 'table1/', yolact.name);
        return m.counts.succeeded;
      });
      table1 = {
        clip: `1920x1080 H.264, 60 fps, ${(t1Frames / 60).toFixed(1)} s (${t1Frames} frames), YOLACT-ResNet50-shaped`,
        frames: t1Frames,
        totalSeconds: Math.round(fig.wallS * 10) / 10,
        secondsPerFrame: Math.round((fig.wallS / t1Frames) * 1000) / 1000,
        firstResultSeconds: Math.round((m!.coldStart.firstResultMsMax / 1000) * 100) / 100,
        foreignCores: fig.foreignCores,
        paper: 'paper, Table 1 (its own 4-6-core CPUs): 1.60-3.64 s per frame (PyTorch, ONNX, OpenVINO), 15 s and 78 s videos at 60 fps',
      };
      log(`video table 1: ${t1Frames} frames in ${table1.totalSeconds} s, ${table1.secondsPerFrame} s per frame`);
    }
    await host.stop();
    // 4K with the annotated video, on a host of its own (its activity processes' peak memory is the
    // 4K job's): peak memory, local disk per segment.
    host = await startLocalHost({ storageConnectionString: cs, settings: { MODELS_CONTAINER: 'models' }, log: () => undefined, activityOutput: () => undefined });
    const frames4k = 64;
    const clip4k = await encode(dir, '4k.mp4', '3840x2160', 30, frames4k);
    await writeBlob(input, 'uhd/clip.mp4', clip4k);
    const text = models[0]!;
    const id4k = `vm-4k-${k++}`;
    const fig4k = await measured(async () => (await videoJob(host, service, id4k, 'uhd/', text.name, { overlays: true })).counts.succeeded);
    const out = service.getContainerClient('bench-vm-out');
    const man = (await readJson<Manifest>(out, `runs/${id4k}/_manifest.json`))!;
    let scratch = 0;
    for (let n = 0; n < man.counts.partitions; n++) for (const s of (await readJson<PartitionSummary>(out, partSummaryName(`runs/${id4k}/`, n)))?.annotated ?? []) scratch = Math.max(scratch, s.scratchBytes ?? 0);
    const annotatedPath = Object.values(man.annotatedVideos ?? {})[0];
    const annotatedBytes = annotatedPath ? ((await out.getBlobClient(`runs/${id4k}/${annotatedPath}`).getProperties()).contentLength ?? 0) : 0;
    const video4k: Video4kRow = {
      clip: `3840x2160 H.264 30 fps, ${frames4k} frames, ${text.name}, annotated video on`,
      frames: frames4k,
      framesPerSec: Math.round((frames4k / fig4k.wallS) * 100) / 100,
      peakActivityRssMiB: Math.round(Math.max(0, ...(await host.pool.peakMemory())) / 1048576),
      scratchMiBPerSegment: Math.round((scratch / 1048576) * 10) / 10,
      annotatedVideoMiB: Math.round((annotatedBytes / 1048576) * 10) / 10,
    };
    log(`video 4K: ${video4k.framesPerSec} frames/s, activity peak RSS ${video4k.peakActivityRssMiB} MiB, ${video4k.scratchMiBPerSegment} MiB of local disk per segment`);
    return { models: rows, ...(table1 ? { table1 } : {}), video4k };
  } finally {
    await host.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
