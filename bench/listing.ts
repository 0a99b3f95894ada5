/**
 * Planning a large listing (issue 26): N blobs (100,000 by default; BENCH_LISTING) in Azurite,
 * planned whole (writePlan, as manifests and videos are) and in steps (planStep, as a batch job
 * over a listing is: its first partitions start while the listing goes on). Reports when the first
 * partitions could start and when the plan was complete, for both. Run alone with
 * `node dist/bench/listing.js [N]`, or as part of `npm run bench`.
 */
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { withAzurite } from '../lib/local/azurite/azurite';
import { mapLimit, writePlan } from '../lib/storage';
import { planStep } from '../lib/storage/planStream';

export interface ListingBenchRow {
  blobs: number;
  partitions: number;
  /** Whole planning: the first partition starts when the plan activity returns, the plan complete. */
  wholePlanSeconds: number;
  /** In steps (defaults: window 32, chunks of 100,000): the first step, and the last. */
  steppedFirstPartitionSeconds: number;
  steppedPlanSeconds: number;
  steps: number;
}

const MODEL = { name: 'm', etag: 'e', jsonEtag: 'j' };
const r2 = (ms: number): number => Math.round(ms / 10) / 100;

async function whole(input: ContainerClient, out: ContainerClient): Promise<{ total: number; partitions: number }> {
  const t0 = performance.now();
  const index = await writePlan(input, out, { jobId: 'whole', jobPrefix: 'whole/', partitionSize: 'auto', window: 32, model: MODEL, prefix: 'cams/', extensions: ['.jpg'] });
  return { total: performance.now() - t0, partitions: index.partitions };
}

async function stepped(input: ContainerClient, out: ContainerClient): Promise<{ first: number; total: number; steps: number; partitions: number }> {
  const t0 = performance.now();
  let first = 0;
  for (let steps = 1; ; steps++) {
    const s = await planStep(input, out, { jobId: 'stepped', jobPrefix: 'stepped/', partitionSize: 'auto', window: 32, model: MODEL, prefix: 'cams/', extensions: ['.jpg'], chunkItems: 100_000 });
    if (!first) first = performance.now() - t0;
    if (!s.more) return { first, total: performance.now() - t0, steps, partitions: s.index.partitions };
  }
}

export async function listingBench(blobs: number, log: (m: string) => void = console.log, connectionString?: string): Promise<ListingBenchRow> {
  const go = async (cs: string): Promise<ListingBenchRow> => {
    const svc = BlobServiceClient.fromConnectionString(cs);
    const input = svc.getContainerClient(`listing-${blobs}`);
    const out = svc.getContainerClient(`listing-out-${blobs}`);
    await out.createIfNotExists();
    if (await input.createIfNotExists().then((r) => r.succeeded)) {
      await mapLimit(Array.from({ length: blobs }, (_, i) => i), 64, (i) => input.getBlockBlobClient(`cams/cam-${String(i % 50).padStart(2, '0')}/${String(i).padStart(8, '0')}.jpg`).upload('', 0));
    }
    const w = await whole(input, out);
    const s = await stepped(input, out);
    if (s.partitions !== w.partitions) throw new Error(`stepped planning made ${s.partitions} partitions, whole planning ${w.partitions}`);
    const row: ListingBenchRow = { blobs, partitions: w.partitions, wholePlanSeconds: r2(w.total), steppedFirstPartitionSeconds: r2(s.first), steppedPlanSeconds: r2(s.total), steps: s.steps };
    log(`listing ${blobs.toLocaleString('en-US')} blobs: the first partition can start after ${row.wholePlanSeconds} s planned whole, ${row.steppedFirstPartitionSeconds} s planned in steps (${row.steps} steps, the plan complete after ${row.steppedPlanSeconds} s)`);
    return row;
  };
  return connectionString ? go(connectionString) : withAzurite((a) => go(a.connectionString));
}

if (require.main === module) void listingBench(Number(process.argv[2] ?? 100_000));
