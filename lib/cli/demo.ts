/**
 * `npm start`: a real job end to end with no Azure account. Starts the local host (embedded
 * Azurite, HTTP API, Durable engine, activity processes), uploads the real PP-OCRv4 text detector
 * and demo images (real text rendered on varied backgrounds, plus a few broken files), submits a
 * job over HTTP, shows its progress, prints the summary and copies the outputs to ./out/<jobId>/.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import type { Manifest } from '../fanin/finalize';
import { bundledTextDetectorPath, CATALOG } from '../model/catalog';
import { mapLimit, readBlob, writeBlob, writeJson } from '../storage';
import { downloadOutputs } from './outputs';
import { progressLine, submit, watch } from './client';
import { startLocalHost } from '../local/host/host';
import { renderTextScene, type TextScene } from './textImages';
import sharp from 'sharp';
import { encodeMp4 } from '../video/encode';

const WORDS = ['invoice', 'total', 'serverless', 'data lake', 'durable', 'fan-out', 'ONNX', 'sharp', 'Azure', 'partition', 'inference', 'manifest', 'report', 'retry', 'Azurite', 'YOLACT'];
const BACKGROUNDS = ['#ffffff', '#f3e2b5', '#1d2b3a', '#e8f0ff', '#fde2e4', '#2d3a2e', '#fafafa', '#ffe9c7'];

/** Deterministic demo scenes: 1-3 lines of real words at known places, light or dark pages. */
export function demoScenes(n: number): TextScene[] {
  const scenes: TextScene[] = [];
  for (let i = 0; i < n; i++) {
    const bg = BACKGROUNDS[i % BACKGROUNDS.length]!;
    const dark = ['#1d2b3a', '#2d3a2e'].includes(bg);
    const width = [640, 800, 720, 960][i % 4]!;
    const height = [480, 600, 540, 400][(i >> 1) % 4]!;
    const lines = Array.from({ length: 1 + (i % 3) }, (_, k) => ({
      text: `${WORDS[(i * 3 + k) % WORDS.length]} ${WORDS[(i * 5 + k * 7 + 1) % WORDS.length]} ${100 + i * 7 + k}`,
      x: 30 + ((i * 37 + k * 53) % 120),
      y: Math.round(((k + 1) * height) / (2 + (i % 3)) + 10),
      size: 30 + ((i + k) % 4) * 6,
      color: dark ? '#f5f5f5' : ['#111111', '#0033aa', '#7a1010'][k % 3]!,
      weight: (k === 0 ? 'bold' : 'normal') as 'bold' | 'normal',
    }));
    scenes.push({ width, height, background: bg, lines });
  }
  return scenes;
}

export const DEMO_CLIP = 'demo/clip.mp4';

/** The scenes as a 640x480 clip, each held for a second at 10 frames/s. */
async function demoClip(scenes: TextScene[]): Promise<Buffer> {
  const frames: Uint8Array[] = [];
  for (const s of scenes) {
    const rgb = await sharp(await renderTextScene(s, 'png')).resize(640, 480, { fit: 'fill' }).removeAlpha().raw().toBuffer();
    for (let i = 0; i < 10; i++) frames.push(rgb);
  }
  return encodeMp4(frames, 640, 480, 10);
}

export async function uploadDemo(service: BlobServiceClient, images: number): Promise<{ input: ContainerClient; uploaded: number; broken: string[] }> {
  const models = service.getContainerClient('models');
  await models.createIfNotExists();
  await writeBlob(models, 'ppocr-v4-det/model.onnx', await readFile(bundledTextDetectorPath()));
  await writeJson(models, 'ppocr-v4-det/model.json', CATALOG['ppocr-v4-det']);
  const input = service.getContainerClient('images');
  await input.createIfNotExists();
  const scenes = demoScenes(images);
  await mapLimit(scenes, 4, async (s, i) => writeBlob(input, `demo/page-${String(i + 1).padStart(3, '0')}.${i % 5 === 0 ? 'png' : 'jpg'}`, await renderTextScene(s, i % 5 === 0 ? 'png' : 'jpeg')));
  const good = await renderTextScene(scenes[0]!, 'jpeg');
  const broken: Record<string, Buffer> = {
    'demo/broken-truncated.jpg': good.subarray(0, Math.floor(good.length / 3)),
    'demo/broken-empty.jpg': Buffer.alloc(0),
    'demo/broken-not-an-image.png': Buffer.from('this file is a note, not a picture\n'),
  };
  for (const [name, data] of Object.entries(broken)) await writeBlob(input, name, data);
  // A short video: three pages shown one second each at 10 frames/s (30 frames, H.264).
  const clip = await demoClip(scenes.slice(0, 3));
  await writeBlob(input, DEMO_CLIP, clip);
  return { input, uploaded: images + Object.keys(broken).length + 1, broken: Object.keys(broken) };
}

