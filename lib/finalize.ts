/**
 * Fan-in: merges the partitions' outputs into the job's results.jsonl, coco_results.json and
 * _failures.jsonl, and writes _manifest.json. Streams part by part into staged blocks, so memory
 * stays bounded whatever the job size; rerunning it rewrites the same files.
 */
import { randomUUID } from 'node:crypto';
import type { ContainerClient } from '@azure/storage-blob';
import { decideOutcome, type JobStatus } from './jobFolder';
import type { JobSpec } from './jobs';
import type { JobTotals } from './orchestration';
import { addStages, partFailuresName, roundStages, partResultsName, partSummaryName, type FailureRecord, type ImageResult, type PartitionSummary, type StageTimings } from './pipeline';
import { MAX_FAILURE_ROWS, MAX_THUMBNAILS, renderReport, type ReportFailure, type ReportSample } from './report';
import { contentTypeFor, outputBlobName, readBlob, readJson, storageError, writeBlob, writeJson } from './storage';

/** Appends text to a block blob in blocks of about 4 MiB; commit() publishes it whole. */
class BlockWriter {
  private readonly ids: string[] = [];
  private chunks: Buffer[] = [];
  private size = 0;
  private readonly prefix = randomUUID().replace(/-/g, '').slice(0, 16);
  constructor(
    private readonly container: ContainerClient,
    readonly name: string,
  ) {}
  async write(text: string | Buffer): Promise<void> {
    const b = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    if (b.length === 0) return;
    this.chunks.push(b);
    this.size += b.length;
    if (this.size >= 4 * 1024 * 1024) await this.flush();
  }
  private async flush(): Promise<void> {
    if (this.size === 0) return;
    const id = Buffer.from(`${this.prefix}-${String(this.ids.length).padStart(6, '0')}`).toString('base64');
    const data = Buffer.concat(this.chunks, this.size);
    try {
      await this.container.getBlockBlobClient(this.name).stageBlock(id, data, data.length);
    } catch (err) {
      throw storageError(err, 'staging block', this.name);
    }
    this.ids.push(id);
    this.chunks = [];
    this.size = 0;
  }
  async commit(): Promise<void> {
    await this.flush();
    try {
      await this.container.getBlockBlobClient(this.name).commitBlockList(this.ids, { blobHTTPHeaders: { blobContentType: contentTypeFor(this.name) } });
    } catch (err) {
      throw storageError(err, 'committing blob', this.name);
    }
  }
}

export interface PartitionFailure {
  n: number;
  code: string;
  message: string;
}

export interface FinalizeInput {
  job: JobSpec;
  status: 'succeeded' | 'failed';
  totals: JobTotals;
  partitions: number;
  failedPartitions: PartitionFailure[];
  model: { name: string; etag: string };
  startedAt: string;
  endedAt: string;
}

export interface Manifest {
  jobId: string;
  /** How the job ended: as decided in _outcome.json (a cancel that came first makes it 'cancelled'). */
  status: JobStatus;
  counts: { images: number; succeeded: number; failed: number; skipped: number; detections: number; partitions: number; partitionsFailed: number };
  failedPercent: number;
  toleratedFailurePercent: number;
  model: { name: string; etag: string };
  params: JobSpec['params'];
  input: JobSpec['input'];
  output: JobSpec['output'] & { jobPrefix: string };
  /** Sum over images of each stage (stages overlap inside a partition). */
  stageMs: StageTimings;
  /** Per-image end-to-end latency histogram: bucket upper bounds in ms and counts. */
  latencyHistogram: { boundsMs: number[]; counts: number[] };
  submittedAt: string;
  startedAt: string;
  endedAt: string;
  wallSeconds: number;
  /** Activity time consumed (sum of partition wall times). */
  instanceSeconds: number;
  cost: CostEstimate;
  files: string[];
}

export interface CostSettings {
  instanceMemoryMB: number;
  pricePerGbSecond: number;
}

export interface CostEstimate extends CostSettings {
  instanceSeconds: number;
  gbSeconds: number;
  estimatedUsd: number;
}

export function estimateCost(instanceSeconds: number, s: CostSettings): CostEstimate {
  const gbSeconds = Math.round(instanceSeconds * (s.instanceMemoryMB / 1024) * 1000) / 1000;
  return { ...s, instanceSeconds, gbSeconds, estimatedUsd: Math.round(gbSeconds * s.pricePerGbSecond * 1e6) / 1e6 };
}

export const LATENCY_BOUNDS_MS = [25, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, Number.POSITIVE_INFINITY];

