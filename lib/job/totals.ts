/**
 * A job's running counts, its progress and its failure threshold: pure arithmetic the orchestrator
 * keeps on replay and finalize and the API read. Nothing here does I/O or reads clocks.
 */

export interface JobTotals {
  partitionsDone: number;
  partitionsFailed: number;
  images: number;
  succeeded: number;
  failed: number;
  skipped: number;
  detections: number;
  /** Sum of the partitions' wall time: activity instance-seconds. */
  activitySeconds: number;
}

export const EMPTY_TOTALS: JobTotals = { partitionsDone: 0, partitionsFailed: 0, images: 0, succeeded: 0, failed: 0, skipped: 0, detections: 0, activitySeconds: 0 };

export interface PartitionCounts {
  images: number;
  succeeded: number;
  failed: number;
  skipped: number;
  detections: number;
  wallMs: number;
}

export function addPartition(t: JobTotals, p: PartitionCounts): JobTotals {
  return {
    ...t,
    partitionsDone: t.partitionsDone + 1,
    images: t.images + p.images,
    succeeded: t.succeeded + p.succeeded,
    failed: t.failed + p.failed,
    skipped: t.skipped + p.skipped,
    detections: t.detections + p.detections,
    activitySeconds: Math.round((t.activitySeconds + p.wallMs / 1000) * 1000) / 1000,
  };
}

/** Takes a partition's counts off again (a partition that runs again: its new counts are added then). */
export function removePartition(t: JobTotals, p: PartitionCounts): JobTotals {
  return {
    ...t,
    partitionsDone: t.partitionsDone - 1,
    images: t.images - p.images,
    succeeded: t.succeeded - p.succeeded,
    failed: t.failed - p.failed,
    skipped: t.skipped - p.skipped,
    detections: t.detections - p.detections,
  };
}

/** A partition that exhausted its retries: all its images count as failed. */
export function addFailedPartition(t: JobTotals, images: number): JobTotals {
  return { ...t, partitionsFailed: t.partitionsFailed + 1, images: t.images + images, failed: t.failed + images };
}

/** Percentage of images that failed (images of failed partitions included). */
export function failedPercent(t: JobTotals): number {
  return t.images === 0 ? 0 : (100 * t.failed) / t.images;
}

/**
 * The failure rules: a job fails when more than `toleratedFailurePercent` of its images failed, or
 * when more than `toleratedFailureCount` images failed (-1 or absent: no limit by count). Either
 * rule may end it. Images of failed partitions count as failed images.
 */
export function jobSucceeded(t: JobTotals, toleratedFailurePercent: number, toleratedFailureCount?: number): boolean {
  if (toleratedFailureCount !== undefined && toleratedFailureCount >= 0 && t.failed > toleratedFailureCount) return false;
  return failedPercent(t) <= toleratedFailurePercent;
}

/** Why a job failed by its rules (undefined if it did not). */
export function failureReason(t: JobTotals, toleratedFailurePercent: number, toleratedFailureCount?: number): string | undefined {
  if (jobSucceeded(t, toleratedFailurePercent, toleratedFailureCount)) return undefined;
  const pct = `${failedPercent(t).toFixed(2)}%`;
  if (toleratedFailureCount !== undefined && toleratedFailureCount >= 0 && t.failed > toleratedFailureCount) return `${t.failed} of ${t.images} images failed (${pct}), more than the tolerated count ${toleratedFailureCount}`;
  return `${t.failed} of ${t.images} images failed (${pct}), more than the tolerated ${toleratedFailurePercent}%`;
}

export interface JobProgress {
  /** 'watching': a continuous job waiting for new blobs. */
  phase: 'planning' | 'inferring' | 'watching' | 'finalizing' | 'done';
  partitions: { total: number; done: number; failed: number };
  images: { total: number; succeeded: number; failed: number; skipped: number };
  generation: number;
}

export function progressOf(phase: JobProgress['phase'], totalPartitions: number, totalImages: number, t: JobTotals, generation: number): JobProgress {
  return {
    phase,
    partitions: { total: totalPartitions, done: t.partitionsDone, failed: t.partitionsFailed },
    images: { total: totalImages, succeeded: t.succeeded, failed: t.failed, skipped: t.skipped },
    generation,
  };
}
