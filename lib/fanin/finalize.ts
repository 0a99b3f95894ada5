/**
 * Fan-in by composition: the job's results.jsonl, coco_results.json and _failures.jsonl are put
 * together in storage from the fragments each partition wrote (Put Block From URL), so the bytes of
 * the results never pass through this activity and its time grows with the number of partitions,
 * not with the size of their results. It reads the partition summaries (small, bounded
 * concurrency), composes the three files (numbered files past 50,000 blocks), decides the outcome
 * and writes _manifest.json and report.html. A rerun (a retry after a timeout) reuses the blocks a
 * previous attempt staged and writes the same files.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { mapLimit } from '../util/concurrency';
import { decideOutcome } from '../job/folder';
import { OUTPUT_FORMATS } from '../job/request';
import {
  addStages,
  type AnnotatedSegment,
  LabelTally,
  LANDED_BOUNDS_S,
  sumCounts,
  emptyStages,
  LATENCY_BOUNDS_MS,
  mergeVideoStats,
  partitionOfPartName,
  partSummaryName,
  pieceFragmentName,
  pieceSummaryName,
  readAttempts,
  roundStages,
  shortMessage,
  type FailureRecord,
  type FragmentKind,
  type PartitionSummary,
  type PieceFragments,
  type StageTimings,
  type VideoStats,
} from '../partition/parts';
import { MAX_FAILURE_ROWS, MAX_THUMBNAILS, renderReport, type ReportFailure, type ReportSample } from './report';
import { EMPTY_PART, emptyParquetFile, PARQUET_DATASET } from '../partition/parquet';
import { commitDelta, DELETED_FILE_RETENTION_MS, DELTA_LOG, readDeltaState, type DeltaFile } from './delta';
import { joinAnnotatedVideos } from './videos';
import { estimateCost, type CostSettings, type FinalizeInput, type Manifest, type ParquetDataset } from './manifest';
import { composeBlob, emptyComposeStats, FragmentChanged, readJson, writeBlob, writeJson, type ComposeStats, type Part } from '../storage';
import { LakeInferError } from '../util/errors';
import type { PartitionCounts } from '../job/totals';

export { LATENCY_BOUNDS_MS };
export { estimateCost };
export type { CostEstimate, CostSettings, FinalizeInput, Manifest, ParquetDataset, PartitionFailure } from './manifest';

/** Partition summaries read per round (memory holds one round of them). */
const SUMMARY_CHUNK = 2_000;

export interface FinalizeOptions {
  /** Summaries read and blocks staged at once. */
  concurrency?: number;
  /** Blocks per output file (Azure's limit by default; tests use fewer). */
  maxBlocks?: number;
  /** The container of the job's shared Delta table (output.table). */
  table?: ContainerClient;
}

/** What finalize moved, and how (the benchmark reports it). */
export interface FinalizeStats extends ComposeStats {
  summaries: number;
  summaryBytes: number;
}

/** What finalize keeps of each partition while it composes: fragments, or why there are none. */
type PartInfo = { n: number; pieces: PieceFragments[]; counts: PartitionCounts } | { n: number; failure: ReportFailure };

/**
 * Partitions whose fragments changed after their summaries were written: finalize forgot their
 * summaries (so they run again) and names what they had counted, which the orchestrator takes off
 * its totals before it runs them again and finalizes once more.
 */
export class PartitionsToRecompute extends LakeInferError {
  constructor(readonly partitions: { n: number; counts: PartitionCounts }[], cause: FragmentChanged) {
    super('FragmentChanged', `${cause.message}; partition${partitions.length === 1 ? '' : 's'} ${partitions.map((p) => p.n).join(', ')} will run again`, { target: cause.source });
  }
}

function* fragmentParts(prefix: string, infos: readonly PartInfo[], kind: FragmentKind): Generator<Part> {
  for (const info of infos) {
    if (!('pieces' in info)) continue;
    for (const p of info.pieces) {
      const f = p[kind];
      // Composed only while it is the version the summary recorded (a source condition).
      if (f.bytes > 0) yield { key: `${kind}:${info.n}:${p.from}:${f.etag}`, source: f.name ?? pieceFragmentName(prefix, info.n, p.from, kind), offset: 0, count: f.bytes, etag: f.etag, ...(f.md5 ? { md5: f.md5 } : {}) };
    }
  }
}