export async function runDemo(opts: { images?: number; port?: number; outDir?: string; quiet?: boolean } = {}): Promise<{ manifest: Manifest; outDir: string }> {
  const say = (m: string): void => {
    if (!opts.quiet) console.log(m);
  };
  const t0 = Date.now();
  say('lakeinfer demo: starting the local host (embedded Azurite, HTTP API, Durable engine, 2 activity processes)...');
  const host = await startLocalHost({ port: opts.port ?? 0, activityProcesses: 2, settings: { MODELS_CONTAINER: 'models' }, log: () => undefined });
  try {
    say(`  host:    ${host.url}   (POST /api/jobs, GET|DELETE /api/jobs/{id})`);
    say(`  storage: Azurite at ${host.connectionString.match(/BlobEndpoint=([^;]+)/)?.[1]}`);
    const service = BlobServiceClient.fromConnectionString(host.connectionString);
    const images = opts.images ?? 24;
    const up = await uploadDemo(service, images);
    say(`uploaded the PP-OCRv4 text detector, ${up.uploaded - 1} images (${up.broken.length} of them deliberately broken) and a 3-second video (${DEMO_CLIP}, 30 frames) to container 'images'`);

    const jobId = `demo-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
    const request = {
      jobId,
      input: { container: 'images', prefix: 'demo/', extensions: ['.jpg', '.png', '.mp4'], video: { everyNthFrame: 3 } },
      output: { container: 'results', prefix: 'runs/', overlays: true },
      model: { name: 'ppocr-v4-det' },
      partitionSize: 3,
      maxParallelPartitions: 2,
      toleratedFailurePercent: 30,
    };
    say(`POST ${host.url}/api/jobs  ${JSON.stringify(request)}`);
    const started = await submit({ url: host.url }, request);
    say(`  -> ${started.runtimeStatus}: ${started.links.status}`);
    let last = '';
    const done = await watch({ url: host.url }, jobId, (v) => {
      const line = progressLine(v);
      if (line !== last && !opts.quiet) process.stdout.write(`\r${line}`);
      last = line;
    }, 300);
    say('');
    const out = service.getContainerClient('results');
    const manifestBlob = await readBlob(out, `runs/${jobId}/_manifest.json`);
    if (!manifestBlob) throw new Error(`job ${jobId} ended ${done.runtimeStatus} without a manifest: ${JSON.stringify(done.output)}`);
    const manifest = JSON.parse(manifestBlob.data.toString()) as Manifest;
    const outDir = resolve(opts.outDir ?? 'out', jobId);
    const files = (await downloadOutputs(out, `runs/${jobId}/`, outDir)).files;
    const c = manifest.counts;
    say(`job ${jobId}: ${done.runtimeStatus} (${manifest.status}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    say(`  images ${c.images}: ${c.succeeded} succeeded, ${c.failed} failed, ${c.skipped} skipped; ${c.detections} text regions found; ${c.partitions} partitions`);
    say(`  activity time ${manifest.instanceSeconds.toFixed(1)} instance-seconds; stages (summed): ${Object.entries(manifest.stageMs).map(([k, v]) => `${k.replace('Ms', '')} ${(v / 1000).toFixed(1)}s`).join(', ')}`);
    const lines = (await readBlob(out, `runs/${jobId}/results.jsonl`))?.data.toString().split('\n').filter(Boolean) ?? [];
    const frames = lines.map((l) => JSON.parse(l) as { source: { name: string }; frame?: { index: number; time: number }; detections: unknown[] }).filter((r) => r.frame);
    if (frames.length > 0) say(`  video ${DEMO_CLIP}: ${frames.length} frames inferred (every 3rd of 30: frames ${frames.map((f) => f.frame!.index).join(', ')}); text regions per frame: ${frames.map((f) => f.detections.length).join(' ')}`);
    const failures = (await readBlob(out, `runs/${jobId}/_failures.jsonl`))?.data.toString().split('\n').filter(Boolean) ?? [];
    for (const f of failures) {
      const r = JSON.parse(f) as { blob: string; code: string; stage: string };
      say(`  failed: ${r.blob} (${r.stage}: ${r.code})`);
    }
    say(`outputs in Azurite: container 'results', prefix 'runs/${jobId}/'`);
    say(`copied ${files} files to ${outDir}: report.html, _manifest.json, results.jsonl, coco_results.json, _failures.jsonl, results/, overlays/`);
    say(`open the report: ${join(outDir, 'report.html')}`);
    return { manifest, outDir };
  } finally {
    await host.stop();
  }
}

if (require.main === module) {
  runDemo().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(`demo failed: ${(err as Error).stack ?? err}`);
      process.exit(1);
    },
  );
}
