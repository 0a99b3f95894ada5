/**
 * Pure helpers for the orchestration: partitioning, progress and thresholds.
 * Nothing here does I/O or reads clocks, so the orchestrator can call it on replay.
 */

/** Splits items into consecutive partitions of at most `size` items (the last may be smaller). */
export function splitIntoPartitions<T>(items: readonly T[], size: number): T[][] {
  assertPartitionSize(size);
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Re-chunks a stream of pages (whatever size the service returned) into partitions of exactly
 * `size` items, the last one possibly smaller. Memory stays at one partition plus one page.
 */
export async function* partitionStream<T>(pages: AsyncIterable<readonly T[]>, size: number): AsyncGenerator<T[]> {
  assertPartitionSize(size);
  let current: T[] = [];
  for await (const page of pages) {
    for (const item of page) {
      current.push(item);
      if (current.length === size) {
        yield current;
        current = [];
      }
    }
  }
  if (current.length > 0) yield current;
}

function assertPartitionSize(size: number): void {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`partition size must be a positive integer, got ${size}`);
}

/** Images in partition n of a plan of `total` images split by `size` (every partition is full but the last). */
export function partitionImageCount(n: number, total: number, size: number): number {
  return Math.max(0, Math.min(size, total - n * size));
}

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

/** A partition that exhausted its retries: all its images count as failed. */
export function addFailedPartition(t: JobTotals, images: number): JobTotals {
  return { ...t, partitionsFailed: t.partitionsFailed + 1, images: t.images + images, failed: t.failed + images };
}

/** Percentage of images that failed (images of failed partitions included). */
export function failedPercent(t: JobTotals): number {
  return t.images === 0 ? 0 : (100 * t.failed) / t.images;
}

export function jobSucceeded(t: JobTotals, toleratedFailurePercent: number): boolean {
  return failedPercent(t) <= toleratedFailurePercent;
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
