/**
 * `npm run bench`: every figure measured side by side in one run, on the same images and model.
 *   (a) bare:     onnxruntime-node session.run on preprocessed tensors, nothing else (the ceiling)
 *   (b) pipeline: the full job through the local host (Azurite, orchestration, activity processes)
 *   (c) naive:    a sequential script: download, sharp, run, upload, one image at a time
 * Ratios b/a and b/c, the pipeline's stage split, orchestration overhead per image (trivial model,
 * 10,000 small blobs), finalize at 1,000 / 10,000 / 50,000 partitions (time, and bytes through the
 * process), peak memory of an activity process, and the deployment package size.
 * Writes bench/results/latest.json and prints a table.
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { buildPackage } from '../lib/deploy/package';
import type { Manifest } from '../lib/finalize';
import { ADAPTER_IMPLS } from '../lib/model/adapters';
import { outputsByRole } from '../lib/model/adapters/roles';
import { bundledTextDetectorPath, CATALOG } from '../lib/model/catalog';
import { prepareImage, DEFAULT_LIMITS } from '../lib/model/preprocess';
import type { InputSpec } from '../lib/model/spec';
import type { TensorView } from '../lib/model/postprocess';
import { parseModelSpec, type ModelSpec } from '../lib/model/spec';
import { startAzurite } from '../lib/local/azurite';
import { submit, watch } from '../lib/local/client';
import { demoScenes } from '../lib/local/demo';
import { startLocalHost } from '../lib/local/host';
import { renderTextScene } from '../lib/local/textImages';
import { mapLimit, readBlob, writeBlob, writeJson } from '../lib/storage';
import { Canvas } from '../test/helpers/images';
import { classifierFixture, classifierSpec } from '../test/helpers/models';
import { finalizeBench } from './finalize';
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
  pipelineImagesPerSec: number;
  naiveImagesPerSec: number;
  pipelineOverBare: number;
  pipelineOverNaive: number;
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

async function bare(c: ModelCase, inputs: Buffer[]): Promise<number> {
  const s = await session(c.onnx);
  const tensors = await Promise.all(inputs.map((b) => prepareImage(b, c.spec.input, DEFAULT_LIMITS)));
  const name = s.inputNames[0]!;
  const first = tensors[0]!;
  await s.run({ [name]: new ort.Tensor('float32', first.tensor, [1, 3, first.transform.inH, first.transform.inW]) }); // warm-up
  const t0 = performance.now();
  for (const p of tensors) await s.run({ [name]: new ort.Tensor('float32', p.tensor, [1, 3, p.transform.inH, p.transform.inW]) });
  const sec = (performance.now() - t0) / 1000;
  await s.release();
  return tensors.length / sec;
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

async function pipeline(cs: string, c: ModelCase, prefix: string, jobId: string, partitionSize: number): Promise<{ imagesPerSec: number; manifest: Manifest; peakRss: number }> {
  const host = await startLocalHost({ storageConnectionString: cs, activityProcesses: 2, settings: { MODELS_CONTAINER: 'models', INFER_WORKERS: '1', ORT_INTRA_OP_THREADS: '1', IO_CONCURRENCY: '8' }, log: () => undefined, activityOutput: () => undefined });
  try {
    const t0 = performance.now();
    await submit({ url: host.url }, { jobId, input: { container: 'bench', prefix }, output: { container: 'bench-out', prefix: 'runs/' }, model: { name: c.name }, partitionSize, maxParallelPartitions: 4, skipExisting: false, params: { masks: true } });
    const done = await watch({ url: host.url }, jobId, () => undefined, 100);
    const sec = (performance.now() - t0) / 1000;
    if (done.runtimeStatus !== 'Completed') throw new Error(`bench job ${jobId} ended ${done.runtimeStatus}: ${JSON.stringify(done.output)}`);
    const out = BlobServiceClient.fromConnectionString(cs).getContainerClient('bench-out');
    const manifest = JSON.parse((await readBlob(out, `runs/${jobId}/_manifest.json`))!.data.toString()) as Manifest;
    const peakRss = Math.max(0, ...(await host.pool.peakMemory()));
    return { imagesPerSec: manifest.counts.images / sec, manifest, peakRss };
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
    const a = await bare(c, buffers);
    log(`${c.name}: (c) naive sequential script`);
    const cN = await naive(c, input, output, names);
    log(`${c.name}: (b) full pipeline through the local host`);
    const b = await pipeline(azurite.connectionString, c, `${c.name}/`, `bench-${c.name}`, Math.max(1, Math.ceil(c.images / 8)));
    const total = Object.values(b.manifest.stageMs).reduce((x, y) => x + y, 0) || 1;
    results.push({
      model: c.name,
      images: c.images,
      bareImagesPerSec: r2(a),
      pipelineImagesPerSec: r2(b.imagesPerSec),
      naiveImagesPerSec: r2(cN),
      pipelineOverBare: r2(b.imagesPerSec / a),
      pipelineOverNaive: r2(b.imagesPerSec / cN),
      stageSplitPercent: Object.fromEntries(Object.entries(b.manifest.stageMs).map(([k, v]) => [k.replace(/Ms$/, ''), Math.round((100 * v) / total)])),
      peakActivityRssMiB: Math.round(b.peakRss / 1048576),
    });
    log(`${c.name}: bare ${r2(a)} img/s, pipeline ${r2(b.imagesPerSec)} img/s, naive ${r2(cN)} img/s`);
  }

  // Orchestration overhead: a trivial model on 10,000 small blobs; compute is negligible, so the
  // time per image is what planning, partitions, activities, storage round trips and fan-in cost.
  const small = 10_000;
  log(`overhead: uploading ${small} small images`);
  const tiny = await new Canvas(8, 8, [200, 40, 40]).png();
  await writeBlob(models, 'trivial/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'trivial/model.json', classifierSpec());
  await mapLimit(Array.from({ length: small }, (_, i) => `small/${String(i).padStart(5, '0')}.png`), 32, (n) => writeBlob(input, n, tiny));
  const trivial: ModelCase = { name: 'trivial', spec: classifierSpec(), onnx: Buffer.from(classifierFixture()), images: small };
  const bareTrivial = await bare(trivial, Array.from({ length: 200 }, () => tiny));
  log('overhead: running the job');
  const ov = await pipeline(azurite.connectionString, trivial, 'small/', 'bench-overhead', 250);
  const perImageMs = 1000 / ov.imagesPerSec;
  const overhead = {
    images: small,
    partitions: ov.manifest.counts.partitions,
    pipelineImagesPerSec: r2(ov.imagesPerSec),
    wallMsPerImage: r2(perImageMs),
    bareInferMsPerImage: r2(1000 / bareTrivial),
    overheadMsPerImage: r2(perImageMs - 1000 / bareTrivial),
    stageSplitPercent: Object.fromEntries(Object.entries(ov.manifest.stageMs).map(([k, v]) => [k.replace(/Ms$/, ''), Math.round((100 * v) / (Object.values(ov.manifest.stageMs).reduce((x, y) => x + y, 0) || 1))])),
    peakActivityRssMiB: Math.round(ov.peakRss / 1048576),
  };
  log(`overhead: ${overhead.overheadMsPerImage} ms per image`);

  // Finalize at scale: synthetic partitions (set BENCH_FINALIZE to other sizes, e.g. 1000,10000 for a quicker run).
  const finalizeSizes = (process.env['BENCH_FINALIZE'] ?? '1000,10000,50000').split(',').map(Number).filter((n) => n > 0);
  const finalize = finalizeSizes.length ? await finalizeBench(service, finalizeSizes, log) : [];

  const pkg = await buildPackage(root);
  const report = {
    when: new Date().toISOString(),
    machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
    yolactShapedModel: { parameters: yolactParams, bytes: (await stat(yolactPath)).size },
    models: results,
    preprocessing,
    orchestrationOverhead: overhead,
    finalize,
    deploymentPackage: { zipMiB: r2(pkg.bytes / 1048576), unpackedMiB: r2(pkg.unpackedBytes / 1048576), files: pkg.entries },
    seconds: Math.round((Date.now() - t0) / 1000),
  };
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  await writeFile(join(root, 'bench', 'results', 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  await azurite.stop();

  console.log('\n| model | images | (a) bare img/s | (b) pipeline img/s | (c) naive img/s | b/a | b/c | stage split (b) | peak RSS per activity process |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    console.log(`| ${r.model} | ${r.images} | ${r.bareImagesPerSec} | ${r.pipelineImagesPerSec} | ${r.naiveImagesPerSec} | ${r.pipelineOverBare} | ${r.pipelineOverNaive} | ${Object.entries(r.stageSplitPercent).map(([k, v]) => `${k} ${v}%`).join(', ')} | ${r.peakActivityRssMiB} MiB |`);
  }
  console.log('\n| model | decode + resize + normalise, reference resampling | same with libvips (first landing) |');
  console.log('| --- | --- | --- |');
  for (const p of preprocessing) console.log(`| ${p.model} | ${p.referenceMsPerImage} ms/image | ${p.libvipsMsPerImage} ms/image |`);
  console.log(`\norchestration overhead (trivial model, ${small} blobs, ${overhead.partitions} partitions): ${overhead.wallMsPerImage} ms/image wall, ${overhead.overheadMsPerImage} ms/image beyond inference; ${overhead.pipelineImagesPerSec} images/s`);
  console.log('\n| finalize: partitions | results per partition | seconds | ms per partition | finalize CPU ms per partition | summaries read | blocks staged from URL | bytes copied in storage | bytes through the process |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const f of finalize) console.log(`| ${f.partitions} | ${f.resultBytesPerPartition} B | ${f.seconds} | ${f.msPerPartition} | ${f.processCpuMsPerPartition} | ${f.summariesRead} | ${f.blocksFromUrl} | ${f.bytesFromUrl} | ${f.bytesThroughProcess} |`);
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
