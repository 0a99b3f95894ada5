/**
 * Planning from a manifest at scale: a CSV manifest of N blob names (1,000,000 by default) in
 * Azurite, planned as a job's plan activity plans it (streamed: manifestPages into writePlan, one
 * plan file per partition of 64). Each size runs in a process of its own, so its peak memory
 * (VmHWM) is its own. Reports the time to the first plan file (the first partition could start),
 * the total plan time and the peak RSS. Run alone with `node dist/bench/manifest.js [N ...]`, or as
 * part of `npm run bench`.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { BlobServiceClient } from '@azure/storage-blob';
import { withAzurite } from '../lib/local/azurite/azurite';
import { manifestPages, type ManifestStats } from '../lib/storage/manifestInput';
import { planBlobName, writePlan } from '../lib/storage';

export interface ManifestBenchRow {
  lines: number;
  partitions: number;
  firstPartitionSeconds: number;
  planSeconds: number;
  peakRssMiB: number;
  manifestMiB: number;
}

function peakRssMiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : Math.round(process.memoryUsage().rss / 1048576);
}

/** One size, in this process: writes the manifest, plans it, measures. */
async function planOnce(connectionString: string, lines: number): Promise<ManifestBenchRow> {
  const svc = BlobServiceClient.fromConnectionString(connectionString);
  const input = svc.getContainerClient(`mf-in-${lines}`);
  const out = svc.getContainerClient(`mf-out-${lines}`);
  await input.createIfNotExists();
  await out.createIfNotExists();
  // The manifest, streamed in as it is generated (a 1M-line CSV is never one string here either).
  const header = 'path\n';
  const gen = async function* (): AsyncGenerator<Buffer> {
    yield Buffer.from(header);
    for (let i = 0; i < lines; i += 10_000) {
      let chunk = '';
      for (let k = i; k < Math.min(lines, i + 10_000); k++) chunk += `2026/cam-${k % 97}/frame-${String(k).padStart(8, '0')}.jpg\n`;
      yield Buffer.from(chunk);
    }
  };
  const { Readable } = await import('node:stream');
  await input.getBlockBlobClient('lists/big.csv').uploadStream(Readable.from(gen()), 4 * 1024 * 1024, 4);
  const manifestBytes = (await input.getBlobClient('lists/big.csv').getProperties()).contentLength ?? 0;
  const stats: ManifestStats = { entries: 0, planned: 0, duplicates: 0, filtered: 0, invalid: 0 };
  const t0 = performance.now();
  let first = 0;
  const firstFile = planBlobName('job/', 0);
  const watch = setInterval(() => {
    if (first) return;
    void out
      .getBlobClient(firstFile)
      .exists()
      .then((e) => {
        if (e && !first) first = performance.now() - t0;
      });
  }, 20);
  const index = await writePlan(input, out, {
    jobId: 'job',
    jobPrefix: 'job/',
    partitionSize: 64,
    model: { name: 'm', etag: 'e', jsonEtag: 'j' },
    source: manifestPages(input, input, { blob: 'lists/big.csv', column: 'path' }, { extensions: ['.jpg'] }, stats),
  });
  clearInterval(watch);
  const planSeconds = (performance.now() - t0) / 1000;
  if (index.total !== lines) throw new Error(`planned ${index.total} of ${lines}`);
  return { lines, partitions: index.partitions, firstPartitionSeconds: Math.round((first || planSeconds * 1000) / 10) / 100, planSeconds: Math.round(planSeconds * 100) / 100, peakRssMiB: peakRssMiB(), manifestMiB: Math.round((manifestBytes / 1048576) * 10) / 10 };
}

/** Each size in a child process of its own, against one emulator. */
export async function manifestBench(sizes: number[], log: (m: string) => void = console.log): Promise<ManifestBenchRow[]> {
  return withAzurite(async (azurite) => {
    const rows: ManifestBenchRow[] = [];
    for (const n of sizes) {
      const out = execFileSync(process.execPath, [__filename, '--child', String(n)], { env: { ...process.env, LAKEINFER_BENCH_STORAGE: azurite.connectionString }, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
      const row = JSON.parse(out.trim().split('\n').pop()!) as ManifestBenchRow;
      log(`manifest ${row.lines.toLocaleString('en-US')} lines (${row.manifestMiB} MiB): first plan file after ${row.firstPartitionSeconds} s, planned ${row.partitions.toLocaleString('en-US')} partitions in ${row.planSeconds} s, peak RSS ${row.peakRssMiB} MiB`);
      rows.push(row);
    }
    return rows;
  });
}

if (require.main === module) {
  const args = process.argv.slice(2);
  if (args[0] === '--child') {
    void planOnce(process.env['LAKEINFER_BENCH_STORAGE']!, Number(args[1])).then((r) => console.log(JSON.stringify(r)));
  } else {
    void manifestBench(args.length ? args.map(Number) : [100_000, 1_000_000]);
  }
}
