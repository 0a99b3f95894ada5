/**
 * Finalize at scale: synthetic partitions (a summary, a results fragment and a COCO fragment each)
 * on Azurite, finalized at 1,000 / 10,000 / 50,000 partitions; then 1,000 partitions with results
 * 100 times larger. Reports time, requests and the bytes that went through the finalize process
 * (which must not grow with the results). Run alone with `node dist/bench/finalize.js`, or as part
 * of `npm run bench`.
 */
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { finalizeJob, type FinalizeInput } from '../lib/fanin/finalize';
import { parseJobRequest } from '../lib/job/request';
import { withAzurite } from '../lib/local/azurite/azurite';
import { EMPTY_TOTALS } from '../lib/job/totals';
import { LATENCY_BOUNDS_MS, partSummaryName, pieceFragmentName, type PartitionSummary } from '../lib/partition/parts';
import { mapLimit, writeBlob, writeJson } from '../lib/storage';

export interface FinalizeBenchRow {
  partitions: number;
  resultBytesPerPartition: number;
  seconds: number;
  msPerPartition: number;
  /** CPU time of the finalize process itself (the rest is the storage's). */
  processCpuMsPerPartition: number;
  summariesRead: number;
  blocksFromUrl: number;
  bytesFromUrl: number;
  bytesThroughProcess: number;
  summaryBytes: number;
  files: number;
}

const IMAGES = 64;

async function writePartitions(out: ContainerClient, prefix: string, from: number, to: number, resultBytes: number): Promise<void> {
  const line = (n: number) => `${JSON.stringify({ source: { name: `img/${n}.jpg` }, pad: 'x'.repeat(Math.max(0, resultBytes - 40)) })}\n`;
  await mapLimit(
    Array.from({ length: to - from }, (_, i) => from + i),
    64,
    async (n) => {
      const results = line(n);
      const coco = `,\n${JSON.stringify({ image_id: n * IMAGES + 1, file_name: `img/${n}.jpg`, category_id: 1, bbox: [1, 2, 3, 4], score: 0.9 })}`;
      const [re, ce] = await Promise.all([writeBlob(out, pieceFragmentName(prefix, n, 0, 'results'), results), writeBlob(out, pieceFragmentName(prefix, n, 0, 'coco'), coco)]);
      const summary: PartitionSummary = {
        n,
        images: IMAGES,
        succeeded: IMAGES,
        failed: 0,
        skipped: 0,
        detections: 1,
        stageMs: { downloadMs: 1, decodeMs: 1, inferMs: 1, postMs: 1, writeMs: 1 },
        wallMs: 1000,
        startedAt: '2026-01-01T00:00:00.000Z',
        endedAt: '2026-01-01T00:00:01.000Z',
        latencyCounts: LATENCY_BOUNDS_MS.map((_, i) => (i === 4 ? IMAGES : 0)),
        samples: [{ name: `img/${n}.jpg`, width: 640, height: 480, detections: 1, labels: ['a'] }],
        failureHead: [],
        pieces: [{ from: 0, to: IMAGES, results: { bytes: Buffer.byteLength(results), etag: re as string }, coco: { bytes: Buffer.byteLength(coco), etag: ce as string }, failures: { bytes: 0, etag: '' } }],
        model: { etag: 'e', jsonEtag: 'j' },
        planEtag: 'p',
        run: 'bench',
      };
      await writeJson(out, partSummaryName(prefix, n), summary);
    },
  );
}

async function finalizeOnce(out: ContainerClient, jobId: string, partitions: number, resultBytes: number): Promise<FinalizeBenchRow> {
  const job = parseJobRequest({ jobId, input: { container: 'images' }, output: { container: out.containerName }, model: { name: 'm' }, partitionSize: IMAGES }, new Date('2026-01-01T00:00:00Z'));
  const input: FinalizeInput = {
    job,
    status: 'succeeded',
    totals: { ...EMPTY_TOTALS, partitionsDone: partitions, images: partitions * IMAGES, succeeded: partitions * IMAGES, detections: partitions, activitySeconds: partitions },
    partitions,
    failedPartitions: [],
    model: { name: 'm', etag: 'e' },
    startedAt: '2026-01-01T00:00:00.000Z',
    endedAt: '2026-01-01T01:00:00.000Z',
  };
  const t = performance.now();
  const cpu = process.cpuUsage();
  const m = await finalizeJob(out, input, { instanceMemoryMB: 2048, pricePerGbSecond: 0.000026 });
  const seconds = (performance.now() - t) / 1000;
  const used = process.cpuUsage(cpu);
  return {
    partitions,
    resultBytesPerPartition: resultBytes,
    seconds: Math.round(seconds * 10) / 10,
    msPerPartition: Math.round((seconds * 1e5) / partitions) / 100,
    processCpuMsPerPartition: Math.round((used.user + used.system) / 10 / partitions) / 100,
    summariesRead: m.stats.summaries,
    blocksFromUrl: m.stats.blocksFromUrl,
    bytesFromUrl: m.stats.bytesFromUrl,
    bytesThroughProcess: m.stats.bytesThroughProcess,
    summaryBytes: m.stats.summaryBytes,
    files: m.stats.files,
  };
}

/** Writes the synthetic partitions for each size (one job folder per size) and finalizes each. */
export async function finalizeBench(service: BlobServiceClient, sizes = [1_000, 10_000, 50_000], log: (m: string) => void = console.log): Promise<FinalizeBenchRow[]> {
  const out = service.getContainerClient('bench-finalize');
  await out.createIfNotExists();
  const rows: FinalizeBenchRow[] = [];
  for (const [size, bytes] of [...sizes.map((s) => [s, 200] as const), [Math.min(...sizes), 20_000] as const]) {
    const jobId = `fin-${size}-${bytes}`;
    log(`finalize: writing ${size} synthetic partitions (${bytes} B of results each)`);
    await writePartitions(out, `${jobId}/`, 0, size, bytes);
    log(`finalize: ${size} partitions`);
    const row = await finalizeOnce(out, jobId, size, bytes);
    log(`finalize: ${JSON.stringify(row)}`);
    rows.push(row);
  }
  return rows;
}

if (require.main === module) {
  const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
  void withAzurite(async (azurite) => console.table(await finalizeBench(BlobServiceClient.fromConnectionString(azurite.connectionString), sizes.length ? sizes : undefined)));
}
