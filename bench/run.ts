/**
 * `npm run bench`: every figure measured side by side in one run, on the same images and model.
 *   (a) bare:     onnxruntime-node session.run on preprocessed tensors, nothing else (the ceiling)
 *   (b) pipeline: the full job through the local host (Azurite, orchestration, activity processes)
 *   (c) naive:    a sequential script: download, sharp, run, upload, one image at a time
 * (a) is the best of several configurations (threads, sessions, batch); (b) runs cold (processes up,
 * model not loaded) and warm. Ratios b/a, cold/warm and b/c, the pipeline's stage split, model
 * load and time to first result, per-image overhead of a trivial model at 1,000 / 10,000 / 50,000
 * images (with and without per-image result files; CPU by component), finalize at 1,000 / 10,000 /
 * 50,000 partitions (time, and bytes through the process), peak memory of an activity process, and
 * the deployment package size. BENCH_SCALING and BENCH_FINALIZE choose other sizes.
 * Writes bench/results/latest.json and prints a table.
 */
import { videoBench } from './video';
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
import { submit, watch } from '../lib/cli/client';
import { demoScenes } from '../lib/cli/demo';
import { startLocalHost } from '../lib/local/host/host';
import { renderTextScene } from '../lib/cli/textImages';
import { mapLimit, readBlob, writeBlob, writeJson } from '../lib/storage';
import { finalizeBench } from './finalize';
import { scalingBench } from './scaling';
import { buildYolactResnet50 } from './yolactModel';

const root = resolve(__dirname, '..', '..');

interface ModelCase {
  name: string;
  spec: ModelSpec;
  onnx: Buffer;
  images: number;
}

interface CaseResult {
  model: string;
  images: number;
  bareImagesPerSec: number;
  bareConfig: string;
  bareAll: Record<string, number>;
  pipelineImagesPerSec: number;
  pipelineColdImagesPerSec: number;
  naiveImagesPerSec: number;
  pipelineOverBare: number;
  coldOverWarm: number;
  pipelineOverNaive: number;
  /** Cold start: model loads the partitions waited for (longest) and the longest time to a partition's first result. */
  coldStart: Manifest['coldStart'];
  processStartMs: number;
  stageSplitPercent: Record<string, number>;
  peakActivityRssMiB: number;
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
      const t0 = performance.now();
      await Promise.all(workers.map((w) => { const done = next(w); w.postMessage('go'); return done; }));
      all[label] = r2(tensors.length / ((performance.now() - t0) / 1000));
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
  return { best, config, all };
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

interface PipelineRun {
  imagesPerSec: number;
  manifest: Manifest;
}

/**
 * The full pipeline through the local host: a job on a host whose processes are up but have not
 * loaded the model (cold: what a new instance sees), then the same job again under another id
 * (warm). Partitions of size `partitionSize`, four at a time.
 */
async function pipeline(cs: string, c: ModelCase, prefix: string, jobId: string, partitionSize: number): Promise<{ cold: PipelineRun; warm: PipelineRun; peakRss: number; processStartMs: number }> {
  const t = performance.now();
  const host = await startLocalHost({ storageConnectionString: cs, activityProcesses: 2, settings: { MODELS_CONTAINER: 'models' }, log: () => undefined, activityOutput: () => undefined });
  try {
    await host.pool.ready();
    const processStartMs = performance.now() - t;
    const once = async (id: string): Promise<PipelineRun> => {
      const t0 = performance.now();
      await submit({ url: host.url }, { jobId: id, input: { container: 'bench', prefix }, output: { container: 'bench-out', prefix: 'runs/' }, model: { name: c.name }, partitionSize, maxParallelPartitions: 4, skipExisting: false, params: { masks: true } });
      const done = await watch({ url: host.url }, id, () => undefined, 100);
      const sec = (performance.now() - t0) / 1000;
      if (done.runtimeStatus !== 'Completed') throw new Error(`bench job ${id} ended ${done.runtimeStatus}: ${JSON.stringify(done.output)}`);
      const out = BlobServiceClient.fromConnectionString(cs).getContainerClient('bench-out');
      const manifest = JSON.parse((await readBlob(out, `runs/${id}/_manifest.json`))!.data.toString()) as Manifest;
      return { imagesPerSec: manifest.counts.images / sec, manifest };
    };
    const cold = await once(`${jobId}-cold`);
    const warm = await once(`${jobId}-warm`);
    const peakRss = Math.max(0, ...(await host.pool.peakMemory()));
    return { cold, warm, peakRss, processStartMs };
  } finally {
    await host.stop();
  }
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
    const cN = await naive(c, input, output, names);
    log(`${c.name}: (b) full pipeline through the local host`);
    const p = await pipeline(azurite.connectionString, c, `${c.name}/`, `bench-${c.name}`, Math.max(1, Math.ceil(c.images / 8)));
    const b = p.warm;
    const total = Object.values(b.manifest.stageMs).reduce((x, y) => x + y, 0) || 1;
    results.push({
      model: c.name,
      images: c.images,
      bareImagesPerSec: a.best,
      bareConfig: a.config,
      bareAll: a.all,
      pipelineImagesPerSec: r2(b.imagesPerSec),
      pipelineColdImagesPerSec: r2(p.cold.imagesPerSec),
      naiveImagesPerSec: r2(cN),
      pipelineOverBare: r2(b.imagesPerSec / a.best),
      coldOverWarm: r2(p.cold.imagesPerSec / b.imagesPerSec),
      pipelineOverNaive: r2(b.imagesPerSec / cN),
      stageSplitPercent: Object.fromEntries(Object.entries(b.manifest.stageMs).map(([k, v]) => [k.replace(/Ms$/, ''), Math.round((100 * v) / total)])),
      peakActivityRssMiB: Math.round(p.peakRss / 1048576),
      coldStart: p.cold.manifest.coldStart,
      processStartMs: Math.round(p.processStartMs),
    });
    log(`${c.name}: bare ${a.best} img/s (${a.config}), pipeline warm ${r2(b.imagesPerSec)} cold ${r2(p.cold.imagesPerSec)} img/s, naive ${r2(cN)} img/s`);
  }

