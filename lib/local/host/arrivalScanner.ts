/**
 * The local host's stand-in for Event Grid (Azurite has none): every running continuous job's
 * input prefix is listed by last-modified time and what landed is recorded as arrivals, the records
 * the Event Grid function writes on Azure (lib/continuous/collect.ts). From there both take the same path.
 */
import type { BlobServiceClient } from '@azure/storage-blob';
import { scanForArrivals } from '../../continuous/collect';
import { jobOf, type JobSpec } from '../../job/request';
import { ORCHESTRATOR } from '../../orchestration/orchestrator';
import type { InstanceRecord } from '../durable/engine';

function continuousJob(rec: InstanceRecord): JobSpec | undefined {
  if (rec.name !== ORCHESTRATOR || (rec.runtimeStatus !== 'Running' && rec.runtimeStatus !== 'Pending')) return undefined;
  const job = jobOf(rec.input);
  return job?.mode === 'continuous' ? job : undefined;
}

export interface ArrivalScanner {
  stop(): Promise<void>;
}

/** Scans each continuous job every half of its pollSeconds (at most one scan at a time). */
export function startArrivalScanner(records: () => InstanceRecord[], service: () => BlobServiceClient, log: (m: string) => void, tickMs = 250): ArrivalScanner {
  const last = new Map<string, number>();
  let running: Promise<void> | undefined;
  let stopped = false;
  const tick = async (): Promise<void> => {
    for (const rec of records()) {
      if (stopped) return;
      const job = continuousJob(rec);
      if (!job) continue;
      const now = Date.now();
      if (now - (last.get(rec.instanceId) ?? 0) < (job.pollSeconds * 1000) / 2) continue;
      last.set(rec.instanceId, now);
      const svc = service();
      try {
        const n = await scanForArrivals(svc.getContainerClient(job.input.container), svc.getContainerClient(job.output.container), { input: job.input, output: job.output, jobPrefix: job.jobPrefix });
        if (n > 0) log(`continuous job ${job.jobId}: ${n} blobs landed`);
      } catch (err) {
        log(`continuous job ${job.jobId}: scan failed: ${(err as Error).message.split('\n')[0]}`);
      }
    }
  };
  const timer = setInterval(() => {
    running ??= tick().finally(() => (running = undefined));
  }, tickMs);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