export async function finalizeJob(output: ContainerClient, input: FinalizeInput, costSettings: CostSettings): Promise<Manifest> {
  const p = input.job.jobPrefix;
  const results = new BlockWriter(output, `${p}results.jsonl`);
  const coco = new BlockWriter(output, `${p}coco_results.json`);
  const failures = new BlockWriter(output, `${p}_failures.jsonl`);
  const stageMs: StageTimings = { downloadMs: 0, decodeMs: 0, inferMs: 0, postMs: 0, writeMs: 0 };
  const counts = new Array<number>(LATENCY_BOUNDS_MS.length).fill(0);
  const failedParts = new Map(input.failedPartitions.map((f) => [f.n, f]));
  let imageId = 0;
  let firstCoco = true;
  // For the report: evenly sampled images, the first failures, when each partition ended.
  const stride = Math.max(1, Math.ceil((input.totals.succeeded + input.totals.skipped) / MAX_THUMBNAILS));
  const samples: ReportSample[] = [];
  const reportFailures: ReportFailure[] = [];
  let failuresTotal = 0;
  const partitionEnds: [number, number][] = [];
  const t0 = Date.parse(input.startedAt);
  await coco.write('[');
  for (let n = 0; n < input.partitions; n++) {
    const summary = await readJson<PartitionSummary>(output, partSummaryName(p, n));
    if (!summary) {
      const f = failedParts.get(n);
      const rec: ReportFailure = { blob: `(partition ${n})`, stage: 'partition', code: f?.code ?? 'PartitionFailed', message: f?.message ?? 'partition did not complete' };
      await failures.write(`${JSON.stringify(rec)}\n`);
      failuresTotal++;
      if (reportFailures.length < MAX_FAILURE_ROWS) reportFailures.push(rec);
      continue;
    }
    addStages(stageMs, summary.stageMs);
    for (const ms of summary.latenciesMs) counts[LATENCY_BOUNDS_MS.findIndex((b) => ms <= b)]!++;
    partitionEnds.push([Math.max(0, (Date.parse(summary.endedAt) - t0) / 1000), summary.images]);
    const res = await readBlob(output, partResultsName(p, n));
    if (res && res.data.length > 0) {
      await results.write(res.data);
      let cocoText = '';
      for (const line of res.data.toString('utf8').split('\n')) {
        if (line === '') continue;
        const r = JSON.parse(line) as ImageResult;
        imageId++;
        if ((imageId - 1) % stride === 0 && samples.length < MAX_THUMBNAILS) {
          samples.push({
            name: r.source.name,
            ...(input.job.output.overlays ? { overlay: outputBlobName(p, 'overlays', r.source.name, '.png').slice(p.length) } : {}),
            width: r.width,
            height: r.height,
            detections: r.detections.length,
            labels: r.detections.length ? r.detections.map((d) => d.label) : (r.classes ?? []).slice(0, 1).map((c) => c.label),
          });
        }
        for (const d of r.detections) {
          const ann = { image_id: imageId, file_name: r.source.name, category_id: d.category_id, bbox: d.bbox, score: d.score, ...(d.segmentation ? { segmentation: d.segmentation } : {}) };
          cocoText += `${firstCoco ? '' : ','}\n${JSON.stringify(ann)}`;
          firstCoco = false;
        }
      }
      await coco.write(cocoText);
    }
    const fail = await readBlob(output, partFailuresName(p, n));
    if (fail && fail.data.length > 0) {
      await failures.write(fail.data);
      for (const line of fail.data.toString('utf8').split('\n')) {
        if (line === '') continue;
        failuresTotal++;
        if (reportFailures.length < MAX_FAILURE_ROWS) reportFailures.push(JSON.parse(line) as ReportFailure);
      }
    }
  }
  await coco.write('\n]\n');
  await Promise.all([results.commit(), coco.commit(), failures.commit()]);
  roundStages(stageMs);
  // The outcome is decided once: this finalize's status, unless a cancel came first.
  const { status } = await decideOutcome(output, p, { status: input.status, executionId: input.job.executionId, by: 'finalize' }, input.endedAt);

  const t = input.totals;
  const manifest: Manifest = {
    jobId: input.job.jobId,
    status,
    counts: { images: t.images, succeeded: t.succeeded, failed: t.failed, skipped: t.skipped, detections: t.detections, partitions: input.partitions, partitionsFailed: t.partitionsFailed },
    failedPercent: t.images === 0 ? 0 : Math.round((10000 * t.failed) / t.images) / 100,
    toleratedFailurePercent: input.job.toleratedFailurePercent,
    model: input.model,
    params: input.job.params,
    input: input.job.input,
    output: { ...input.job.output, jobPrefix: p },
    stageMs,
    latencyHistogram: { boundsMs: LATENCY_BOUNDS_MS.map((b) => (Number.isFinite(b) ? b : -1)), counts },
    submittedAt: input.job.submittedAt,
    startedAt: input.startedAt,
    endedAt: input.endedAt,
    wallSeconds: Math.max(0, (Date.parse(input.endedAt) - Date.parse(input.startedAt)) / 1000),
    instanceSeconds: t.activitySeconds,
    cost: estimateCost(t.activitySeconds, costSettings),
    files: ['results.jsonl', 'coco_results.json', '_failures.jsonl', '_manifest.json', 'report.html'].map((f) => `${p}${f}`),
  };
  await writeBlob(output, `${p}report.html`, renderReport({ manifest, samples, failures: reportFailures, failuresTotal, partitionEnds }));
  await writeJson(output, `${p}_manifest.json`, manifest);
  return manifest;
}

export type { FailureRecord };
