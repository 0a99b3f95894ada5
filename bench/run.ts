/**
 * `npm run bench`: every figure measured side by side in one run, on the same images and model.
 *   (a) bare:     onnxruntime-node session.run on preprocessed tensors, nothing else (the ceiling)
 *   (b) pipeline: the full job through the local host (Azurite, orchestration, activity processes)
 *   (c) naive:    a sequential script: download, sharp, run, upload, one image at a time
 * (a) is the best of several configurations (threads, sessions, batch), warmed on every input shape;
 * beside it a realistic ceiling (a plus JPEG decode and the reference preprocessing on the same
 * cores). (b) runs under several layouts, the defaults a user gets as the first row, each cold (timed
 * from the host's start: processes spawn and load the model) and warm, with CPU per image by
 * component. Each figure carries the foreign CPU seen during it (bench/cpu.ts; more than 0.1 cores
 * is marked). Ratios b/a, b/realistic, cold/warm, the pipeline's stage split, model
 * load and time to first result, per-image overhead of a trivial model at 1,000 / 10,000 / 50,000
 * images (with and without per-image result files; CPU by component), finalize at 1,000 / 10,000 /
 * 50,000 partitions (time, and bytes through the process), peak memory of an activity process, and
 * the deployment package size. BENCH_SCALING and BENCH_FINALIZE choose other sizes.
 * Writes bench/results/latest.json and prints a table.
 */
import { videoBench, videoPipelineBench } from './video';
import { videoModelsBench } from './videoModels';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { buildPackage } from '../lib/deploy/package';
import type { Manifest } from '../lib/fanin/finalize';
import { ADAPTER_IMPLS } from '../lib/model/adapters';
import { outputsByRole } from '../lib/model/adapters/roles';
import { bundledTextDetectorPath, CATALOG } from '../lib/model/catalog';
import { prepareImage, DEFAULT_LIMITS } from '../lib/model/preprocess';
import type { InputSpec } from '../lib/model/spec';
import type { TensorView } from '../lib/model/postprocess';
import { parseModelSpec, type ModelSpec } from '../lib/model/spec';
import { startAzurite, withAzurite } from '../lib/local/azurite/azurite';
import { demoScenes } from '../lib/cli/demo';
import { renderTextScene } from '../lib/cli/textImages';
import { mapLimit, readBlob, writeBlob, writeJson } from '../lib/storage';
import { measured } from './cpu';
import { finalizeBench } from './finalize';
import { manifestBench } from './manifest';
import { listingBench } from './listing';
import { scalingBench } from './scaling';
import { buildYolactResnet50 } from './yolactModel';
import { pipeline, type PipelineLayout } from './pipeline';

const root = resolve(__dirname, '..', '..');

interface ModelCase {
  name: string;
  spec: ModelSpec;
  onnx: Buffer;
  images: number;
}

interface PipelineRow {
  layout: string;
  warmImagesPerSec: number;
  coldImagesPerSec: number;
  /** Foreign cores seen during the warm and the cold figure (bench/cpu.ts; > 0.1 is marked). */
  warmForeignCores: number;
  coldForeignCores: number;
  overBare: number;
  overRealistic: number;
  coldOverWarm: number;
  /** Warm job: CPU ms per image by component. */
  cpuMsPerImage: Record<string, number>;
  stageSplitPercent: Record<string, number>;
  coldStart: Manifest['coldStart'];
  processStartMs: number;
  peakActivityRssMiB: number;
}

interface CaseResult {
  model: string;
  images: number;
  bareImagesPerSec: number;
  bareConfig: string;
  bareAll: Record<string, number>;
  bareForeignCores: Record<string, number>;
  /** The bare ceiling with JPEG decode and the reference preprocessing added on the same cores (computed). */
  realisticImagesPerSec: number;
  naiveImagesPerSec: number;
  naiveForeignCores: number;
  /** The defaults first. */
  pipelines: PipelineRow[];
}

const r2 = (v: number): number => Math.round(v * 100) / 100;

interface PreprocessCost {
  model: string;
  images: number;
  /** Decode + resize + normalise, ms per image, one at a time on one thread. */
  referenceMsPerImage: number;
  libvipsMsPerImage: number;
}

