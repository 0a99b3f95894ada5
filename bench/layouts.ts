/**
 * `npm run bench:layouts`: the PP-OCRv4 48-image job under the defaults and other layouts, each
 * cold (from the host's start) and warm, with CPU per image by component, on whatever cores this
 * process may use: run it under `taskset -c 0` to see what a 1-core machine (or a 1-vCPU Azure
 * instance, as lib/util/cores.ts counts it) gets, plainly on 2 cores, and on a bigger machine.
 * BENCH_IMAGES sets the job's size (48); BENCH_ROUNDS repeats the layouts, interleaved (2).
 */
import { availableParallelism } from 'node:os';
import { readFile } from 'node:fs/promises';
import { BlobServiceClient } from '@azure/storage-blob';
import { demoScenes } from '../lib/cli/demo';
import { renderTextScene } from '../lib/cli/textImages';
import { startAzurite } from '../lib/local/azurite/azurite';
import { bundledTextDetectorPath, CATALOG } from '../lib/model/catalog';
import { parseModelSpec } from '../lib/model/spec';
import { mapLimit, writeBlob, writeJson } from '../lib/storage';
import { mark } from './cpu';
import { pipeline, type PipelineLayout } from './pipeline';

async function main(): Promise<void> {
  const cores = availableParallelism();
  const images = Number(process.env['BENCH_IMAGES'] ?? 48);
  const rounds = Number(process.env['BENCH_ROUNDS'] ?? 2);
  const half = Math.max(1, Math.ceil(images / 2));
  const layouts: PipelineLayout[] = [
    { label: 'defaults' },
    { label: `partitions of ${Math.ceil(images / 12)} (12)`, job: { partitionSize: Math.ceil(images / 12) } },
    { label: `partitions of ${Math.ceil(images / 4)} (4)`, job: { partitionSize: Math.ceil(images / 4) } },
    { label: `partitions of ${half} (2)`, job: { partitionSize: half } },
    { label: 'batch 4', settings: { INFER_BATCH_SIZE: '4' } },
    { label: `1 process x ${cores} workers`, processes: 1, settings: { INFER_WORKERS: String(cores) } },
  ];
  const azurite = await startAzurite();
  try {
    const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
    const [models, input, output] = ['models', 'bench', 'bench-out'].map((c) => service.getContainerClient(c));
    await Promise.all([models!.create(), input!.create(), output!.create()]);
    await writeBlob(models!, 'ppocr-v4-det/model.onnx', await readFile(bundledTextDetectorPath()));
    await writeJson(models!, 'ppocr-v4-det/model.json', parseModelSpec(CATALOG['ppocr-v4-det']));
    const buffers = await Promise.all(demoScenes(images).map((s) => renderTextScene(s, 'jpeg')));
    await mapLimit(buffers, 8, (b, i) => writeBlob(input!, `ppocr/img-${String(i).padStart(3, '0')}.jpg`, b));
    console.log(`${cores} core(s) available; PP-OCRv4, ${images} images; ${rounds} round(s) of ${layouts.length} layouts, interleaved`);
    console.log('| round | layout | warm img/s | cold img/s (from host start) | cold/warm | CPU ms/image warm: host / emulator / activity main / activity other (inference) |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    for (let r = 1; r <= rounds; r++) {
      for (const [i, layout] of layouts.entries()) {
        const p = await pipeline(azurite.connectionString, 'ppocr-v4-det', 'ppocr/', `layouts-${r}-${i}`, layout, azurite.process.pid!);
        const c = p.warm.cpuMsPerImage;
        const ips = (x: typeof p.warm): string => `${x.imagesPerSec.toFixed(2)}${mark(x.figure)}`;
        console.log(`| ${r} | ${layout.label} | ${ips(p.warm)} | ${ips(p.cold)} | ${(p.cold.imagesPerSec / p.warm.imagesPerSec).toFixed(2)} | ${c['host']} / ${c['emulator']} / ${c['activityMain']} / ${c['activityOther']} (${c['inference']}) |`);
      }
    }
  } finally {
    await azurite.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error((err as Error).stack ?? err);
    process.exit(1);
  },
);