  // Per-image overhead as the job grows (trivial model): with per-image result files and without.
  const scalingSizes = (process.env['BENCH_SCALING'] ?? '1000,10000,50000').split(',').map(Number).filter((n) => n > 0);
  // Each series and the finalize runs on a fresh emulator: what one leaves behind (hundreds of
  // thousands of blobs) would slow the next.
  const scaling = [...(await withAzurite((a) => scalingBench(a, scalingSizes, log))), ...(await withAzurite((a) => scalingBench(a, scalingSizes, log, { perImageResults: false })))];

  // Finalize at scale: synthetic partitions (set BENCH_FINALIZE to other sizes, e.g. 1000,10000 for a quicker run).
  const finalizeSizes = (process.env['BENCH_FINALIZE'] ?? '1000,10000,50000').split(',').map(Number).filter((n) => n > 0);
  const finalize = finalizeSizes.length ? await withAzurite((a) => finalizeBench(BlobServiceClient.fromConnectionString(a.connectionString), finalizeSizes, log)) : [];

  const video = await videoBench(log);

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
    deploymentPackage: { zipMiB: r2(pkg.bytes / 1048576), unpackedMiB: r2(pkg.unpackedBytes / 1048576), files: pkg.entries },
    seconds: Math.round((Date.now() - t0) / 1000),
  };
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  await writeFile(join(root, 'bench', 'results', 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  await azurite.stop();

  console.log('\n| model | images | (a) bare img/s (best config) | (b) pipeline warm img/s | cold img/s | (c) naive img/s | b/a | cold/warm | b/c | stage split (b) | peak RSS per activity process |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    console.log(`| ${r.model} | ${r.images} | ${r.bareImagesPerSec} (${r.bareConfig}) | ${r.pipelineImagesPerSec} | ${r.pipelineColdImagesPerSec} | ${r.naiveImagesPerSec} | ${r.pipelineOverBare} | ${r.coldOverWarm} | ${r.pipelineOverNaive} | ${Object.entries(r.stageSplitPercent).map(([k, v]) => `${k} ${v}%`).join(', ')} | ${r.peakActivityRssMiB} MiB |`);
  }
  console.log('\n| model | bare configurations (img/s) | cold start: model loads waited, longest | longest time to a first result | activity processes up in |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const r of results) console.log(`| ${r.model} | ${Object.entries(r.bareAll).map(([k, v]) => `${k}: ${v}`).join('; ')} | ${r.coldStart.modelLoads}, ${r.coldStart.modelLoadMsMax} ms | ${r.coldStart.firstResultMsMax} ms | ${r.processStartMs} ms |`);
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