/**
 * Decode + resize + normalise per image with the model's reference resampling and with libvips (the
 * first landing's path), same images, best of three passes each.
 */
async function preprocessCost(name: string, spec: InputSpec, images: Buffer[]): Promise<PreprocessCost> {
  const time = async (s: InputSpec): Promise<number> => {
    let best = Number.POSITIVE_INFINITY;
    for (let pass = 0; pass < 3; pass++) {
      const t0 = performance.now();
      for (const img of images) await prepareImage(img, s, DEFAULT_LIMITS);
      best = Math.min(best, (performance.now() - t0) / images.length);
    }
    return r2(best);
  };
  return { model: name, images: images.length, referenceMsPerImage: await time(spec), libvipsMsPerImage: await time({ ...spec, resample: 'libvips' }) };
}

async function session(onnx: Buffer): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(onnx, { graphOptimizationLevel: 'all', executionMode: 'sequential' });
}

interface BareResult {
  /** Best images/s and the configuration that gave it. */
  best: number;
  config: string;
  all: Record<string, number>;
  foreign: Record<string, number>;
}

/**
 * The ceiling: session.run on tensors prepared in memory, nothing else, in the best of several
 * configurations on this machine: one session with every core or one thread, one single-threaded
 * session per core on its own worker thread (what the pipeline's inference workers do), and batch 4
 * where the model takes a batch and the tensors share a shape.
 */
async function bare(c: ModelCase, inputs: Buffer[], log: (m: string) => void): Promise<BareResult> {
  const tensors = await Promise.all(inputs.map((b) => prepareImage(b, c.spec.input, DEFAULT_LIMITS)));
  const cores = availableParallelism();
  const all: Record<string, number> = {};
  const foreign: Record<string, number> = {};
  const batches = (batch: number): { data: Float32Array; shape: number[] }[] | undefined => {
    const out: { data: Float32Array; shape: number[] }[] = [];
    for (let i = 0; i < tensors.length; i += batch) {
      const chunk = tensors.slice(i, i + batch);
      const t = chunk[0]!.transform;
      if (chunk.some((p) => p.transform.inH !== t.inH || p.transform.inW !== t.inW)) return undefined; // not batchable
      const data = new Float32Array(chunk.length * chunk[0]!.tensor.length);
      chunk.forEach((p, k) => data.set(p.tensor, k * p.tensor.length));
      out.push({ data, shape: [chunk.length, 3, t.inH, t.inW] });
    }
    return out;
  };
  const run = async (label: string, sessions: number, threads: number, batch: number): Promise<void> => {
    const groups = batches(batch);
    if (!groups) return;
    // Sessions on worker threads, the batches dealt round-robin; timed from the start signal.
    const workers = Array.from({ length: sessions }, (_, k) => new Worker(join(__dirname, 'bareWorker.js'), { workerData: { onnx: c.onnx, threads, batches: groups.filter((_, i) => i % sessions === k) } }));
    const next = (w: Worker): Promise<{ type: string; message?: string }> =>
      new Promise((res, rej) => {
        w.once('message', (m: { type: string; message?: string }) => (m.type === 'error' ? rej(new Error(m.message)) : res(m)));
        w.once('error', rej);
      });
    const exited = workers.map((w) => new Promise((r) => w.once('exit', r)));
    try {
      await Promise.all(workers.map(next));
      const f = await measured(() => Promise.all(workers.map((w) => { const done = next(w); w.postMessage('go'); return done; })));
      all[label] = r2(tensors.length / f.wallS);
      foreign[label] = f.foreignCores;
    } catch (err) {
      log(`bare ${label}: not measured (${(err as Error).message.split('\n')[0]})`);
      for (const w of workers) w.postMessage('go'); // a waiting thread runs to its end and exits
    } finally {
      await Promise.all(exited);
    }
  };
  await run(`1 session x ${cores} threads, batch 1`, 1, cores, 1);
  await run('1 session x 1 thread, batch 1', 1, 1, 1);
  if (cores > 1) await run(`${cores} sessions x 1 thread, batch 1`, cores, 1, 1);
  // Batch 4 where the model's batch dimension is dynamic and the tensors share a shape.
  await run(`${cores} sessions x 1 thread, batch 4`, cores, 1, 4);
  await run(`1 session x ${cores} threads, batch 4`, 1, cores, 4);
  const [config, best] = Object.entries(all).sort((a, b) => b[1] - a[1])[0]!;
  return { best, config, all, foreign };
}

