/**
 * The full pipeline through the local host under one layout, cold (from the host's start) and warm,
 * with CPU per image by component: used by `npm run bench` (bench/run.ts) and bench/layouts.ts.
 */
import { BlobServiceClient } from '@azure/storage-blob';
import type { Manifest } from '../lib/fanin/finalize';
import { submit, watch } from '../lib/cli/client';
import { startLocalHost } from '../lib/local/host/host';
import { readBlob } from '../lib/storage';
import { measured, threadCpu, treeCpu, type Figure } from './cpu';

const r2 = (v: number): number => Math.round(v * 100) / 100;

export interface PipelineRun {
  imagesPerSec: number;
  manifest: Manifest;
  /** Wall seconds, foreign cores and whether the figure is contaminated (bench/cpu.ts). */
  figure: Omit<Figure<unknown>, 'value'>;
  /** CPU ms per image by component. */
  cpuMsPerImage: Record<string, number>;
}

/** A way to run the pipeline: the defaults a user gets, or settings the bench compares them with. */
export interface PipelineLayout {
  label: string;
  /** Activity processes of the local host (undefined: the host's default, as `lakeinfer host` starts it). */
  processes?: number;
  settings?: Record<string, string>;
  /** Request fields besides input, output and model (none: the request's defaults). */
  job?: Record<string, unknown>;
}

export interface LayoutResult {
  label: string;
  cold: PipelineRun;
  warm: PipelineRun;
  peakRss: number;
  processStartMs: number;
}

export const figureOf = (f: Figure<unknown>): Omit<Figure<unknown>, 'value'> => ({ wallS: r2(f.wallS), ownCpuS: r2(f.ownCpuS), foreignCores: f.foreignCores, contaminated: f.contaminated });

/**
 * The full pipeline through the local host, under one layout: cold is timed from before the host
 * starts (its processes spawn, load the model and see each input shape for the first time) to the
 * job's end, from the POST as a user submits it; warm is the same job again under another id.
 * CPU per image by component: the host (this process: engine, HTTP, the submit and watch), the
 * emulator, the activity processes' main threads (download, decode, reference preprocessing,
 * storage client, serialisation) and their other threads (inference workers, libvips, GC).
 */
export async function pipeline(cs: string, model: string, prefix: string, jobId: string, layout: PipelineLayout, emulatorPid: number): Promise<LayoutResult> {
  const out = BlobServiceClient.fromConnectionString(cs).getContainerClient('bench-out');
  let processStartMs = 0;
  let host: Awaited<ReturnType<typeof startLocalHost>> | undefined;
  const once = async (id: string): Promise<{ manifest: Manifest; cpu: Record<string, number> }> => {
    const pids = host!.pool.pids();
    const before = { host: process.cpuUsage(), emulator: treeCpu(emulatorPid).get(emulatorPid) ?? 0, threads: pids.map((p) => threadCpu(p)) };
    await submit({ url: host!.url }, { jobId: id, input: { container: 'bench', prefix }, output: { container: 'bench-out', prefix: 'runs/' }, model: { name: model }, ...layout.job });
    // Polled as the CLI polls (POLL_MS): the status requests' cost is the one a user's `lakeinfer run` adds.
    const done = await watch({ url: host!.url }, id, () => undefined);
    if (done.runtimeStatus !== 'Completed') throw new Error(`bench job ${id} ended ${done.runtimeStatus}: ${JSON.stringify(done.output)}`);
    const h = process.cpuUsage(before.host);
    let main = 0;
    let other = 0;
    pids.forEach((p, i) => {
      for (const [k, v] of threadCpu(p)) {
        const d = v - (before.threads[i]!.get(k) ?? 0);
        if (k === 'main') main += d;
        else other += d;
      }
    });
    const manifest = JSON.parse((await readBlob(out, `runs/${id}/_manifest.json`))!.data.toString()) as Manifest;
    const n = manifest.counts.images || 1;
    const per = (sec: number): number => Math.round((sec * 1000 * 10) / n) / 10;
    return {
      manifest,
      cpu: {
        host: per((h.user + h.system) / 1e6),
        emulator: per((treeCpu(emulatorPid).get(emulatorPid) ?? 0) - before.emulator),
        activityMain: per(main),
        activityOther: per(other),
        inference: Math.round((manifest.stageMs.inferMs / n) * 10) / 10,
      },
    };
  };
  try {
    const cold = await measured(async () => {
      const t = performance.now();
      host = await startLocalHost({ storageConnectionString: cs, ...(layout.processes ? { activityProcesses: layout.processes } : {}), settings: { MODELS_CONTAINER: 'models', ...layout.settings }, log: () => undefined, activityOutput: () => undefined });
      processStartMs = performance.now() - t;
      return once(`${jobId}-cold`);
    });
    const warm = await measured(() => once(`${jobId}-warm`));
    const peakRss = Math.max(0, ...(await host!.pool.peakMemory()));
    const run = (f: Figure<{ manifest: Manifest; cpu: Record<string, number> }>): PipelineRun => ({ imagesPerSec: f.value.manifest.counts.images / f.wallS, manifest: f.value.manifest, figure: figureOf(f), cpuMsPerImage: f.value.cpu });
    return { label: layout.label, cold: run(cold), warm: run(warm), peakRss, processStartMs };
  } finally {
    await host?.stop();
  }
}