function* failureParts(prefix: string, infos: readonly PartInfo[]): Generator<Part> {
  for (const info of infos) {
    if ('failure' in info) {
      yield { key: `partition-failure:${info.n}:${info.failure.code}:${info.failure.message}`, data: Buffer.from(`${JSON.stringify(info.failure)}\n`, 'utf8') };
      continue;
    }
    yield* fragmentParts(prefix, [info], 'failures');
  }
}

/** Where a job's rows go as a dataset: its own folder, or its partition of a table shared by jobs. */
interface DatasetPlace {
  container: ContainerClient;
  /** The table's folder (the dataset's root). */
  root: string;
  /** A shared table: the job's partition folder under the root (`job_id=<jobId>/`). */
  partition?: string;
}

async function settleParquetDataset(place: DatasetPlace, infos: readonly PartInfo[], concurrency: number, delta?: { jobId: string; operation: string }): Promise<ParquetDataset> {
  const parts: string[] = [];
  const files: DeltaFile[] = [];
  let rows = 0;
  let bytes = 0;
  for (const info of infos) {
    if (!('pieces' in info)) continue;
    for (const piece of info.pieces) {
      if (!piece.parquet) continue;
      const path = piece.parquet.table ? piece.parquet.name : piece.parquet.name.slice(PARQUET_DATASET.length);
      parts.push(path);
      files.push({ path, size: piece.parquet.bytes, rows: piece.parquet.rows, ...(piece.parquet.stats ? { stats: piece.parquet.stats } : {}) });
      rows += piece.parquet.rows;
      bytes += piece.parquet.bytes;
    }
  }
  if (parts.length === 0 && !place.partition) {
    // No rows (no images yet, or none listed): a schema-only part, so readers get 0 rows, not "no files".
    // (A shared table has its schema in its Delta log and other jobs' parts.)
    const empty = await emptyParquetFile({ 'lakeinfer.rows': '0' });
    await writeBlob(place.container, `${place.root}${EMPTY_PART.slice(PARQUET_DATASET.length)}`, empty);
    parts.push(EMPTY_PART.slice(PARQUET_DATASET.length));
    files.push({ path: EMPTY_PART.slice(PARQUET_DATASET.length), size: empty.length, rows: 0 });
    bytes += empty.length;
  }
  // The Delta commit comes first: a part it removes is deleted only once no version reads it.
  const commit = delta ? await commitDelta(place.container, place.root, files, { ...delta, now: Date.now(), ...(place.partition ? { partitioned: true, name: place.root } : {}) }) : undefined;
  const listed = new Set(parts);
  const stale: string[] = [];
  // A job's own folder holds only its current parts (plain Parquet readers read the folder). A shared
  // table is read as a Delta table: a file a commit removed stays for readers of older versions until
  // the retention passes, as Delta's VACUUM keeps it; files no version ever named go at once.
  const kept = place.partition ? (await readDeltaState(place.container, place.root)).removed : new Map<string, number>();
  const now = Date.now();
  for await (const b of place.container.listBlobsFlat({ prefix: `${place.root}${place.partition ?? ''}` })) {
    const rel = b.name.slice(place.root.length);
    const removedAt = kept.get(rel);
    if (!listed.has(rel) && !rel.startsWith(DELTA_LOG) && (removedAt === undefined || removedAt < now - DELETED_FILE_RETENTION_MS)) stale.push(b.name);
  }
  await mapLimit(stale, concurrency, (name) => place.container.getBlobClient(name).deleteIfExists());
  return {
    format: 'parquet',
    path: place.root,
    ...(place.partition ? { container: place.container.containerName, shared: true } : {}),
    parts,
    rows,
    bytes,
    removed: stale.length,
    ...(commit ? { delta: { version: commit.version, committed: commit.committed, added: commit.added, removed: commit.removed } } : {}),
  };
}

