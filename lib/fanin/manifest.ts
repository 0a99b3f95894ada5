/**
 * What fan-in produces and reads: the finalize activity's input, the job's manifest
 * (_manifest.json) and its cost estimate. Types and pure arithmetic only; finalize.ts writes
 * them and report.ts renders them.
 */
import type { JobStatus } from '../job/folder';
import type { JobSpec } from '../job/request';
import type { JobTotals } from '../job/totals';
import type { StageTimings } from '../partition/parts';

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
  /** A continuous job's running totals: the outcome is not decided, the manifest says 'running'. */
  provisional?: boolean;
}

export interface Manifest {
  jobId: string;
  /**
   * How the job ended: as decided in _outcome.json (a cancel that came first makes it 'cancelled');
   * 'running' in a continuous job's running totals.
   */
  status: JobStatus | 'running';
  counts: { images: number; succeeded: number; failed: number; skipped: number; detections: number; partitions: number; partitionsFailed: number };
  failedPercent: number;
  toleratedFailurePercent: number;
  /** More failed images than this fail the job (absent: no limit by count). */
  toleratedFailureCount?: number;
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
  /** Cold starts: model loads the partitions waited for, and the time from a partition's start to its first result. */
  coldStart: { modelLoads: number; modelLoadMsTotal: number; modelLoadMsMax: number; firstResultMsMean: number; firstResultMsMax: number };
  /**
   * What was found, by label, most frequent first (at most 200): every detection of a detector, the
   * top class of each image for a classifier (`kind: 'classes'`); and all their scores in ten bins of 0.1.
   */
  labels?: { kind: 'detections' | 'classes'; top: { label: string; count: number; meanScore: number }[]; scoreHistogram: number[] };
  /** Seconds some partition was running (the union of their times): throughput without a continuous job's idle time. */
  busySeconds?: number;
  /** A continuous job's arrivals: seconds from a blob landing to its result, counts by bucket upper bound (-1: open). */
  landedLatency?: { boundsS: number[]; counts: number[] };
  /** With every overlay on: each video's annotated video (`overlays/<video>.mp4`, relative to the job folder). */
  annotatedVideos?: Record<string, string>;
  /** Videos left without an annotated video, and why. */
  annotatedVideosSkipped?: { video: string; reason: string }[];
  /** Results as datasets: `results` is the Parquet dataset (when the job's formats include it). */
  datasets?: { results: ParquetDataset };
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

/** The Parquet dataset of a job: its parts in partition order, and the folder holding only them. */
export interface ParquetDataset {
  format: 'parquet';
  /** The folder (blob prefix) Spark, DuckDB and pandas read as one table. */
  path: string;
  /** A table shared by jobs (output.table), partitioned by job_id: its container (the parts are the job's partition). */
  container?: string;
  shared?: boolean;
  /** Part names relative to the folder, in partition order. */
  parts: string[];
  rows: number;
  bytes: number;
  /** Parts found in the folder that no partition names (an earlier run's), deleted. */
  removed: number;
  /** With the 'delta' format: the folder is a Delta table too; its version after this finalize and what the commit changed. */
  delta?: { version: number; committed: boolean; added: number; removed: number };
}
