/**
 * Continuous jobs: arrival records, the seen index, batches, the local scan and the Event Grid
 * path, on a real Azurite; then a continuous job end to end through the local host.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { arrivalName, blobOfSubject, collectArrivals, recordArrivals, recordBlobEvents, registrationName, scanForArrivals, watches, type CollectInput, type Registration } from '../../lib/continuous/collect';
import { decideOutcome } from '../../lib/job/folder';
import { listAllBlobs, readJson, writeBlob, writeJson, planIndexName, type PlanPartition } from '../../lib/storage';
import { useAzurite, uniqueContainer } from '../helpers/azurite';
import { Canvas } from '../helpers/images';
import { classifierFixture, classifierSpec } from '../helpers/models';
import { readParquetRows } from '../helpers/parquet';
import type { Manifest } from '../../lib/fanin/finalize';
import { startLocalHost, type LocalHost } from '../../lib/local/host/host';
import { readBlob } from '../../lib/storage';
import { readDeltaLog } from '../../lib/fanin/delta';
import { DELTA_READ, downloadFolder, needPython, python, SPARK_READ, type SparkRead } from '../helpers/python';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const az = useAzurite();

function job(output: string, input = 'cont-in'): CollectInput['job'] & Registration {
  return { jobId: 'cj', jobPrefix: 'runs/cj/', input: { container: input, prefix: 'cam/', extensions: ['.jpg', '.png'] }, output: { container: output }, partitionSize: 2, executionId: 'x1' } as CollectInput['job'] & Registration;
}

async function setup(): Promise<{ out: ReturnType<typeof az.service.getContainerClient>; j: ReturnType<typeof job> }> {
  const out = az.service.getContainerClient(uniqueContainer('cont-out'));
  await out.create();
  const j = job(out.containerName);
  // The initial plan: one partition with one blob (as planJob writes it).
  await writeJson(out, 'runs/cj/_plan/0.json', { jobId: 'cj', n: 0, first: 0, blobs: [{ name: 'cam/0.jpg', etag: 'e0', size: 1 }] } satisfies PlanPartition);
  await writeJson(out, planIndexName('runs/cj/'), { jobId: 'cj', inputContainer: 'cont-in', partitions: 1, total: 1, bytes: 1, partitionSize: 2, model: { name: 'm', etag: 'a', jsonEtag: 'b' } });
  return { out, j };
}

describe('continuous: arrivals to batches', () => {
  test('names sort by time; what a job watches; Event Grid subjects', () => {
    const a = arrivalName('p/', new Date('2026-11-26T01:02:03.004Z'), 'aa');
    assert.equal(a, 'p/_arrivals/20261126/010203004-aa.json');
    assert.ok(arrivalName('p/', new Date('2026-11-26T01:02:03.005Z'), '00') > a);
    const j = job('out');
    assert.ok(watches(j, 'cont-in', 'cam/x.JPG'));
    assert.ok(!watches(j, 'cont-in', 'cam/x.txt'), 'extension');
    assert.ok(!watches(j, 'cont-in', 'other/x.jpg'), 'prefix');
    assert.ok(!watches(j, 'elsewhere', 'cam/x.jpg'), 'container');
    assert.ok(!watches({ ...j, output: { container: 'cont-in' }, jobPrefix: 'cam/runs/' }, 'cont-in', 'cam/runs/overlay.png'), "the job's own outputs");
    assert.deepEqual(blobOfSubject('/blobServices/default/containers/images/blobs/a/b c.jpg'), { container: 'images', name: 'a/b c.jpg' });
    assert.equal(blobOfSubject('/something/else'), undefined);
  });

  test('collect: the initial plan seeds the seen index; duplicates and unchanged ETags are dropped; a changed blob comes again; numbering continues; a repeat gives the same batch', async () => {
    const { out, j } = await setup();
    // cam/0.jpg was planned; it arrives again (a rescan or a late event) with the same ETag, and twice more new blobs, one twice.
    await recordArrivals(out, j, [{ name: 'cam/0.jpg', etag: 'e0', size: 1 }, { name: 'cam/1.jpg', etag: 'e1', size: 10 }], new Date('2026-11-26T00:00:01Z'));
    await recordArrivals(out, j, [{ name: 'cam/1.jpg', etag: 'e1', size: 10 }, { name: 'cam/2.png', etag: 'e2', size: 20 }, { name: 'cam/3.png', etag: 'e3', size: 30 }, { name: 'cam/skip.txt', etag: 'x', size: 1 }], new Date('2026-11-26T00:00:02Z'));
    const first = await collectArrivals(out, { job: j, partitions: 1, total: 1, cursor: '' });
    assert.deepEqual({ ...first, cursor: undefined }, { stopped: false, partitions: 3, total: 4, images: 3, cursor: undefined });
    const p1 = (await readJson<PlanPartition>(out, 'runs/cj/_plan/1.json'))!;
    const p2 = (await readJson<PlanPartition>(out, 'runs/cj/_plan/2.json'))!;
    assert.deepEqual([p1.first, p1.blobs.map((b) => b.name), p2.first, p2.blobs.map((b) => b.name)], [1, ['cam/1.jpg', 'cam/2.png'], 3, ['cam/3.png']]);
    // The same collect delivered again (at-least-once): the same batch, nothing planned twice.
    const again = await collectArrivals(out, { job: j, partitions: 1, total: 1, cursor: '' });
    assert.deepEqual(again, first);
    // Nothing new: the same counts, the cursor kept.
    const idle = await collectArrivals(out, { job: j, partitions: 3, total: 4, cursor: first.cursor });
    assert.deepEqual(idle, { ...first, images: 0 });
    // A duplicate event of a blob already inferred is dropped; a changed blob (new ETag) comes again.
    await recordArrivals(out, j, [{ name: 'cam/2.png', etag: 'e2', size: 20 }, { name: 'cam/1.jpg', etag: 'e1-changed', size: 11 }], new Date('2026-11-27T00:00:00Z'));
    const changed = await collectArrivals(out, { job: j, partitions: 3, total: 4, cursor: first.cursor });
    assert.deepEqual([changed.partitions, changed.total, changed.images], [4, 5, 1]);
    assert.deepEqual((await readJson<PlanPartition>(out, 'runs/cj/_plan/3.json'))!.blobs, [{ name: 'cam/1.jpg', etag: 'e1-changed', size: 11 }]);
    const index = (await readJson<{ partitions: number; total: number; continuous: { cursor: string } }>(out, planIndexName('runs/cj/')))!;
    assert.deepEqual([index.partitions, index.total, index.continuous.cursor], [4, 5, changed.cursor], 'a resumed job starts from here');
    // The same bytes uploaded again (a new ETag, the same Content-MD5) are not a new version.
    await recordArrivals(out, j, [{ name: 'cam/3.png', etag: 'e3-reupload', size: 30, md5: 'bWQ1LTM=' }], new Date('2026-11-27T00:00:01Z'));
    const before = await collectArrivals(out, { job: j, partitions: 4, total: 5, cursor: changed.cursor });
    assert.equal(before.images, 1, 'cam/3.png was seen with an ETag only: the new ETag counts');
    await recordArrivals(out, j, [{ name: 'cam/3.png', etag: 'e3-again', size: 30, md5: 'bWQ1LTM=' }], new Date('2026-11-27T00:00:02Z'));
    const same = await collectArrivals(out, { job: j, partitions: 5, total: 6, cursor: before.cursor });
    assert.equal(same.images, 0, 'the same bytes again (Content-MD5) are skipped');
    changed.cursor = same.cursor;
    // DELETE decided the outcome: the next look stops, taking nothing.
    await recordArrivals(out, j, [{ name: 'cam/9.jpg', etag: 'e9', size: 1 }]);
    await decideOutcome(out, 'runs/cj/', { status: 'cancelled', executionId: 'x1', by: 'cancel' }, new Date().toISOString());
    const stopped = await collectArrivals(out, { job: j, partitions: 5, total: 6, cursor: changed.cursor });
    assert.deepEqual([stopped.stopped, stopped.partitions, stopped.images], [true, 5, 0]);
  });

  test('local scan: what landed since the last scan is recorded; a rescan is harmless', async () => {
    const { out, j } = await setup();
    const input = az.service.getContainerClient(uniqueContainer('cont-in'));
    await input.create();
    const jj = { ...j, input: { ...j.input, container: input.containerName } };
    await writeBlob(input, 'cam/a.jpg', Buffer.from('a'));
    await writeBlob(input, 'cam/b.txt', Buffer.from('b'));
    await writeBlob(input, 'elsewhere/c.jpg', Buffer.from('c'));
    assert.equal(await scanForArrivals(input, out, jj), 1);
    await new Promise((r) => setTimeout(r, 1100)); // a later last-modified second
    await writeBlob(input, 'cam/d.png', Buffer.from('d'));
    assert.equal(await scanForArrivals(input, out, jj), 1, 'd.png only: a.jpg, at the newest time of the last scan, is remembered by version and not recorded again');
    const records = await listAllBlobs(out, { prefix: 'runs/cj/_arrivals/' });
    assert.equal(records.length, 2);
    const r = await collectArrivals(out, { job: { ...jj, jobId: 'cj' }, partitions: 1, total: 1, cursor: '' });
    assert.equal(r.images, 2);
  });

  test('Event Grid: BlobCreated events become arrivals of the registered jobs they fall in; other events and jobs are left alone', async () => {
    const { out, j } = await setup();
    await writeJson(out, registrationName('cj'), j satisfies Registration);
    await writeJson(out, registrationName('other'), { ...j, jobId: 'other', jobPrefix: 'runs/other/', input: { ...j.input, prefix: 'garden/' } } satisfies Registration);
    const ev = (name: string, type = 'Microsoft.Storage.BlobCreated') => ({ subject: `/blobServices/default/containers/cont-in/blobs/${name}`, eventType: type, data: { eTag: '"0x1"', contentLength: 5 } });
    assert.equal(await recordBlobEvents([out], [ev('cam/e.jpg'), ev('cam/f.jpg', 'Microsoft.Storage.BlobDeleted'), ev('cam/notes.txt')]), 1);
    const mine = await listAllBlobs(out, { prefix: 'runs/cj/_arrivals/' });
    assert.equal(mine.length, 1);
    assert.deepEqual((await readJson<{ blobs: unknown[] }>(out, mine[0]!.name))!.blobs, [{ name: 'cam/e.jpg', etag: '0x1', size: 5 }]);
    assert.equal((await listAllBlobs(out, { prefix: 'runs/other/_arrivals/' })).length, 0);
  });

  test('one bad blob under the registrations or the arrivals fails nothing: it is skipped (and reported), the others are taken', async () => {
    const { out, j } = await setup();
    await writeJson(out, registrationName('cj'), j satisfies Registration);
    // Any job may write under _lakeinfer/continuous/ of its output container: not registrations.
    await writeBlob(out, `${registrationName('cj').replace(/cj\.json$/, '')}garbage.json`, 'not json {');
    await writeJson(out, registrationName('half'), { jobId: 'half' });
    const skipped: string[] = [];
    const ev = { subject: '/blobServices/default/containers/cont-in/blobs/cam/e.jpg', eventType: 'Microsoft.Storage.BlobCreated', data: { eTag: '"0x1"', contentLength: 5 } };
    assert.equal(await recordBlobEvents([out], [ev], new Date(), (b, why) => skipped.push(`${b}: ${why}`)), 1);
    assert.equal(skipped.length, 2, skipped.join('\n'));
    // A malformed arrival record, and entries without a name or with one outside the prefix: skipped.
    await writeBlob(out, arrivalName('runs/cj/', new Date('2026-11-26T00:00:00Z')), '{"blobs": [');
    await writeJson(out, arrivalName('runs/cj/', new Date('2026-11-26T00:00:01Z')), { blobs: [{ etag: 'x' }, { name: 'elsewhere/x.jpg', etag: 'x', size: 1 }, { name: 'cam/ok\u0085.jpg', etag: 'x', size: 1 }, { name: 'cam/good.jpg', etag: 'g', size: 3 }] });
    const r = await collectArrivals(out, { job: j, partitions: 1, total: 1, cursor: '' });
    assert.equal(r.stopped, false);
    const planned = (await readJson<PlanPartition>(out, 'runs/cj/_plan/1.json'))!.blobs.map((b) => b.name).sort();
    assert.deepEqual(planned, ['cam/e.jpg', 'cam/good.jpg']);
  });
});

describe('a continuous job through the local host', () => {
  let host: LocalHost;
  before(async () => {
    await az.ready;
    const models = az.service.getContainerClient('models');
    await models.createIfNotExists();
    await writeBlob(models, 'colours/model.onnx', Buffer.from(classifierFixture()));
    await writeJson(models, 'colours/model.json', { ...classifierSpec(), name: 'colours' });
    host = await startLocalHost({ storageConnectionString: az.azurite.connectionString, activityProcesses: 1, settings: { MODELS_CONTAINER: 'models' }, log: () => undefined, activityOutput: () => undefined });
  });
  after(() => host?.stop());

  test('three waves: what is there, then what lands, each image once (duplicate events, rescans); the same bytes uploaded again are skipped; a changed image is inferred again; DELETE stops it with its running totals; the Delta table has a version per batch', async (t) => {
    const input = az.service.getContainerClient('live-in');
    const out = az.service.getContainerClient('live-out');
    await input.createIfNotExists();
    const png = (c: [number, number, number]) => new Canvas(16, 12, c).png();
    const red = await png([255, 0, 0]);
    const green = await png([0, 255, 0]);
    const blue = await png([0, 0, 255]);
    await writeBlob(input, 'cam/001.png', red);
    const post = await fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify({ jobId: 'live', input: { container: 'live-in', prefix: 'cam/', extensions: ['.png'] }, output: { container: 'live-out', prefix: 'runs/' }, model: { name: 'colours' }, mode: 'continuous', pollSeconds: 1, partitionSize: 2, params: { topK: 1 } }) });
    assert.equal(post.status, 202, await post.clone().text());
    const manifest = async (): Promise<Manifest | undefined> => ((await out.exists()) ? readJson<Manifest>(out, 'runs/live/_manifest.json') : undefined);
    const until = async (what: string, ok: (m: Manifest) => boolean): Promise<Manifest> => {
      const end = Date.now() + 90_000;
      for (;;) {
        const m = await manifest();
        if (m && ok(m)) return m;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(m?.counts)} ${m?.status}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const m0 = await until('the image that was there', (m) => m.counts.images === 1);
    assert.equal(m0.status, 'running');
    assert.equal(((await (await fetch(`${host.url}/api/jobs/live`)).json()) as { status: string }).status, 'running');
    // Wave 1.
    await writeBlob(input, 'cam/002.png', green);
    await writeBlob(input, 'cam/003.png', blue);
    await until('wave 1', (m) => m.counts.images === 3);
    // Wave 2; one image is also announced twice more as Event Grid would (no content hash: collect reads its properties).
    await writeBlob(input, 'cam/004.png', red);
    await writeBlob(input, 'cam/005.png', green);
    await writeBlob(input, 'cam/notes.txt', Buffer.from('not an image of this job'));
    const etag = (await input.getBlobClient('cam/004.png').getProperties()).etag!.replace(/"/g, '');
    const reg = { jobId: 'live', jobPrefix: 'runs/live/', input: { container: 'live-in', prefix: 'cam/', extensions: ['.png'] }, output: { container: 'live-out' } };
    await recordArrivals(out, reg, [{ name: 'cam/004.png', etag, size: 1 }]);
    await recordArrivals(out, reg, [{ name: 'cam/004.png', etag, size: 1 }]);
    await until('wave 2', (m) => m.counts.images === 5);
    // Wave 3: 002 uploaded again with the same bytes (a new ETag, the same Content-MD5): skipped;
    // 001 changed: inferred again; 006 new.
    await writeBlob(input, 'cam/002.png', green);
    await writeBlob(input, 'cam/001.png', blue);
    await writeBlob(input, 'cam/006.png', blue);
    const m3 = await until('wave 3', (m) => m.counts.images === 7);
    await new Promise((r) => setTimeout(r, 3000)); // three more looks: nothing else comes
    assert.equal((await manifest())!.counts.images, 7, 'the same bytes uploaded again are not inferred again');
    assert.ok(await out.getBlobClient(registrationName('live')).exists(), 'registered for Event Grid while it runs');
    // Stop.
    const del = await fetch(`${host.url}/api/jobs/live`, { method: 'DELETE' });
    assert.equal(del.status, 202);
    assert.equal(((await del.json()) as { status: string }).status, 'cancelling');
    const end = Date.now() + 60_000;
    let st = '';
    while (Date.now() < end) {
      st = ((await (await fetch(`${host.url}/api/jobs/live`)).json()) as { status: string }).status;
      if (st === 'cancelled') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(st, 'cancelled');
    const final = (await manifest())!;
    assert.equal(final.status, 'cancelled');
    assert.deepEqual(final.counts, { ...m3.counts, partitions: final.counts.partitions });
    assert.ok(!(await out.getBlobClient(registrationName('live')).exists()), 'unregistered once stopped');
    // The report's continuous figures: seconds from landing to result for each arrival (the first
    // image was there before the job), and a rate over busy time, not over the idle looks.
    assert.equal(final.landedLatency!.counts.reduce((a, b) => a + b, 0), final.counts.images - 1, JSON.stringify(final.landedLatency));
    assert.ok(final.busySeconds! < final.wallSeconds / 2, `busy ${final.busySeconds} s of ${final.wallSeconds} s`);
    const report = (await readBlob(out, 'runs/live/report.html'))!.data.toString();
    assert.match(report, /From upload to result/);
    assert.match(report, /images\/s while inferring/);
    // The Parquet dataset: each image version once; 001 twice (two contents, two ETags), 002 once.
    const rows: Record<string, unknown>[] = [];
    for (const part of final.datasets!.results.parts) rows.push(...readParquetRows((await readBlob(out, `runs/live/results.parquet/${part}`))!.data).rows);
    assert.deepEqual(rows.map((r) => r['image']).sort(), ['cam/001.png', 'cam/001.png', 'cam/002.png', 'cam/003.png', 'cam/004.png', 'cam/005.png', 'cam/006.png']);
    assert.equal(new Set(rows.filter((r) => r['image'] === 'cam/001.png').map((r) => r['image_etag'])).size, 2);
    assert.deepEqual(rows.filter((r) => r['image'] === 'cam/001.png').map((r) => r['label']).sort(), ['blue', 'red']);
    // The same dataset as a Delta table: each batch an atomic append (a version per batch), the
    // latest version equal to the Parquet rows, no version with an image twice (but 001's two versions).
    const log = await readDeltaLog(out, 'runs/live/results.parquet/');
    assert.ok(log.version >= 3, `a version per batch: ${log.version + 1} versions`);
    assert.deepEqual([...log.files].sort(), [...final.datasets!.results.parts].sort());
    if (!needPython(t, 'deltalake', 'pyarrow')) return;
    const dir = mkdtempSync(join(tmpdir(), 'lakeinfer-live-delta-'));
    await downloadFolder(out, 'runs/live/results.parquet/', dir);
    const read = python<{ version: number; versions: Record<string, string[]> }>(DELTA_READ, dir);
    assert.equal(read.version, log.version);
    assert.deepEqual(read.versions[String(read.version)], rows.map((r) => String(r['image'])).sort());
    for (const [v, images] of Object.entries(read.versions)) {
      const once = images.filter((n) => n !== 'cam/001.png');
      assert.equal(new Set(once).size, once.length, `version ${v}: no image twice`);
    }
    const counts = Object.values(read.versions).map((v) => v.length);
    assert.deepEqual([...counts].sort((a, b) => a - b), counts, 'versions only grow: batches are appends');
    console.log(`continuous delta: delta-rs reads ${read.version + 1} versions with ${counts.join(', ')} rows`);
    // Spark with Delta Lake reads the same versions.
    if (!needPython(t, 'pyspark', 'delta')) return;
    const spark = python<Record<string, SparkRead>>(SPARK_READ, dir)[dir]!;
    assert.equal(spark.version, read.version);
    assert.ok(spark.history.length >= 4 && spark.history.every((h) => h === 'STREAMING UPDATE' || h === 'WRITE'), spark.history.join(', '));
    for (const [v, images] of Object.entries(read.versions)) assert.deepEqual(spark.versions[v], images, `version ${v}: Spark and delta-rs see the same rows`);
    console.log(`continuous delta: Spark reads the same ${spark.version + 1} versions`);
  });

  test('a cancel ends a continuous job that waits an hour between looks in seconds (the stop event); a resubmit resumes it, and what landed meanwhile is inferred once', async () => {
    const input = az.service.getContainerClient('hour-in');
    const out = az.service.getContainerClient('hour-out');
    await input.createIfNotExists();
    await writeBlob(input, 'cam/a.png', await new Canvas(8, 8, [255, 0, 0]).png());
    const request = (pollSeconds: number) => ({ jobId: 'hourly', input: { container: 'hour-in', prefix: 'cam/', extensions: ['.png'] }, output: { container: 'hour-out' }, model: { name: 'colours' }, mode: 'continuous', pollSeconds, params: { topK: 1 } });
    const view = async () => (await (await fetch(`${host.url}/api/jobs/hourly`)).json()) as { status: string; progress?: { phase?: string } };
    const waitFor = async (ok: () => Promise<boolean>, what: string, ms = 60_000): Promise<void> => {
      const end = Date.now() + ms;
      while (!(await ok())) {
        if (Date.now() > end) throw new Error(`timed out: ${what}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    assert.equal((await fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify(request(3600)) })).status, 202);
    await waitFor(async () => (await view()).progress?.phase === 'watching', 'watching');
    const t0 = Date.now();
    assert.equal((await fetch(`${host.url}/api/jobs/hourly`, { method: 'DELETE' })).status, 202);
    await waitFor(async () => (await view()).status === 'cancelled', 'cancelled', 30_000);
    const took = Date.now() - t0;
    assert.ok(took < 20_000, `cancelled after ${took} ms, not at the next look an hour later`);
    assert.equal((await readJson<Manifest>(out, 'hourly/_manifest.json'))!.status, 'cancelled');
    // Meanwhile a blob lands; the same request again (a shorter poll may differ) resumes the job.
    await writeBlob(input, 'cam/b.png', await new Canvas(8, 8, [0, 0, 255]).png());
    const again = await fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify(request(1)) });
    assert.equal(again.status, 202, await again.clone().text());
    assert.equal(((await again.json()) as { resumed: boolean }).resumed, true);
    await waitFor(async () => (await readJson<Manifest>(out, 'hourly/_manifest.json'))?.counts.images === 2, 'the blob that landed while it was stopped');
    assert.equal((await view()).status, 'running');
    assert.equal((await fetch(`${host.url}/api/jobs/hourly`, { method: 'DELETE' })).status, 202);
    await waitFor(async () => (await view()).status === 'cancelled', 'cancelled again', 30_000);
    const lines = (await readBlob(out, 'hourly/results.jsonl'))?.data.toString() ?? '';
    const rows: Record<string, unknown>[] = [];
    for (const part of (await readJson<Manifest>(out, 'hourly/_manifest.json'))!.datasets!.results.parts) rows.push(...readParquetRows((await readBlob(out, `hourly/results.parquet/${part}`))!.data).rows);
    assert.deepEqual(rows.map((r) => r['image']).sort(), ['cam/a.png', 'cam/b.png'], `each image once ${lines}`);
  });

  test('continuous jobs never feed each other: one that would watch where another writes, or write where another watches, is a 409 ContinuousLoop naming the field; a batch job may read their outputs', async () => {
    const loop = az.service.getContainerClient('loop');
    await loop.createIfNotExists();
    await writeBlob(loop, 'in/a.png', await new Canvas(8, 8, [0, 255, 0]).png());
    const post = (body: unknown) => fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify(body) });
    const base = { model: { name: 'colours' }, mode: 'continuous', pollSeconds: 1, params: { topK: 1 } };
    assert.equal((await post({ ...base, jobId: 'loop-a', input: { container: 'loop', prefix: 'in/', extensions: ['.png'] }, output: { container: 'loop', prefix: 'out/' } })).status, 202);
    // B watches out/, where A writes: it would infer A's overlays and records, and so on.
    const b = await post({ ...base, jobId: 'loop-b', input: { container: 'loop', prefix: 'out/', extensions: ['.png'] }, output: { container: 'loop', prefix: 'b-out/' } });
    assert.equal(b.status, 409);
    const eb = ((await b.json()) as { error: { code: string; target: string; message: string } }).error;
    assert.equal(eb.code, 'ContinuousLoop');
    assert.equal(eb.target, 'input.prefix');
    assert.match(eb.message, /where the running continuous job 'loop-a' writes \('loop\/out\/loop-a\/'\)/);
    // C writes under in/, where A watches.
    const c = await post({ ...base, jobId: 'loop-c', input: { container: 'loop', prefix: 'elsewhere/', extensions: ['.png'] }, output: { container: 'loop', prefix: 'in/c/' } });
    assert.equal(c.status, 409);
    assert.equal(((await c.json()) as { error: { target: string } }).error.target, 'output.prefix');
    // A watcher that takes none of the extensions a job writes is not fed; a batch job may read out/.
    assert.equal((await post({ ...base, jobId: 'loop-d', input: { container: 'loop', prefix: 'out/', extensions: ['.jpg'] }, output: { container: 'loop', prefix: 'd/' } })).status, 202);
    assert.equal((await post({ jobId: 'loop-batch', model: { name: 'colours' }, input: { container: 'loop', prefix: 'in/', extensions: ['.png'] }, output: { container: 'loop', prefix: 'batch/' }, params: { topK: 1 } })).status, 202);
    for (const id of ['loop-a', 'loop-d']) assert.equal((await fetch(`${host.url}/api/jobs/${id}`, { method: 'DELETE' })).status, 202);
    for (const id of ['loop-a', 'loop-d', 'loop-batch']) await host.engine.waitFor(id, 60_000);
  });
});

test('local scanner: each blob version is recorded once; a few hundred idle looks write nothing', { timeout: 120_000 }, async () => {
  const input = az.service.getContainerClient(uniqueContainer('scan-in'));
  const output = az.service.getContainerClient(uniqueContainer('scan-out'));
  await input.create();
  await output.create();
  const job = { input: { container: input.containerName, prefix: 'cam/', extensions: ['.jpg'] }, output: { container: output.containerName }, jobPrefix: 'runs/scan/' };
  for (const n of ['a', 'b', 'c']) await input.getBlockBlobClient(`cam/${n}.jpg`).upload(n, 1);
  assert.equal(await scanForArrivals(input, output, job), 3);
  const written = async (): Promise<string[]> => {
    const names: string[] = [];
    for await (const b of output.listBlobsFlat({ prefix: 'runs/scan/' })) names.push(`${b.name}@${b.properties.etag}`);
    return names.sort();
  };
  const before = await written();
  for (let i = 0; i < 300; i++) assert.equal(await scanForArrivals(input, output, job), 0, `look ${i}`);
  assert.deepEqual(await written(), before, 'idle looks wrote nothing');
  // A new blob in the same second as the last ones, and a changed one: each recorded once.
  await input.getBlockBlobClient('cam/d.jpg').upload('d', 1);
  await input.getBlockBlobClient('cam/a.jpg').upload('a2', 2);
  assert.equal(await scanForArrivals(input, output, job), 2);
  assert.equal(await scanForArrivals(input, output, job), 0);
});
