/**
 * The local host over HTTP: the demo job end to end, the real HTTP handlers and the CLI, and a
 * host killed mid-job and restarted.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { main as cli } from '../../lib/cli/cli';
import { runDemo, uploadDemo } from '../../lib/cli/demo';
import { localInferenceLayout, startLocalHost, type LocalHost } from '../../lib/local/host/host';
import { startAzurite, type AzuriteInstance } from '../../lib/local/azurite/azurite';
import { InstanceStore } from '../../lib/local/durable/state';
import type { InstanceRecord } from '../../lib/local/durable/engine';
import { status, submit } from '../../lib/cli/client';
import type { Manifest } from '../../lib/fanin/finalize';
import type { ImageResult } from '../../lib/partition/pipeline';
import { listAllBlobs, readBlob, readJson } from '../../lib/storage';
import { useAzurite } from '../helpers/azurite';
import { codecs, readParquetRows } from '../helpers/parquet';

const az = useAzurite();

test('npm start: the demo job runs end to end through the local host', async () => {
  const outDir = await mkdtemp(join(tmpdir(), 'lakeinfer-demo-'));
  const { manifest, outDir: jobDir } = await runDemo({ images: 12, quiet: true, outDir });
  assert.equal(manifest.status, 'succeeded');
  // 12 pages, 3 broken files, and every 3rd frame of the 30-frame clip.
  assert.deepEqual({ images: manifest.counts.images, succeeded: manifest.counts.succeeded, failed: manifest.counts.failed }, { images: 25, succeeded: 22, failed: 3 });
  assert.ok(manifest.counts.detections >= 12, `found ${manifest.counts.detections} text regions`);
  const files = await readdir(jobDir);
  for (const f of ['_manifest.json', 'results.jsonl', 'coco_results.json', '_failures.jsonl', 'results', 'overlays']) assert.ok(files.includes(f), `${f} copied locally`);
  const lines = (await readFile(join(jobDir, 'results.jsonl'), 'utf8')).split('\n').filter(Boolean);
  assert.equal(lines.length, 22);
  const frames = lines.map((l) => JSON.parse(l) as ImageResult).filter((r) => r.frame);
  assert.deepEqual(frames.map((r) => [r.source.name, r.frame!.index, r.frame!.time]), Array.from({ length: 10 }, (_, i) => ['demo/clip.mp4', i * 3, (i * 3) / 10]));
  assert.ok(frames.every((r) => r.width === 640 && r.height === 480 && r.detections.length >= 1), 'text found on every frame of the clip');

  // The Parquet dataset, read with an independent reader, says what results.jsonl and _failures.jsonl say.
  const ds = manifest.datasets!.results;
  assert.equal(ds.format, 'parquet');
  assert.equal(ds.removed, 0);
  assert.ok(files.includes('results.parquet'));
  assert.deepEqual((await readdir(join(jobDir, 'results.parquet'))).sort(), ['_delta_log', ...ds.parts].sort(), 'the folder holds exactly the listed parts and the Delta log');
  const rows: Record<string, unknown>[] = [];
  for (const part of ds.parts) {
    const buf = await readFile(join(jobDir, 'results.parquet', part));
    assert.ok((await codecs(buf)).every((c) => c === 'SNAPPY'));
    rows.push(...readParquetRows(buf).rows);
  }
  assert.equal(rows.length, ds.rows);
  const results = lines.map((l) => JSON.parse(l) as ImageResult);
  const expected: Record<string, unknown>[] = [];
  for (const r of results) {
    const base = { media: r.frame ? 'video' : 'image', frame_index: r.frame?.index ?? null, frame_time_s: r.frame?.time ?? null, job_id: manifest.jobId, image: r.source.name, image_container: r.source.container, image_etag: r.source.etag, status: 'ok', width: r.width, height: r.height, model_name: r.model.name, model_etag: r.model.etag, download_ms: r.timings.downloadMs, decode_ms: r.timings.decodeMs, infer_ms: r.timings.inferMs, post_ms: r.timings.postMs };
    if (r.detections.length === 0) expected.push({ ...base, kind: 'none', detection_index: null });
    r.detections.forEach((d, i) =>
      expected.push({ ...base, kind: 'detection', detection_index: i, category_id: d.category_id, label: d.label, score: d.score, bbox_x: d.bbox[0], bbox_y: d.bbox[1], bbox_w: d.bbox[2], bbox_h: d.bbox[3], mask_rle: d.segmentation?.counts ?? null, mask_area: d.area ?? null, polygon: d.polygon ? JSON.stringify(d.polygon) : null }),
    );
  }
  const failures = (await readFile(join(jobDir, '_failures.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { blob: string; stage: string; code: string; message: string });
  for (const f of failures) expected.push({ frame_index: null, image: f.blob, status: 'failed', kind: 'failure', error_stage: f.stage, error_code: f.code, error_message: f.message, width: null, detection_index: null, model_etag: manifest.model.etag });
  const key = (r: Record<string, unknown>): string => `${String(r['image'])}#${String(r['frame_index'] ?? '')}#${String(r['detection_index'])}`;
  const byKey = new Map(rows.map((r) => [key(r), r]));
  assert.equal(byKey.size, rows.length, 'one row per image and detection');
  assert.equal(rows.length, expected.length);
  for (const e of expected) {
    const got = byKey.get(key(e));
    assert.ok(got, `row for ${key(e)}`);
    for (const [k, v] of Object.entries(e)) assert.deepEqual(got[k], v, `${key(e)} ${k}`);
  }
  assert.ok(rows.some((r) => typeof r['polygon'] === 'string'), 'text quads are in the dataset');
});

describe('the real HTTP handlers and the CLI through the local host', () => {
  let host: LocalHost;
  before(async () => {
    await az.ready;
    host = await startLocalHost({ storageConnectionString: az.azurite.connectionString, activityProcesses: 2, settings: { MODELS_CONTAINER: 'models' }, log: () => undefined });
    await uploadDemo(az.service, 6);
  });
  after(() => host?.stop());

  test('POST /api/jobs: 400 naming the field; GET unknown: 404; DELETE finished: 409', async () => {
    const post = async (body: unknown) => {
      const r = await fetch(`${host.url}/api/jobs`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
      return { status: r.status, body: (await r.json()) as { error?: { target?: string; message: string } } };
    };
    let r = await post('{not json');
    assert.equal(r.status, 400);
    assert.equal(r.body.error!.target, '(body)');
    r = await post({ input: { container: 'images' }, output: { container: 'results' }, model: { name: 'ppocr-v4-det' }, partitionSize: 'big' });
    assert.equal(r.status, 400);
    assert.equal(r.body.error!.target, 'partitionSize');
    r = await post({ input: { container: 'Images!' }, output: { container: 'results' }, model: { name: 'm' } });
    assert.equal(r.body.error!.target, 'input.container');
    r = await post({ input: { container: 'images' }, output: { container: 'results' }, model: { name: 'm' }, colour: 'blue' });
    assert.equal(r.body.error!.target, 'colour');
    const g = await fetch(`${host.url}/api/jobs/does-not-exist`);
    assert.equal(g.status, 404);
  });

  test('lakeinfer submit --wait, status, results --out', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lakeinfer-cli-'));
    const req = join(dir, 'job.json');
    await writeFile(req, JSON.stringify({ jobId: 'cli-job', input: { container: 'images', prefix: 'demo/', extensions: ['.jpg', '.png'] }, output: { container: 'results', prefix: 'cli/' }, model: { name: 'ppocr-v4-det' }, partitionSize: 3, toleratedFailurePercent: 50 }));
    const lines: string[] = [];
    const say = (s: string): void => {
      lines.push(s);
    };
    assert.equal(await cli(['submit', req, '--wait', '--url', host.url], {}, say), 0, lines.join('\n'));
    assert.match(lines.join('\n'), /job cli-job: succeeded \(Completed\)/);
    lines.length = 0;
    assert.equal(await cli(['status', 'cli-job', '--url', host.url], {}, say), 0);
    assert.match(lines.join('\n'), /100%\s+done\s+images 9\/9 \(failed 3/);
    lines.length = 0;
    const outDir = join(dir, 'out');
    assert.equal(await cli(['results', 'cli-job', '--url', host.url, '--out', outDir], { DATA_STORAGE: az.azurite.connectionString }, say), 0);
    assert.match(lines.join('\n'), /manifest: succeeded; images 9: 6 succeeded, 3 failed/);
    assert.ok((await readdir(outDir)).includes('_manifest.json'));
    lines.length = 0;
    const reportDir = join(dir, 'report');
    assert.equal(await cli(['report', 'cli-job', '--url', host.url, '--out', reportDir], { DATA_STORAGE: az.azurite.connectionString }, say), 0);
    assert.match(lines.join('\n'), /report: .*report\.html/);
    assert.match(await readFile(join(reportDir, 'report.html'), 'utf8'), /Job cli-job: succeeded/);
    // Same jobId and request again: the finished job is returned, not run twice.
    const same = JSON.parse(await readFile(req, 'utf8')) as Record<string, unknown>;
    const again = await submit({ url: host.url }, same);
    assert.equal(again.runtimeStatus, 'Completed');
    // Same jobId, another request: refused, naming what differs; never a silent mix.
    const other = await fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify({ ...same, input: { container: 'images', prefix: 'other/' }, params: { scoreThreshold: 0.9 } }) });
    const body = (await other.json()) as { error: { code: string; message: string; target: string } };
    assert.equal(other.status, 409);
    assert.equal(body.error.code, 'JobSpecConflict');
    assert.match(body.error.message, /input\.prefix, input\.extensions, params differ/);
    const del = await fetch(`${host.url}/api/jobs/cli-job`, { method: 'DELETE' });
    assert.equal(del.status, 409);
  });
});

describe('a host killed mid-job and restarted', () => {
  const procs: ChildProcess[] = [];
  after(() => {
    for (const p of procs) p.kill('SIGKILL');
  });

  function startHostProcess(cs: string): Promise<{ proc: ChildProcess; url: string }> {
    const proc = spawn(process.execPath, [join(__dirname, '..', '..', 'lib', 'cli', 'cli.js'), 'host', '--port', '0', '--storage', cs, '--processes', '2'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, MODELS_CONTAINER: 'models' },
    });
    procs.push(proc);
    return new Promise((resolve, reject) => {
      let text = '';
      const timer = setTimeout(() => reject(new Error(`host did not start:\n${text}`)), 30_000);
      proc.stdout!.on('data', (c: Buffer) => {
        text += c.toString();
        const m = /local host at (http:\/\/127\.0\.0\.1:\d+)/.exec(text);
        if (m) {
          clearTimeout(timer);
          resolve({ proc, url: m[1]! });
        }
      });
      proc.stderr!.on('data', (c: Buffer) => (text += c.toString()));
      proc.once('exit', (code) => reject(new Error(`host exited ${code}:\n${text}`)));
    });
  }

  test('the job finishes after the restart with nothing lost or duplicated', async () => {
    await az.ready;
    const input: ContainerClient = az.service.getContainerClient('images');
    await uploadDemo(az.service, 30);
    const demo = (await listAllBlobs(input, { prefix: 'demo/page-' })).length;
    assert.equal(demo, 30);
    const first = await startHostProcess(az.azurite.connectionString);
    const jobId = 'restart-job';
    await submit({ url: first.url }, { jobId, input: { container: 'images', prefix: 'demo/page-' }, output: { container: 'results', prefix: 'restart/' }, model: { name: 'ppocr-v4-det' }, partitionSize: 2, maxParallelPartitions: 2 });
    const out = az.service.getContainerClient('results');
    const parts = async (): Promise<number> => (await listAllBlobs(out, { prefix: `restart/${jobId}/_parts/`, extensions: ['.json'] })).filter((b) => /\/\d+\.json$/.test(b.name)).length;
    for (let i = 0; i < 600 && (await parts()) < 3; i++) await new Promise((r) => setTimeout(r, 50));
    const before = await parts();
    assert.ok(before >= 3 && before < 15, `killed mid-job after ${before} of 15 partitions`);
    first.proc.kill('SIGKILL');
    await new Promise((r) => first.proc.once('exit', r));
    await assert.rejects(fetch(`${first.url}/api/jobs/${jobId}`), 'the killed host no longer answers');

    const second = await startHostProcess(az.azurite.connectionString);
    let s = await status({ url: second.url }, jobId);
    for (let i = 0; i < 1200 && !['Completed', 'Failed', 'Terminated'].includes(s.runtimeStatus); i++) {
      await new Promise((r) => setTimeout(r, 100));
      s = await status({ url: second.url }, jobId);
    }
    second.proc.kill('SIGTERM');
    assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s));
    const results = (await readBlob(out, `restart/${jobId}/results.jsonl`))!.data.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as ImageResult);
    assert.equal(results.length, 30, 'every image once');
    assert.equal(new Set(results.map((r) => r.source.name)).size, 30, 'no duplicates');
    assert.equal((await listAllBlobs(out, { prefix: `restart/${jobId}/results/` })).length, 30);
    const m = (await readJson<Manifest>(out, `restart/${jobId}/_manifest.json`))!;
    // Images whose results were written before the kill are skipped on the rerun (skipExisting), not redone.
    assert.deepEqual({ images: m.counts.images, done: m.counts.succeeded + m.counts.skipped, failed: m.counts.failed, partitions: m.counts.partitions }, { images: 30, done: 30, failed: 0, partitions: 15 });
  });
});

test('local host: the activity processes share the cores, one single-threaded session per core', () => {
  assert.deepEqual(localInferenceLayout(2, 2), { INFER_WORKERS: '1', ORT_INTRA_OP_THREADS: '1' });
  assert.deepEqual(localInferenceLayout(2, 1), { INFER_WORKERS: '2', ORT_INTRA_OP_THREADS: '1' });
  assert.deepEqual(localInferenceLayout(8, 2), { INFER_WORKERS: '4', ORT_INTRA_OP_THREADS: '1' });
  assert.deepEqual(localInferenceLayout(1, 4), { INFER_WORKERS: '1', ORT_INTRA_OP_THREADS: '1' }, 'at least one');
});

test('the instance store fenced when its emulator dies: a save retrying against the dead emulator never lands in the one that comes back; later saves do', async () => {
  const location = await mkdtemp(join(tmpdir(), 'lakeinfer-fence-'));
  const first = await startAzurite({ location });
  const container = (a: AzuriteInstance): ContainerClient => BlobServiceClient.fromConnectionString(a.connectionString).getContainerClient('fence-instances');
  const rec = (instanceId: string): InstanceRecord => ({ instanceId, name: 'x', input: null, runtimeStatus: 'Running', createdTime: '', lastUpdatedTime: '', history: [], pending: [], execution: 1 });
  const store = new InstanceStore(container(first));
  await store.init();
  await store.save(rec('before'));
  await first.stop();
  // The storage SDK retries a refused connection after about 4 s: by then the next emulator is up.
  const retrying = store.save(rec('during')).then(() => 'saved', (err: unknown) => err);
  await new Promise((r) => setTimeout(r, 200));
  store.fence();
  const second = await startAzurite({ location, blobPort: first.blobPort, queuePort: first.queuePort, tablePort: first.tablePort });
  try {
    assert.ok((await retrying) instanceof Error, 'the save from before the fence fails');
    await store.save(rec('after'));
    const names = (await listAllBlobs(container(second))).map((b) => b.name).sort();
    assert.deepEqual(names, ['after.json', 'before.json'], 'only the saves from before the death and after the fence are there');
  } finally {
    await second.stop();
  }
});
