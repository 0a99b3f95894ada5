/**
 * Planning a listing in steps, so that partitions start while the listing goes on. The first step
 * lists what fills the window ('auto': until the size is decided, window x AUTO_MAX matching items
 * or the end of the listing; a fixed size: window x size items, at most a chunk) and writes the
 * partitions it has; every later step lists one more chunk (PLAN_CHUNK_ITEMS blobs of the listing,
 * matching or not) from where the last one stopped. Between steps the position is kept in
 * `_plan/progress.json`: the listing's continuation token, the partitions and items so far, and
 * the items of a partition not yet full (`carry`, fewer than one partition). The last step writes
 * the final partition and `_plan/index.json` (the plan is complete) and drops the progress.
 *
 * A step is idempotent: the same position lists the same page and writes the same plan files, and
 * the progress moves on only if it is still the version the step started from (ETag), so a step
 * delivered twice (at-least-once) leaves one plan. A resumed job continues from the progress.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { autoPartitionSize, AUTO_MAX } from '../util/partitions';
import { readBlob, readJson, writeJson } from './blobs';
import { listBlobPages, type BlobRef, type ListOptions } from './listing';
import { planBlobName, planIndexName, type PlanIndex, type PlanPartition } from './plan';

export interface PlanProgress {
  jobId: string;
  partitions: number;
  total: number;
  bytes: number;
  partitionSize: number;
  model: PlanIndex['model'];
  inputContainer: string;
  /** Where the listing goes on (undefined: it has not started). */
  token?: string;
  /** Items listed so far (for maxItems). */
  listed: number;
  /** Items of the next partition, not yet full. */
  carry: BlobRef[];
}

export const planProgressName = (prefix: string): string => `${prefix}_plan/progress.json`;

export interface PlanStepOptions extends ListOptions {
  jobId: string;
  jobPrefix: string;
  partitionSize: number | 'auto';
  window: number;
  model: PlanIndex['model'];
  exclude?: { container: string; prefix: string };
  /** Items one step lists at most (after the first, which lists until the size is decided). */
  chunkItems: number;
  /** Plan files written at once. */
  concurrency?: number;
}

export interface PlanStep {
  index: PlanIndex;
  /** The listing goes on: the plan holds `index.partitions` so far. */
  more: boolean;
}

async function writeParts(output: ContainerClient, prefix: string, parts: PlanPartition[], concurrency: number): Promise<void> {
  for (let i = 0; i < parts.length; i += concurrency) await Promise.all(parts.slice(i, i + concurrency).map((p) => writeJson(output, planBlobName(prefix, p.n), p)));
}

/** One step of the plan (see the file's header). */
export async function planStep(input: ContainerClient, output: ContainerClient, opts: PlanStepOptions): Promise<PlanStep> {
  const done = await readJson<PlanIndex>(output, planIndexName(opts.jobPrefix));
  if (done) return { index: done, more: false };
  const name = planProgressName(opts.jobPrefix);
  const got = await readBlob(output, name);
  const progress: PlanProgress = got
    ? (JSON.parse(got.data.toString('utf8')) as PlanProgress)
    : { jobId: opts.jobId, partitions: 0, total: 0, bytes: 0, partitionSize: opts.partitionSize === 'auto' ? 0 : opts.partitionSize, model: opts.model, inputContainer: input.containerName, listed: 0, carry: [] };
  const first = progress.partitionSize === 0;
  // The first step lists what fills the window (an 'auto' size: until the size is decided, window x
  // AUTO_MAX items), so partitions start soon; every later step lists one chunk.
  const window = Math.max(1, opts.window);
  const want = first ? window * AUTO_MAX : progress.listed === 0 ? Math.max(progress.partitionSize, Math.min(opts.chunkItems, window * progress.partitionSize)) : Math.max(1, opts.chunkItems);
  const skip = opts.exclude?.container === input.containerName ? opts.exclude.prefix : undefined;
  const items: BlobRef[] = [];
  let token = progress.token;
  let ended = false;
  let listed = progress.listed;
  const max = opts.maxItems ?? Number.POSITIVE_INFINITY;
  const pageSize = Math.min(5000, want);
  let pages = 0;
  for await (const page of listBlobPages(input, { ...opts, maxItems: max - listed, pageSize, ...(token ? { continuationToken: token } : {}) })) {
    listed += page.items.length;
    for (const b of page.items) if (skip === undefined || !b.name.startsWith(skip)) items.push(b);
    token = page.continuationToken;
    if (token === undefined || listed >= max) {
      ended = true;
      break;
    }
    // A step ends once it has what it wants; a later step also after its pages' worth of the
    // listing, however few of them matched (a step's time stays bounded on a sparse listing).
    if (items.length >= want || (!first && ++pages * pageSize >= want)) break;
  }
  if (!token && !ended && progress.token === undefined && items.length === 0) ended = true;
  const size = first ? (ended ? autoPartitionSize(items.length, opts.window) : AUTO_MAX) : progress.partitionSize;
  const pool = [...progress.carry, ...items];
  const parts: PlanPartition[] = [];
  let n = progress.partitions;
  let total = progress.total;
  let bytes = progress.bytes;
  let at = 0;
  while (pool.length - at >= size || (ended && at < pool.length)) {
    const blobs = pool.slice(at, at + size);
    parts.push({ jobId: opts.jobId, n, first: total, blobs });
    n++;
    total += blobs.length;
    bytes += blobs.reduce((s, b) => s + b.size, 0);
    at += blobs.length;
  }
  await writeParts(output, opts.jobPrefix, parts, opts.concurrency ?? 8);
  const index: PlanIndex = { jobId: opts.jobId, inputContainer: input.containerName, partitions: n, total, bytes, partitionSize: size, model: progress.model };
  if (ended) {
    await writeJson(output, planIndexName(opts.jobPrefix), index);
    await output.getBlobClient(name).deleteIfExists();
    return { index, more: false };
  }
  const next: PlanProgress = { ...progress, partitions: n, total, bytes, partitionSize: size, ...(token ? { token } : {}), listed, carry: pool.slice(at) };
  const moved = await writeJson(output, name, next, got ? { ifMatch: got.etag } : { ifNotExists: true });
  if (moved === false) {
    // Another delivery of this step moved the progress first (it wrote the same plan files).
    const theirs = await readJson<PlanProgress>(output, name);
    const finished = await readJson<PlanIndex>(output, planIndexName(opts.jobPrefix));
    if (finished) return { index: finished, more: false };
    if (theirs) return { index: { ...index, partitions: theirs.partitions, total: theirs.total, bytes: theirs.bytes, partitionSize: theirs.partitionSize }, more: true };
  }
  return { index, more: true };
}
