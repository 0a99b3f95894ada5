/**
 * Plan files: <jobPrefix>_plan/<n>.json per partition, then _plan/index.json as the commit marker.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { LakeInferError } from '../util/errors';
import { autoPartitionStream, partitionStream } from '../util/partitions';
import { readBlob, readJson, writeJson } from './blobs';
import { listBlobPages, type BlobPage, type BlobRef, type ListOptions } from './listing';

export interface PlanPartition {
  jobId: string;
  n: number;
  /** Index of the partition's first blob in the whole plan (image ids in COCO results derive from it). */
  first: number;
  blobs: BlobRef[];
}

export interface PlanIndex {
  jobId: string;
  inputContainer: string;
  partitions: number;
  total: number;
  bytes: number;
  partitionSize: number;
  /** The model version every partition of this plan runs (see lib/model/cache.ts). */
  model: { name: string; etag: string; jsonEtag: string };
}

export function planBlobName(prefix: string, n: number): string {
  return `${prefix}_plan/${n}.json`;
}
export function planIndexName(prefix: string): string {
  return `${prefix}_plan/index.json`;
}

export interface WritePlanOptions extends ListOptions {
  jobId: string;
  jobPrefix: string;
  /** A number, or 'auto': chosen from the item count and `window` (autoPartitionSize); the index records the size. */
  partitionSize: number | 'auto';
  /** The job's window of partitions in flight (maxParallelPartitions), for 'auto'. */
  window?: number;
  /** For 'auto': the fewest items a partition gets while the window is not full (default AUTO_MIN). */
  minAutoSize?: number;
  model: PlanIndex['model'];
  /** Blobs never planned: the job's own folder when it shares the input's container. */
  exclude?: { container: string; prefix: string };
  /** Plan files written concurrently while listing goes on. */
  concurrency?: number;
  /** The blobs to plan when they do not come from listing `input` (a manifest). */
  source?: AsyncIterable<BlobPage>;
  /** Turns a page's items into plan items (a video into one item per frame taken, lib/video/plan.ts). */
  expand?: (items: BlobRef[]) => Promise<BlobRef[]>;
}

/**
 * Lists the input container and writes one plan file per partition, streaming: memory holds one
 * partition and a few uploads, whatever the container's size. index.json is written last, so a
 * plan with an index is complete and a resumed job reuses it instead of listing again.
 */
export async function writePlan(input: ContainerClient, output: ContainerClient, opts: WritePlanOptions): Promise<PlanIndex> {
  const existing = await readJson<PlanIndex>(output, planIndexName(opts.jobPrefix));
  if (existing !== undefined) return existing;

  const skip = opts.exclude?.container === input.containerName ? opts.exclude.prefix : undefined;
  const pages = (async function* () {
    for await (const page of opts.source ?? listBlobPages(input, opts)) {
      const items = skip === undefined ? page.items : page.items.filter((b) => !b.name.startsWith(skip));
      yield opts.expand ? await opts.expand(items) : items;
    }
  })();
  const inFlight = new Set<Promise<unknown>>();
  const limit = opts.concurrency ?? 8;
  let failure: { err: unknown } | undefined;
  let n = 0;
  let total = 0;
  let bytes = 0;
  let size = opts.partitionSize === 'auto' ? 0 : opts.partitionSize;
  const parts = opts.partitionSize === 'auto' ? autoPartitionStream(pages, opts.window ?? 32, (s) => (size = s), opts.minAutoSize) : partitionStream(pages, opts.partitionSize);
  for await (const blobs of parts) {
    if (failure) break;
    const part: PlanPartition = { jobId: opts.jobId, n, first: total, blobs };
    total += blobs.length;
    bytes += blobs.reduce((s, b) => s + b.size, 0);
    const p: Promise<unknown> = writeJson(output, planBlobName(opts.jobPrefix, n), part)
      .catch((err: unknown) => {
        failure ??= { err };
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    n++;
    if (inFlight.size >= limit) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failure) throw failure.err;
  const index: PlanIndex = { jobId: opts.jobId, inputContainer: input.containerName, partitions: n, total, bytes, partitionSize: size, model: opts.model };
  await writeJson(output, planIndexName(opts.jobPrefix), index);
  return index;
}

/** Partition n of the plan, with the ETag of its plan file. */
export async function readPlan(output: ContainerClient, prefix: string, n: number): Promise<PlanPartition & { etag: string }> {
  const got = await readBlob(output, planBlobName(prefix, n));
  let plan: PlanPartition | undefined;
  try {
    plan = got === undefined ? undefined : (JSON.parse(got.data.toString('utf8')) as PlanPartition);
  } catch {
    throw new LakeInferError('PlanInvalid', `plan file ${planBlobName(prefix, n)} is not valid JSON`, { target: planBlobName(prefix, n) });
  }
  if (plan === undefined) {
    throw new LakeInferError('PlanInvalid', `plan file ${planBlobName(prefix, n)} is missing from container '${output.containerName}'`, {
      target: planBlobName(prefix, n),
    });
  }
  if (plan.n !== n || !Array.isArray(plan.blobs) || !Number.isInteger(plan.first)) {
    throw new LakeInferError('PlanInvalid', `plan file ${planBlobName(prefix, n)} is malformed`, { target: planBlobName(prefix, n) });
  }
  return { ...plan, etag: got!.etag };
}
