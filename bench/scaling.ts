/**
 * Per-image overhead as the job grows: a trivial model (inference ~0.1 ms) on 1,000 / 10,000 /
 * 50,000 small blobs through the local host, so the time per image is what planning, partitions,
 * activities, storage round trips and the fan-in cost. Reports wall time, ms per image, where the
 * CPU went (host process, activity processes, the emulator) and the emulator's memory. Run alone
 * with `node dist/bench/scaling.js [sizes...]`, or as part of `npm run bench`.
 */
import { readFile } from 'node:fs/promises';
import { BlobServiceClient } from '@azure/storage-blob';
import { withAzurite, type AzuriteInstance } from '../lib/local/azurite/azurite';
import { submit, watch } from '../lib/cli/client';
import { startLocalHost } from '../lib/local/host/host';
import type { Manifest } from '../lib/fanin/finalize';
import { mapLimit, readBlob, writeBlob, writeJson } from '../lib/storage';
import { Canvas } from '../test/helpers/images';
import { classifierFixture, classifierSpec } from '../test/helpers/models';

export interface ScalingRow {
  perImageResults: boolean;
  images: number;
  partitions: number;
  seconds: number;
  msPerImage: number;
  /** CPU seconds per 1,000 images: this process (host, engine), the activity processes, the emulator. */
  cpuPer1000: { host: number; activities: number; emulator: number };
  emulatorRssMiB: number;
}

/** CPU time (user + system) of a process by pid, in seconds, from /proc (Linux). */
async function cpuSeconds(pid: number): Promise<number> {
  try {
    const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

async function rssMiB(pid: number): Promise<number> {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : 0;
  } catch {
    return 0;
  }
}

export async function scalingBench(azurite: AzuriteInstance, sizes = [1_000, 10_000, 50_000], log: (m: string) => void = console.log, opts: { partitionSize?: number; perImageResults?: boolean } = {}): Promise<ScalingRow[]> {
  const partitionSize = opts.partitionSize ?? 250;
  const perImageResults = opts.perImageResults ?? true;
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  const models = service.getContainerClient('models');
  const input = service.getContainerClient('scaling');
  await Promise.all([models.createIfNotExists(), input.createIfNotExists(), service.getContainerClient('scaling-out').createIfNotExists()]);
  await writeBlob(models, 'trivial/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'trivial/model.json', classifierSpec());
  const tiny = await new Canvas(8, 8, [200, 40, 40]).png();
  const rows: ScalingRow[] = [];
  for (const size of sizes) {
    const prefix = `n${size}/`;
    log(`scaling: uploading ${size} small images`);
    if (!(await input.getBlobClient(`${prefix}${String(size - 1).padStart(6, '0')}.png`).exists())) await mapLimit(Array.from({ length: size }, (_, i) => `${prefix}${String(i).padStart(6, '0')}.png`), 32, (n) => writeBlob(input, n, tiny));
    const host = await startLocalHost({ storageConnectionString: azurite.connectionString, activityProcesses: 2, settings: { MODELS_CONTAINER: 'models' }, log: () => undefined, activityOutput: () => undefined });
    try {
      const pids = () => host.pool.pids();
      const before = { host: process.cpuUsage(), activities: 0, emulator: await cpuSeconds(azurite.process.pid!) };
      let activityCpu = 0;
      const seen = new Map<number, number>();
      const sample = async (): Promise<void> => {
        for (const pid of pids()) seen.set(pid, await cpuSeconds(pid));
      };
      const timer = setInterval(() => void sample(), 500);
      const t0 = performance.now();
      const jobId = `scale-${size}-${perImageResults ? 'files' : 'nofiles'}`;
      log(`scaling: ${size} images`);
      await submit({ url: host.url }, { jobId, input: { container: 'scaling', prefix }, output: { container: 'scaling-out', prefix: 'runs/', perImageResults }, model: { name: 'trivial' }, partitionSize, maxParallelPartitions: 4, skipExisting: false });
      const done = await watch({ url: host.url }, jobId, () => undefined, 200, 6 * 3600_000);
      const seconds = (performance.now() - t0) / 1000;
      clearInterval(timer);
      await sample();
      activityCpu = [...seen.values()].reduce((a, b) => a + b, 0) - before.activities;
      if (done.runtimeStatus !== 'Completed') throw new Error(`scaling job ${jobId} ended ${done.runtimeStatus}: ${JSON.stringify(done.output)}`);
      const manifest = JSON.parse((await readBlob(service.getContainerClient('scaling-out'), `runs/${jobId}/_manifest.json`))!.data.toString()) as Manifest;
      const hostCpu = process.cpuUsage(before.host);
      const k = size / 1000;
      const row: ScalingRow = {
        perImageResults,
        images: manifest.counts.images,
        partitions: manifest.counts.partitions,
        seconds: Math.round(seconds * 10) / 10,
        msPerImage: Math.round((seconds * 1e5) / size) / 100,
        cpuPer1000: {
          host: Math.round(((hostCpu.user + hostCpu.system) / 1e6 / k) * 100) / 100,
          activities: Math.round((activityCpu / k) * 100) / 100,
          emulator: Math.round((((await cpuSeconds(azurite.process.pid!)) - before.emulator) / k) * 100) / 100,
        },
        emulatorRssMiB: await rssMiB(azurite.process.pid!),
      };
      log(`scaling: ${JSON.stringify(row)}`);
      rows.push(row);
    } finally {
      await host.stop();
    }
  }
  return rows;
}

if (require.main === module) {
  // Each series on a fresh emulator, as in `npm run bench`.
  const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
  void (async () => {
    const rows = [...(await withAzurite((a) => scalingBench(a, sizes.length ? sizes : undefined))), ...(await withAzurite((a) => scalingBench(a, sizes.length ? sizes : undefined, console.log, { perImageResults: false })))];
    console.table(rows.map((r) => ({ ...r, cpuPer1000: JSON.stringify(r.cpuPer1000) })));
  })();
}
