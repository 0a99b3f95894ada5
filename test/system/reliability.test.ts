/**
 * Reliability suite (bounded in time): crashing activity processes, a storage that fails 10% of
 * requests, hostile inputs, malformed requests, cancellation, and secrets kept out of logs.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ContainerClient } from '@azure/storage-blob';
import sharp from 'sharp';
import { parseJobRequest } from '../../lib/job/request';
import { connectionStringFor, DEV_KEY } from '../../lib/local/azurite/azurite';
import { startLocalHost, type LocalHost } from '../../lib/local/host/host';
import { status as jobStatus, submit } from '../../lib/cli/client';
import type { Manifest } from '../../lib/fanin/finalize';
import type { ImageResult } from '../../lib/partition/pipeline';
import { listAllBlobs, readBlob, readJson, writeBlob, writeJson } from '../../lib/storage';
import { Canvas } from '../helpers/images';
import { classifierFixture, classifierSpec } from '../helpers/models';
import { startFaultProxy } from '../helpers/faultProxy';
import { useAzurite } from '../helpers/azurite';

const az = useAzurite();
const COLOURS: [string, [number, number, number]][] = [['red', [255, 0, 0]], ['green', [0, 255, 0]], ['blue', [0, 0, 255]]];
const N = 30;

before(async () => {
  await az.ready;
  const models = az.service.getContainerClient('models');
  await models.create();
  await writeBlob(models, 'colours/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'colours/model.json', classifierSpec());
  const input = az.service.getContainerClient('images');
  await input.create();
  for (let i = 0; i < N; i++) await writeBlob(input, `plain/${String(i).padStart(3, '0')}.png`, await new Canvas(12, 10, COLOURS[i % 3]![1]).png());
});

function request(jobId: string, prefix: string, over: Record<string, unknown> = {}) {
  return { jobId, input: { container: 'images', prefix }, output: { container: 'results', prefix: 'rel/' }, model: { name: 'colours' }, partitionSize: 2, params: { topK: 1 }, ...over };
}

async function results(out: ContainerClient, jobId: string): Promise<ImageResult[]> {
  const b = await readBlob(out, `rel/${jobId}/results.jsonl`);
  return b ? b.data.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as ImageResult) : [];
}

async function waitEnd(host: LocalHost, jobId: string, timeoutMs = 120_000) {
  const s = await host.engine.waitFor(jobId, timeoutMs);
  return s;
}

function checkColours(rs: ImageResult[]): void {
  for (const r of rs) {
    const i = Number(/(\d+)\.png$/.exec(r.source.name)![1]);
    assert.equal(r.classes![0]!.label, COLOURS[i % 3]![0], r.source.name);
  }
}

test('20% of activity attempts crash (their process is killed): each lost attempt is delivered again, the job completes, every result exactly once', async () => {
  const host = await startLocalHost({
    storageConnectionString: az.azurite.connectionString,
    activityProcesses: 2,
    settings: { MODELS_CONTAINER: 'models' },
    log: () => undefined,
    activityOutput: () => undefined,
    faults: { activityCrashRate: 0.2, seed: 42 },
    // Azure's visibility timeout is 5 minutes; the mechanism is the same at 100 ms.
    durable: { visibilityTimeoutMs: 100, maxDequeueCount: 20 },
  });
  try {
    const job = parseJobRequest(request('crashes', 'plain/', { skipExisting: false }));
    // A lost process is not a failed attempt: Durable delivers the message again instead of
    // retrying. Each delivery is counted in the partition's attempts record, which caps them at
    // maxAttempts (generous here: at 20% a crash, eight in a row is a 2.6e-6 chance).
    await host.engine.start('inferenceJob', 'crashes', { job, options: { parallel: 4, perGeneration: 8, retry: { firstRetryMs: 20, maxAttempts: 8, backoffCoefficient: 1.5, maxRetryMs: 200 } } });
    const s = await waitEnd(host, 'crashes');
    assert.equal(s.runtimeStatus, 'Completed', String(s.output));
    assert.ok(host.pool.stats.crashed >= 3, `crashed ${host.pool.stats.crashed} activity processes`);
    assert.equal(host.engine.stats.redeliveries, host.pool.stats.crashed, 'every lost attempt was delivered again');
    assert.equal(host.engine.stats.poisoned, 0);
    const out = az.service.getContainerClient('results');
    const rs = await results(out, 'crashes');
    assert.equal(rs.length, N);
    assert.equal(new Set(rs.map((r) => r.source.name)).size, N);
    checkColours(rs);
    const m = (await readJson<Manifest>(out, 'rel/crashes/_manifest.json'))!;
    assert.deepEqual([m.counts.images, m.counts.succeeded, m.counts.failed, m.counts.partitionsFailed], [N, N, 0, 0]);
  } finally {
    await host.stop();
  }
});

test('an attempt aborted for its functionTimeout: the pool kills its worker process (as the host restarts a worker after a timeout), starts another, and fails the attempt with the reason', async () => {
  const host = await startLocalHost({ storageConnectionString: az.azurite.connectionString, activityProcesses: 1, settings: { MODELS_CONTAINER: 'models' }, log: () => undefined, activityOutput: () => undefined });
  try {
    const started = host.pool.stats.started;
    const controller = new AbortController();
    const job = parseJobRequest(request('pool-abort', 'plain/', { skipExisting: false }));
    const attempt = host.pool.run('inferPartition', { job: { ...job, model: { name: 'colours', etag: 'x', jsonEtag: 'y' } }, n: 0 }, { signal: controller.signal });
    for (let i = 0; i < 500 && host.pool.busy === 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(host.pool.busy, 1, 'the attempt is running in a worker process');
    controller.abort(new Error('Timeout value of 00:00:00.0050000 exceeded'));
    await assert.rejects(attempt, /^Error: Timeout value of 00:00:00\.0050000 exceeded$/);
    for (let i = 0; i < 100 && host.pool.stats.started === started; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(host.pool.stats.started, started + 1, 'a new worker process replaced the killed one');
    assert.equal(host.pool.stats.crashed, 0, 'a timeout is not a lost process');
  } finally {
    await host.stop();
  }
});

test('a storage proxy failing 10% of requests (500, 503, resets): the job completes, nothing lost', async () => {
  const proxy = await startFaultProxy(az.azurite.blobPort, 0.1, 3);
  // Data through the faulty proxy; the host's own state straight to Azurite.
  const faulty = connectionStringFor(proxy.port, az.azurite.queuePort, az.azurite.tablePort);
  const host = await startLocalHost({ storageConnectionString: az.azurite.connectionString, activityProcesses: 2, settings: { MODELS_CONTAINER: 'models', DATA_STORAGE: faulty }, log: () => undefined, activityOutput: () => undefined });
  try {
    await submit({ url: host.url }, request('faulty', 'plain/', { skipExisting: false }));
    const s = await waitEnd(host, 'faulty');
    assert.equal(s.runtimeStatus, 'Completed', String(s.output));
    const injected = proxy.injected.status500 + proxy.injected.status503 + proxy.injected.reset;
    assert.ok(injected >= 10, `injected ${JSON.stringify(proxy.injected)}`);
    const out = az.service.getContainerClient('results');
    const rs = await results(out, 'faulty');
    assert.equal(rs.length, N);
    assert.equal(new Set(rs.map((r) => r.source.name)).size, N);
    checkColours(rs);
    assert.equal((await listAllBlobs(out, { prefix: 'rel/faulty/results/' })).length, N);
  } finally {
    await host.stop();
    await proxy.close();
  }
});

describe('hostile input, bad requests, cancellation, secrets', () => {
  let host: LocalHost;
  const logs: string[] = [];
  before(async () => {
    await az.ready;
    host = await startLocalHost({
      storageConnectionString: az.azurite.connectionString,
      activityProcesses: 2,
      settings: { MODELS_CONTAINER: 'models', MAX_IMAGE_PIXELS: '1000000' },
      log: (m) => logs.push(m),
      activityOutput: (l) => logs.push(l),
    });
  });
  after(() => host?.stop());

  test('corrupt, empty, truncated, non-image, bomb, CMYK, 16-bit, animated and EXIF-rotated inputs', async () => {
    const input = az.service.getContainerClient('images');
    const red = new Canvas(16, 8, [255, 0, 0]);
    const jpeg = await red.sharp().jpeg().toBuffer();
    const files: Record<string, Buffer> = {
      'hostile/corrupt.png': Buffer.from((await red.png()).map((b, i) => (i > 40 ? b ^ 0x55 : b))),
      'hostile/empty.jpg': Buffer.alloc(0),
      'hostile/truncated.jpg': jpeg.subarray(0, Math.floor(jpeg.length / 2)),
      'hostile/not-an-image.png': Buffer.from('%PDF-1.7 not a picture'),
      'hostile/bomb.png': await sharp({ create: { width: 2000, height: 2000, channels: 3, background: 'white' } }).png({ compressionLevel: 9 }).toBuffer(),
      'hostile/cmyk.jpg': await new Canvas(16, 16, [230, 20, 20]).sharp().toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer(),
      'hostile/deep16.png': await sharp(new Uint16Array(16 * 16 * 3).map((_, i) => (i % 3 === 1 ? 65535 : 0)), { raw: { width: 16, height: 16, channels: 3 } }).toColourspace('rgb16').png().toBuffer(),
      'hostile/animated.gif': await sharp(Buffer.concat([new Canvas(8, 8, [0, 0, 255]).data, new Canvas(8, 8, [255, 0, 0]).data]), { raw: { width: 8, height: 16, channels: 3, pageHeight: 8 } as sharp.CreateRaw }).gif().toBuffer(),
      'hostile/rotated.jpg': await red.sharp().jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer(),
    };
    for (const [name, data] of Object.entries(files)) await writeBlob(input, name, data);
    await submit({ url: host.url }, request('hostile', 'hostile/', { toleratedFailurePercent: 100, input: { container: 'images', prefix: 'hostile/', extensions: ['.png', '.jpg', '.gif'] } }));
    const s = await waitEnd(host, 'hostile');
    assert.equal(s.runtimeStatus, 'Completed', String(s.output));
    const out = az.service.getContainerClient('results');
    const failures = (await readBlob(out, 'rel/hostile/_failures.jsonl'))!.data.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { blob: string; code: string });
    assert.deepEqual(Object.fromEntries(failures.map((f) => [f.blob, f.code])), {
      'hostile/bomb.png': 'ImageTooLarge',
      'hostile/corrupt.png': 'ImageDecodeFailed',
      'hostile/empty.jpg': 'ImageEmpty',
      'hostile/not-an-image.png': 'ImageDecodeFailed',
      'hostile/truncated.jpg': 'ImageDecodeFailed',
    });
    const got = Object.fromEntries((await results(out, 'hostile')).map((r) => [r.source.name, r]));
    assert.equal(got['hostile/cmyk.jpg']!.classes![0]!.label, 'red');
    assert.equal(got['hostile/deep16.png']!.classes![0]!.label, 'green');
    assert.equal(got['hostile/animated.gif']!.classes![0]!.label, 'blue', 'first frame');
    assert.deepEqual([got['hostile/rotated.jpg']!.width, got['hostile/rotated.jpg']!.height], [8, 16], 'EXIF orientation applied');
    assert.equal(got['hostile/rotated.jpg']!.classes![0]!.label, 'red');
  });

  test('malformed requests: 400 naming the field', async () => {
    const cases: [unknown, string][] = [
      [[], '(body)'],
      [{ output: { container: 'results' }, model: { name: 'm' } }, 'input'],
      [{ input: { container: 'IMAGES' }, output: { container: 'results' }, model: { name: 'm' } }, 'input.container'],
      [{ input: { container: 'images', prefix: '../x' }, output: { container: 'results' }, model: { name: 'm' } }, 'input.prefix'],
      [{ input: { container: 'images', extensions: ['jpg'] }, output: { container: 'results' }, model: { name: 'm' } }, 'input.extensions[0]'],
      [{ input: { container: 'images' }, output: { container: 'results', overlays: 'yes' }, model: { name: 'm' } }, 'output.overlays'],
      [{ input: { container: 'images' }, output: { container: 'results' }, model: { name: '../secret' } }, 'model.name'],
      [{ input: { container: 'images' }, output: { container: 'results' }, model: { name: 'm' }, toleratedFailurePercent: 101 }, 'toleratedFailurePercent'],
      [{ input: { container: 'images' }, output: { container: 'results' }, model: { name: 'm' }, params: { scoreThreshold: 2 } }, 'params.scoreThreshold'],
      [{ input: { container: 'images' }, output: { container: 'results' }, model: { name: 'm' }, jobId: 'has space' }, 'jobId'],
      [{ input: { container: 'images' }, output: { container: 'results' }, model: { name: 'm' }, params: { nms: 1 } }, 'params.nms'],
    ];
    for (const [body, field] of cases) {
      const r = await fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
      const j = (await r.json()) as { error: { target: string; message: string } };
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(j.error.target, field, `${JSON.stringify(body)} -> ${j.error.message}`);
      assert.ok(j.error.message.includes(field === '(body)' ? 'body' : field), j.error.message);
    }
  });

  test('cancel mid-job: terminated, what was written stays', async () => {
    await submit({ url: host.url }, request('cancel-me', 'plain/', { partitionSize: 1, maxParallelPartitions: 1, skipExisting: false }));
    const out = az.service.getContainerClient('results');
    const count = async (): Promise<number> => (await listAllBlobs(out, { prefix: 'rel/cancel-me/results/' })).length;
    for (let i = 0; i < 400 && (await count()) < 4; i++) await new Promise((r) => setTimeout(r, 25));
    const r = await fetch(`${host.url}/api/jobs/cancel-me`, { method: 'DELETE' });
    assert.equal(r.status, 202);
    const atCancel = await count();
    assert.ok(atCancel >= 4 && atCancel < N, `cancelled after ${atCancel} of ${N}`);
    await new Promise((res) => setTimeout(res, 500));
    const s = await jobStatus({ url: host.url }, 'cancel-me');
    assert.equal(s.runtimeStatus, 'Terminated');
    const later = await count();
    assert.ok(later >= atCancel && later <= atCancel + 2, `outputs intact and no new waves: ${atCancel} -> ${later}`);
    for (const b of await listAllBlobs(out, { prefix: 'rel/cancel-me/results/' })) assert.ok(await readJson(out, b.name), `${b.name} is intact JSON`);
  });

  test('secrets never appear in logs, responses or outputs', async () => {
    // Some failures and errors have been logged by now (hostile inputs, bad requests).
    assert.ok(logs.length > 0, 'something was logged');
    const text = logs.join('\n');
    for (const secret of [DEV_KEY, az.azurite.connectionString, 'AccountKey=']) assert.ok(!text.includes(secret), `logs contain ${secret.slice(0, 12)}...`);
    const status = await (await fetch(`${host.url}/api/jobs/hostile`)).text();
    assert.ok(!status.includes(DEV_KEY) && !status.includes('AccountKey'));
    const out = az.service.getContainerClient('results');
    for (const name of ['rel/hostile/_manifest.json', 'rel/hostile/_failures.jsonl', 'rel/hostile/report.html']) {
      const b = (await readBlob(out, name))!.data.toString();
      assert.ok(!b.includes(DEV_KEY) && !b.includes('AccountKey'), name);
    }
  });
});