async function naive(c: ModelCase, input: ContainerClient, output: ContainerClient, names: string[]): Promise<number> {
  const s = await session(c.onnx);
  const name = s.inputNames[0]!;
  const adapter = ADAPTER_IMPLS[c.spec.adapter];
  const t0 = performance.now();
  for (const n of names) {
    const blob = (await readBlob(input, n))!;
    const p = await prepareImage(blob.data, c.spec.input, DEFAULT_LIMITS);
    const out = await s.run({ [name]: new ort.Tensor('float32', p.tensor, [1, 3, p.transform.inH, p.transform.inW]) });
    const named: Record<string, TensorView> = {};
    for (const k of s.outputNames) named[k] = { data: out[k]!.data as Float32Array, dims: out[k]!.dims };
    const result = adapter(outputsByRole(c.spec.adapter, c.spec, named).outputs, 0, { width: p.width, height: p.height, transform: p.transform }, c.spec, {});
    await writeJson(output, `naive/${c.name}/${n}.json`, { source: n, ...result });
  }
  const sec = (performance.now() - t0) / 1000;
  await s.release();
  return names.length / sec;
}

/** The layouts each model runs under: the defaults first. */
function layoutsFor(c: ModelCase, cores: number): PipelineLayout[] {
  return [
    { label: 'defaults' },
    { label: `1 process x ${cores} workers`, processes: 1, settings: { INFER_WORKERS: String(cores) } },
    { label: 'before: one partition of 64, batch 4', settings: { INFER_BATCH_SIZE: '4' }, job: { partitionSize: 64 } },
    { label: `partitions of ${Math.max(1, Math.ceil(c.images / 8))}, window 4`, job: { partitionSize: Math.max(1, Math.ceil(c.images / 8)), maxParallelPartitions: 4 } },
  ];
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const azurite = await startAzurite();
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  const models = service.getContainerClient('models');
  const input = service.getContainerClient('bench');
  const output = service.getContainerClient('bench-out');
  await Promise.all([models.create(), input.create(), output.create()]);
  const log = (m: string): void => console.log(`[bench ${((Date.now() - t0) / 1000).toFixed(0)}s] ${m}`);

  const yolactPath = join(root, 'bench', 'models', 'yolact-resnet50-random.onnx');
  let yolact: Buffer;
  let yolactParams = 0;
  try {
    yolact = await readFile(yolactPath);
  } catch {
    log('generating the YOLACT-ResNet50-shaped model (random weights)...');
    const built = buildYolactResnet50(1);
    await mkdir(join(root, 'bench', 'models'), { recursive: true });
    await writeFile(yolactPath, built.model);
    yolact = Buffer.from(built.model);
    yolactParams = built.params;
  }
  if (!yolactParams) yolactParams = buildYolactParamsCount(yolact);
  const cases: ModelCase[] = [
    { name: 'ppocr-v4-det', spec: parseModelSpec(CATALOG['ppocr-v4-det']), onnx: await readFile(bundledTextDetectorPath()), images: 48 },
    { name: 'yolact-resnet50-random', spec: parseModelSpec({ ...CATALOG['yolact-resnet50'], name: 'yolact-resnet50-random' }), onnx: yolact, images: 24 },
  ];
  const results: CaseResult[] = [];
  const preprocessing: PreprocessCost[] = [];
  for (const c of cases) {
    log(`${c.name}: uploading model and ${c.images} images`);
    await writeBlob(models, `${c.name}/model.onnx`, c.onnx);
    await writeJson(models, `${c.name}/model.json`, c.spec);
    const scenes = demoScenes(c.images);
    const buffers = await Promise.all(scenes.map((s) => renderTextScene(s, 'jpeg')));
    const names = buffers.map((_, i) => `${c.name}/img-${String(i).padStart(3, '0')}.jpg`);
    await mapLimit(names, 8, (n, i) => writeBlob(input, n, buffers[i]!));
    preprocessing.push(await preprocessCost(c.name, c.spec.input, buffers));
    log(`${c.name}: preprocessing ${JSON.stringify(preprocessing.at(-1))}`);
    log(`${c.name}: (a) bare session.run`);
    const a = await bare(c, buffers, log);
    log(`${c.name}: (c) naive sequential script`);
    const naiveFig = await measured(() => naive(c, input, output, names));
    const cN = naiveFig.value;
    log(`${c.name}: (b) full pipeline through the local host`);
    const pre = preprocessing.at(-1)!;
    const cores = availableParallelism();
    // Inference at the bare ceiling plus decode and reference preprocessing, spread over the same cores.
    const realistic = 1 / (1 / a.best + pre.referenceMsPerImage / 1000 / cores);
    const rows: PipelineRow[] = [];
    for (const [i, layout] of layoutsFor(c, cores).entries()) {
      const p = await pipeline(azurite.connectionString, c.name, `${c.name}/`, `bench-${c.name}-${i}`, layout, azurite.process.pid!);
      const total = Object.values(p.warm.manifest.stageMs).reduce((x, y) => x + y, 0) || 1;
      rows.push({
        layout: layout.label,
        warmImagesPerSec: r2(p.warm.imagesPerSec),
        coldImagesPerSec: r2(p.cold.imagesPerSec),
        warmForeignCores: p.warm.figure.foreignCores,
        coldForeignCores: p.cold.figure.foreignCores,
        overBare: r2(p.warm.imagesPerSec / a.best),
        overRealistic: r2(p.warm.imagesPerSec / realistic),
        coldOverWarm: r2(p.cold.imagesPerSec / p.warm.imagesPerSec),
        cpuMsPerImage: p.warm.cpuMsPerImage,
        stageSplitPercent: Object.fromEntries(Object.entries(p.warm.manifest.stageMs).map(([k, v]) => [k.replace(/Ms$/, ''), Math.round((100 * v) / total)])),
        coldStart: p.cold.manifest.coldStart,
        processStartMs: Math.round(p.processStartMs),
        peakActivityRssMiB: Math.round(p.peakRss / 1048576),
      });
      log(`${c.name}: (b) ${layout.label}: warm ${rows.at(-1)!.warmImagesPerSec} img/s, cold ${rows.at(-1)!.coldImagesPerSec} img/s (from the host's start)`);
    }
    results.push({
      model: c.name,
      images: c.images,
      bareImagesPerSec: a.best,
      bareConfig: a.config,
      bareAll: a.all,
      bareForeignCores: a.foreign,
      realisticImagesPerSec: r2(realistic),
      naiveImagesPerSec: r2(cN),
      naiveForeignCores: naiveFig.foreignCores,
      pipelines: rows,
    });
    log(`${c.name}: bare ${a.best} img/s (${a.config}), realistic ceiling ${r2(realistic)}, defaults warm ${rows[0]!.warmImagesPerSec} cold ${rows[0]!.coldImagesPerSec} img/s, naive ${r2(cN)} img/s`);
  }

  // A video job's frames/s beside a job over the same frames as JPEGs (default settings).
  const videoJob = await videoPipelineBench(azurite.connectionString, 'ppocr-v4-det', log);
  // Video through both models on 1080p frames beside the bare ceiling, the paper's Table 1 case
  // (BENCH_TABLE1 frames, 900 by default; 0 leaves it out), a 4K job's memory and disk.
  const videoModels = await videoModelsBench(azurite.connectionString, cases.map((c) => ({ name: c.name, spec: c.spec, onnx: c.onnx, frames: c.spec.adapter === 'yolact' ? 16 : 48 })), log, { table1Frames: Number(process.env['BENCH_TABLE1'] ?? 900) });

  // Per-image overhead as the job grows (trivial model): with per-image result files and without.
  const scalingSizes = (process.env['BENCH_SCALING'] ?? '1000,10000,50000').split(',').map(Number).filter((n) => n > 0);
  // Each series and the finalize runs on a fresh emulator: what one leaves behind (hundreds of
  // thousands of blobs) would slow the next.
  const scaling = [...(await withAzurite((a) => scalingBench(a, scalingSizes, log))), ...(await withAzurite((a) => scalingBench(a, scalingSizes, log, { perImageResults: false })))];

  // Finalize at scale: synthetic partitions (set BENCH_FINALIZE to other sizes, e.g. 1000,10000 for a quicker run).
  const finalizeSizes = (process.env['BENCH_FINALIZE'] ?? '1000,10000,50000').split(',').map(Number).filter((n) => n > 0);
  const finalize = finalizeSizes.length ? await withAzurite((a) => finalizeBench(BlobServiceClient.fromConnectionString(a.connectionString), finalizeSizes, log)) : [];

  const video = await videoBench(log);

  // Planning from a 1M-line manifest: time to the first partition, total plan time, peak memory.
  const manifest = await manifestBench((process.env['BENCH_MANIFEST'] ?? '1000000').split(',').map(Number).filter((n) => n > 0), log);
  // A listing planned whole beside planned in steps: when the first partition can start.
  const listingBlobs = Number(process.env['BENCH_LISTING'] ?? 100_000);
  const listing = listingBlobs > 0 ? await listingBench(listingBlobs, log) : undefined;

  const pkg = await buildPackage(root);
  const report = {
    when: new Date().toISOString(),
    machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
    yolactShapedModel: { parameters: yolactParams, bytes: (await stat(yolactPath)).size },
    models: results,
    preprocessing,
    scaling,
    finalize,
    video,
    videoJob,
    videoModels,
    manifest,
    ...(listing ? { listing } : {}),
    deploymentPackage: { zipMiB: r2(pkg.bytes / 1048576), unpackedMiB: r2(pkg.unpackedBytes / 1048576), files: pkg.entries },
    seconds: Math.round((Date.now() - t0) / 1000),
  };
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  await writeFile(join(root, 'bench', 'results', 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  await azurite.stop();

  const fm = (foreign: number): string => (foreign > 0.1 ? ` (!${foreign} foreign cores)` : '');
  console.log('\n| model | images | (a) bare img/s (best config) | realistic ceiling (+ decode, reference preprocessing) | (c) naive img/s |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const r of results) console.log(`| ${r.model} | ${r.images} | ${r.bareImagesPerSec}${fm(r.bareForeignCores[r.bareConfig] ?? 0)} (${r.bareConfig}) | ${r.realisticImagesPerSec} | ${r.naiveImagesPerSec}${fm(r.naiveForeignCores)} |`);
  console.log('\n| model | (b) pipeline layout | warm img/s | cold img/s (from host start) | b/a | b/realistic | cold/warm | CPU ms/image warm: host / emulator / activity main / activity other threads (inference in them) | stage split | model loads waited, longest | first result, longest | processes up in | peak RSS per activity process |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    for (const p of r.pipelines) {
      const c = p.cpuMsPerImage;
      console.log(`| ${r.model} | ${p.layout} | ${p.warmImagesPerSec}${fm(p.warmForeignCores)} | ${p.coldImagesPerSec}${fm(p.coldForeignCores)} | ${p.overBare} | ${p.overRealistic} | ${p.coldOverWarm} | ${c['host']} / ${c['emulator']} / ${c['activityMain']} / ${c['activityOther']} (${c['inference']}) | ${Object.entries(p.stageSplitPercent).map(([k, v]) => `${k} ${v}%`).join(', ')} | ${p.coldStart.modelLoads}, ${p.coldStart.modelLoadMsMax} ms | ${p.coldStart.firstResultMsMax} ms | ${p.processStartMs} ms | ${p.peakActivityRssMiB} MiB |`);
    }
  }
  console.log('\n| model | bare configurations (img/s) |');
  console.log('| --- | --- |');
  for (const r of results) console.log(`| ${r.model} | ${Object.entries(r.bareAll).map(([k, v]) => `${k}: ${v}${fm(r.bareForeignCores[k] ?? 0)}`).join('; ')} |`);
  console.log('\n| model | decode + resize + normalise, reference resampling | same with libvips (first landing) |');
  console.log('| --- | --- | --- |');
  for (const p of preprocessing) console.log(`| ${p.model} | ${p.referenceMsPerImage} ms/image | ${p.libvipsMsPerImage} ms/image |`);
  console.log('\n| trivial model: images | per-image result files | seconds | ms per image | CPU s per 1,000 images: host / activities / emulator | emulator RSS |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const x of scaling) console.log(`| ${x.images} | ${x.perImageResults ? 'yes' : 'no'} | ${x.seconds} | ${x.msPerImage} | ${x.cpuPer1000.host} / ${x.cpuPer1000.activities} / ${x.cpuPer1000.emulator} | ${x.emulatorRssMiB} MiB |`);
  console.log('\n| finalize: partitions | results per partition | seconds | ms per partition | finalize CPU ms per partition | summaries read | blocks staged from URL | bytes copied in storage | bytes through the process |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const f of finalize) console.log(`| ${f.partitions} | ${f.resultBytesPerPartition} B | ${f.seconds} | ${f.msPerPartition} | ${f.processCpuMsPerPartition} | ${f.summariesRead} | ${f.blocksFromUrl} | ${f.bytesFromUrl} | ${f.bytesThroughProcess} |`);
  console.log('\n| video clip | frame index read (probe) | decode ms/frame, 1 ffmpeg thread | decode ms/frame, all threads | JPEG decode of a same-size frame (sharp) |');
  console.log('| --- | --- | --- | --- | --- |');
  console.log(`| ${video.clip} | ${video.probeMs} ms | ${video.decodeMsPerFrameOneThread} | ${video.decodeMsPerFrameAllThreads} | ${video.jpegDecodeMsPerImage} ms |`);
  console.log('\n| video job (text detector, defaults, warm) | frames/s | images/s, same frames as JPEGs | frames/s over images/s |');
  console.log('| --- | --- | --- | --- |');
  console.log(`| ${videoJob.clip} | ${videoJob.videoFramesPerSec}${fm(videoJob.videoForeignCores)} | ${videoJob.jpegImagesPerSec}${fm(videoJob.jpegForeignCores)} | ${videoJob.framesOverImages} |`);
  console.log('\n| video through the model | clip | pipeline frames/s (defaults, warm) | bare ceiling on the same frames | pipeline/bare |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const v of videoModels.models) console.log(`| ${v.model} | ${v.clip} | ${v.pipelineFramesPerSec}${fm(v.pipelineForeignCores)} | ${v.bareFramesPerSec}${fm(v.bareForeignCores)} | ${v.overBare} |`);
  if (videoModels.table1) {
    const t = videoModels.table1;
    console.log('\n| Table 1 case | frames | total | per frame | first result | the paper (other hardware) |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    console.log(`| ${t.clip} | ${t.frames} | ${t.totalSeconds} s${fm(t.foreignCores)} | ${t.secondsPerFrame} s | ${t.firstResultSeconds} s | ${t.paper} |`);
  }
  const u = videoModels.video4k;
  console.log('\n| 4K video job | frames/s | activity process peak RSS | local disk per segment (raw annotated frames) | annotated video |');
  console.log('| --- | --- | --- | --- | --- |');
  console.log(`| ${u.clip} | ${u.framesPerSec} | ${u.peakActivityRssMiB} MiB | ${u.scratchMiBPerSegment} MiB | ${u.annotatedVideoMiB} MiB |`);
  console.log('\n| manifest lines | plan files (partitions of 64) | first plan file after | plan time | peak RSS of the planning process |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const m of manifest) console.log(`| ${m.lines} (${m.manifestMiB} MiB) | ${m.partitions} | ${m.firstPartitionSeconds} s | ${m.planSeconds} s | ${m.peakRssMiB} MiB |`);
  if (listing) {
    console.log('\n| listed blobs | partitions | first partition can start: planned whole | in steps (defaults) | steps | plan complete in steps |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    console.log(`| ${listing.blobs} | ${listing.partitions} | ${listing.wholePlanSeconds} s | ${listing.steppedFirstPartitionSeconds} s | ${listing.steps} | ${listing.steppedPlanSeconds} s |`);
  }
  console.log(`deployment package: ${report.deploymentPackage.zipMiB} MiB zipped, ${report.deploymentPackage.unpackedMiB} MiB unpacked`);
  console.log(`wrote bench/results/latest.json in ${report.seconds} s`);
}

function buildYolactParamsCount(onnx: Buffer): number {
  // Float32 weights make up nearly all of the file.
  return Math.round(onnx.length / 4);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error((err as Error).stack ?? err);
    process.exit(1);
  },
);