/** Forgets the summaries of the partition whose fragment changed (it runs again), and says what it had counted. */
async function forgetChanged(output: ContainerClient, p: string, infos: readonly PartInfo[], err: FragmentChanged): Promise<PartitionsToRecompute> {
  const n = partitionOfPartName(p, err.source);
  const info = infos.find((i) => i.n === n);
  if (n === undefined || !info || !('pieces' in info)) return new PartitionsToRecompute([], err);
  await output.getBlobClient(partSummaryName(p, n)).deleteIfExists();
  await mapLimit(info.pieces, 8, (piece) => output.getBlobClient(pieceSummaryName(p, n, piece.from)).deleteIfExists());
  return new PartitionsToRecompute([{ n, counts: info.counts }], err);
}

function count(it: Iterable<unknown>): number {
  let c = 0;
  for (const _ of it) c++;
  return c;
}

export async function finalizeJob(output: ContainerClient, input: FinalizeInput, costSettings: CostSettings, opts: FinalizeOptions = {}): Promise<Manifest & { stats: FinalizeStats }> {
  const p = input.job.jobPrefix;
  const concurrency = opts.concurrency ?? 32;
  const stats: FinalizeStats = { ...emptyComposeStats(), summaries: 0, summaryBytes: 0 };
  const stageMs: StageTimings = emptyStages();
  const latency = new Array<number>(LATENCY_BOUNDS_MS.length).fill(0);
  const failedParts = new Map(input.failedPartitions.map((f) => [f.n, f]));
  // For the report: samples from evenly spaced partitions, the first failures, when each partition ended.
  const sampleStride = Math.max(1, Math.ceil(input.partitions / MAX_THUMBNAILS));
  const samples: ReportSample[] = [];
  const reportFailures: ReportFailure[] = [];
  let failuresTotal = 0;
  const partitionEnds: [number, number][] = [];
  const t0 = Date.parse(input.startedAt);
  const cold = { modelLoads: 0, modelLoadMsTotal: 0, modelLoadMsMax: 0 };
  const firstResults: number[] = [];
  const videos: Record<string, VideoStats> = {};
  const labels = new LabelTally();
  let landed: number[] | undefined;
  const spans: [number, number][] = [];
  const segments: AnnotatedSegment[] = [];

  // Pass 1: every partition's summary (or why it has none), in order; what composing needs is kept,
  // the rest folded into the report's figures.
  type Read = { n: number; summary: PartitionSummary } | { n: number; failure: ReportFailure };
  const readOne = async (n: number): Promise<Read> => {
    const summary = await readJson<PartitionSummary>(output, partSummaryName(p, n));
    if (summary) return { n, summary };
    // A partition that did not complete: the orchestrator's reason, else its last attempt's.
    const listed = failedParts.get(n);
    const last = listed ? undefined : (await readAttempts(output, p, n, 0).catch(() => undefined))?.last;
    return { n, failure: { blob: `(partition ${n})`, stage: 'partition', code: listed?.code ?? last?.code ?? 'PartitionFailed', message: shortMessage(listed?.message ?? last?.message ?? 'partition did not complete') } };
  };
  const fold = (r: Read): PartInfo => {
    if ('failure' in r) {
      failuresTotal++;
      if (reportFailures.length < MAX_FAILURE_ROWS) reportFailures.push(r.failure);
      return r;
    }
    const sm = r.summary;
    stats.summaries++;
    stats.summaryBytes += Buffer.byteLength(JSON.stringify(sm));
    addStages(stageMs, sm.stageMs);
    sm.latencyCounts.forEach((c, i) => (latency[i]! += c));
    if ((sm.modelLoadMs ?? 0) > 50) {
      cold.modelLoads++;
      cold.modelLoadMsTotal += sm.modelLoadMs!;
      cold.modelLoadMsMax = Math.max(cold.modelLoadMsMax, sm.modelLoadMs!);
    }
    if (sm.firstResultMs !== undefined) {
      firstResults.push(sm.firstResultMs);
    }
    partitionEnds.push([Math.max(0, (Date.parse(sm.endedAt) - t0) / 1000), sm.images]);
    mergeVideoStats(videos, sm.videos);
    labels.merge(sm);
    if (sm.landedCounts) landed = sumCounts([landed, sm.landedCounts], LANDED_BOUNDS_S.length);
    spans.push([Date.parse(sm.startedAt), Date.parse(sm.endedAt)]);
    if (sm.annotated) segments.push(...sm.annotated);
    failuresTotal += sm.failed;
    for (const f of sm.failureHead) if (reportFailures.length < MAX_FAILURE_ROWS) reportFailures.push(f);
    if (r.n % sampleStride === 0) for (const x of sm.samples) if (samples.length < MAX_THUMBNAILS) samples.push(x);
    return { n: r.n, pieces: sm.pieces, counts: { images: sm.images, succeeded: sm.succeeded, failed: sm.failed, skipped: sm.skipped, detections: sm.detections, wallMs: sm.wallMs } };
  };
  const infos: PartInfo[] = [];
  // In rounds, so that at most one round of whole summaries is in memory.
  for (let first = 0; first < input.partitions; first += SUMMARY_CHUNK) {
    const ns = Array.from({ length: Math.min(SUMMARY_CHUNK, input.partitions - first) }, (_, i) => first + i);
    for (const r of await mapLimit(ns, concurrency, readOne)) infos.push(fold(r));
  }
  partitionEnds.sort((a, b) => a[0] - b[0]);

  // Pass 2: compose the three files in storage. A fragment that is not the version its summary
  // recorded is never composed: its partition runs again (PartitionsToRecompute).
  let composed: { resultsFiles: string[]; cocoFiles: string[]; dataset: ParquetDataset | undefined; failureFiles: string[] };
  try {
    const composeOpts = { concurrency, stats, ...(opts.maxBlocks ? { maxBlocks: opts.maxBlocks } : {}) };
    const numbered = (base: string, ext: string) => (i: number | undefined) => `${p}${base}${i === undefined ? '' : `-${String(i).padStart(5, '0')}`}${ext}`;
    const formats = input.job.output.formats ?? OUTPUT_FORMATS;
    const resultsFiles = formats.includes('jsonl') ? await composeBlob(output, { name: numbered('results', '.jsonl') }, count(fragmentParts(p, infos, 'results')), fragmentParts(p, infos, 'results'), composeOpts) : [];
    // COCO: '[' + fragments of ',\n{...}' + ']': the first fragment of each file is taken without its comma.
    const cocoFiles = formats.includes('coco') ? await composeBlob(output, { name: numbered('coco_results', '.json'), head: Buffer.from('['), tail: Buffer.from('\n]\n'), skipFirst: 1 }, count(fragmentParts(p, infos, 'coco')), fragmentParts(p, infos, 'coco'), composeOpts) : [];
    // Parquet: the pieces wrote their parts in place; the dataset is exactly the parts the summaries
    // name (a part left by an earlier, differently split run is removed, so readers of the folder see
    // each image once).
    const delta = formats.includes('delta') ? { jobId: input.job.jobId, operation: input.provisional ? 'STREAMING UPDATE' : 'WRITE' } : undefined;
    const place: DatasetPlace = opts.table && input.job.output.table ? { container: opts.table, root: input.job.output.table.path, partition: `job_id=${input.job.jobId}/` } : { container: output, root: `${p}${PARQUET_DATASET}` };
    const dataset = formats.includes('parquet') ? await settleParquetDataset(place, infos, concurrency, delta) : undefined;
    const failureFiles = await composeBlob(output, { name: numbered('_failures', '.jsonl') }, count(failureParts(p, infos)), failureParts(p, infos), composeOpts);
    composed = { resultsFiles, cocoFiles, dataset, failureFiles };
  } catch (err) {
    if (!(err instanceof FragmentChanged)) throw err;
    throw await forgetChanged(output, p, infos, err);
  }
  const { resultsFiles, cocoFiles, dataset, failureFiles } = composed;
  // Annotated videos: joined once the job ends (a continuous job's running totals leave them for the end).
  const annotated = !input.provisional && input.job.output.overlays === true && segments.length > 0 ? await joinAnnotatedVideos(output, p, segments) : undefined;
  roundStages(stageMs);
  // The outcome is decided once: this finalize's status, unless a cancel came first.
  const status: Manifest['status'] = input.provisional ? 'running' : (await decideOutcome(output, p, { status: input.status, executionId: input.job.executionId, by: 'finalize' }, input.endedAt)).status;

  const t = input.totals;
  const manifest: Manifest = {
    jobId: input.job.jobId,
    status,
    counts: { images: t.images, succeeded: t.succeeded, failed: t.failed, skipped: t.skipped, detections: t.detections, partitions: input.partitions, partitionsFailed: t.partitionsFailed },
    failedPercent: t.images === 0 ? 0 : Math.round((10000 * t.failed) / t.images) / 100,
    toleratedFailurePercent: input.job.toleratedFailurePercent,
    ...(input.job.toleratedFailureCount !== undefined && input.job.toleratedFailureCount >= 0 ? { toleratedFailureCount: input.job.toleratedFailureCount } : {}),
    model: input.model,
    params: input.job.params,
    input: input.job.input,
    output: { ...input.job.output, jobPrefix: p },
    stageMs,
    latencyHistogram: { boundsMs: LATENCY_BOUNDS_MS.map((b) => (Number.isFinite(b) ? b : -1)), counts: latency },
    submittedAt: input.job.submittedAt,
    startedAt: input.startedAt,
    endedAt: input.endedAt,
    wallSeconds: Math.max(0, (Date.parse(input.endedAt) - Date.parse(input.startedAt)) / 1000),
    instanceSeconds: t.activitySeconds,
    coldStart: {
      ...cold,
      modelLoadMsTotal: Math.round(cold.modelLoadMsTotal),
      modelLoadMsMax: Math.round(cold.modelLoadMsMax),
      firstResultMsMean: firstResults.length ? Math.round(firstResults.reduce((a, b) => a + b, 0) / firstResults.length) : 0,
      firstResultMsMax: Math.round(firstResults.reduce((a, b) => Math.max(a, b), 0)),
    },
    cost: estimateCost(t.activitySeconds, costSettings),
    ...(labels.summary().labels ? { labels: { kind: labels.summary().classes ? 'classes' : 'detections', top: labels.ranked(), scoreHistogram: labels.summary().scoreBins! } } : {}),
    busySeconds: busySeconds(spans),
    ...(annotated ? { annotatedVideos: annotated.videos, ...(annotated.skipped.length ? { annotatedVideosSkipped: annotated.skipped } : {}) } : {}),
    ...(landed ? { landedLatency: { boundsS: LANDED_BOUNDS_S.map((b) => (Number.isFinite(b) ? b : -1)), counts: landed } } : {}),
    files: [...resultsFiles, ...cocoFiles, ...(dataset && !dataset.shared ? [`${p}${PARQUET_DATASET}`] : []), ...failureFiles, ...Object.values(annotated?.videos ?? {}).map((v) => `${p}${v}`), `${p}_manifest.json`, `${p}report.html`],
    ...(dataset ? { datasets: { results: dataset } } : {}),
  };
  await writeBlob(output, `${p}report.html`, renderReport({ manifest, samples, failures: reportFailures, failuresTotal, partitionEnds, ...(Object.keys(videos).length ? { videos } : {}) }));
  await writeJson(output, `${p}_manifest.json`, manifest);
  return { ...manifest, stats };
}

export type { FailureRecord };

/** The length of the union of the time spans (ms), in seconds: when some partition was running. */
export function busySeconds(spans: [number, number][]): number {
  let total = 0;
  let end = -Infinity;
  for (const [a, b] of [...spans].filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).sort((x, y) => x[0] - y[0])) {
    if (b <= end) continue;
    total += b - Math.max(a, end);
    end = b;
  }
  return Math.round(total) / 1000;
}
