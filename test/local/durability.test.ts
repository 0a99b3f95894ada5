/**
 * Acknowledged = durable in the persistent local mode (`lakeinfer host --data DIR`): the host
 * process is killed with SIGKILL at seeded random moments while images are uploaded and jobs
 * submitted. After every restart each acknowledged blob is there with its bytes and each
 * acknowledged job answers; at the end every job completes with each image exactly once. No
 * storage emulator outlives its host.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { DEV_ACCOUNT, DEV_KEY } from '../../lib/local/azurite/azurite';
import { LOCK_FILE } from '../../lib/local/azurite/lock';
import { startLocalHost } from '../../lib/local/host/host';
import { seeded } from '../../lib/local/durable/random';
import { readBlob, writeBlob, writeJson } from '../../lib/storage';
import type { ImageResult } from '../../lib/partition/pipeline';
import { Canvas } from '../helpers/images';
import { classifierFixture, classifierSpec } from '../helpers/models';

const procs: ChildProcess[] = [];
after(() => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
});

interface Host {
  proc: ChildProcess;
  url: string;
  service: BlobServiceClient;
  azuritePid: number;
  output: () => string;
}

function startHost(dataDir: string): Promise<Host> {
  const proc = spawn(process.execPath, [join(__dirname, '..', '..', 'lib', 'cli', 'cli.js'), 'host', '--data', dataDir, '--port', '0', '--blob-port', '0', '--processes', '2'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MODELS_CONTAINER: 'models' },
  });
  procs.push(proc);
  let text = '';
  proc.stderr!.on('data', (c: Buffer) => (text += c.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`host did not start:\n${text}`)), 60_000);
    proc.stdout!.on('data', (c: Buffer) => {
      text += c.toString();
      const url = /local host at (http:\/\/127\.0\.0\.1:\d+)/.exec(text)?.[1];
      const blob = /BlobEndpoint=(http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1)/.exec(text)?.[1];
      if (url && blob) {
        clearTimeout(timer);
        // The only key the host prints is Azurite's public development key (a connection string that works).
        for (const m of text.matchAll(/AccountKey=([^;'\s]*)/g)) assert.equal(m[1], DEV_KEY, 'no key but the public development key is printed');
        const cs = `DefaultEndpointsProtocol=http;AccountName=${DEV_ACCOUNT};AccountKey=${DEV_KEY};BlobEndpoint=${blob}`;
        const { emulatorPid: pid } = JSON.parse(readFileSync(join(dataDir, LOCK_FILE), 'utf8')) as { emulatorPid: number };
        // No retries: a request the killed host did not answer is simply not acknowledged.
        resolve({ proc, url, service: BlobServiceClient.fromConnectionString(cs, { retryOptions: { maxTries: 1 } }), azuritePid: pid, output: () => text });
      }
    });
    proc.once('exit', (code) => reject(new Error(`host exited ${code}:\n${text}`)));
  });
}

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('kill -9 of the host at random moments during uploads, submits and jobs: nothing acknowledged is lost, every job completes exactly once', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'lakeinfer-durable-'));
  const rand = seeded(Number(process.env['DURABILITY_SEED'] ?? 2026));
  const acked = new Map<string, string>(); // blob -> md5
  const jobs: string[] = [];
  const FIXED = 9;
  const request = (jobId: string) => ({ jobId, input: { container: 'images', prefix: 'fixed/' }, output: { container: 'results', prefix: 'runs/' }, model: { name: 'colours' }, partitionSize: 2, maxParallelPartitions: 2, params: { topK: 1 } });

  let host = await startHost(dataDir);
  const models = host.service.getContainerClient('models');
  await models.createIfNotExists();
  await writeBlob(models, 'colours/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'colours/model.json', classifierSpec());
  const images = host.service.getContainerClient('images');
  await images.createIfNotExists();
  for (let i = 0; i < FIXED; i++) {
    const png = await new Canvas(10, 8, [(i * 40) % 256, 200, 30]).png();
    await writeBlob(images, `fixed/${i}.png`, png);
    acked.set(`fixed/${i}.png`, md5(png));
  }

  for (let cycle = 0; cycle < 4; cycle++) {
    if (cycle > 0) {
      host = await startHost(dataDir);
      const c: ContainerClient = host.service.getContainerClient('images');
      for (const [name, sum] of acked) {
        const got = await readBlob(c, name);
        assert.ok(got, `cycle ${cycle}: acknowledged blob ${name} is there after the restart`);
        assert.equal(md5(got.data), sum, `cycle ${cycle}: ${name} has its bytes`);
      }
      for (const id of jobs) {
        const r = await fetch(`${host.url}/api/jobs/${id}`);
        assert.equal(r.status, 200, `cycle ${cycle}: acknowledged job ${id} is there after the restart`);
      }
    }
    // Upload and submit until the host is killed, recording only what was acknowledged.
    let stop = false;
    const uploads = (async () => {
      const c = host.service.getContainerClient('images');
      for (let i = 0; !stop; i++) {
        const png = await new Canvas(6, 6, [cycle * 50, i % 256, 99]).png();
        const name = `live/c${cycle}-${i}.png`;
        try {
          await c.getBlockBlobClient(name).uploadData(png, { blobHTTPHeaders: { blobContentType: 'image/png' } });
          acked.set(name, md5(png));
        } catch {
          return; // the host (and its emulator) went away mid-request: not acknowledged
        }
      }
    })();
    const submits = (async () => {
      for (let k = 0; !stop; k++) {
        const id = `job-${cycle}-${k}`;
        try {
          const r = await fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify(request(id)) });
          if (r.status === 202) jobs.push(id);
        } catch {
          return;
        }
        await new Promise((r) => setTimeout(r, 150 + rand() * 300));
      }
    })();
    await new Promise((r) => setTimeout(r, 400 + rand() * 1600));
    const azuritePid = host.azuritePid;
    host.proc.kill('SIGKILL');
    await new Promise((r) => host.proc.once('exit', r));
    stop = true;
    await Promise.all([uploads, submits]);
    // The emulator follows its host: it saves what it acknowledged and exits, leaving no orphan.
    for (let i = 0; i < 200 && alive(azuritePid); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!alive(azuritePid), `cycle ${cycle}: the storage emulator (pid ${azuritePid}) outlived its host`);
    assert.ok(!existsSync(join(dataDir, LOCK_FILE)), 'its lock is gone');
  }

  host = await startHost(dataDir);
  assert.ok(jobs.length >= 4, `${jobs.length} jobs were acknowledged`);
  const out = host.service.getContainerClient('results');
  for (const id of jobs) {
    let status = '';
    for (let i = 0; i < 600 && !['Completed', 'Failed', 'Terminated'].includes(status); i++) {
      status = ((await (await fetch(`${host.url}/api/jobs/${id}`)).json()) as { runtimeStatus: string }).runtimeStatus;
      if (status !== 'Completed') await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 'Completed', `job ${id}`);
    const lines = (await readBlob(out, `runs/${id}/results.jsonl`))!.data.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as ImageResult);
    assert.deepEqual(lines.map((r) => r.source.name).sort(), Array.from({ length: FIXED }, (_, i) => `fixed/${i}.png`).sort(), `job ${id}: every image exactly once`);
  }
  host.proc.kill('SIGTERM');
  await new Promise((r) => host.proc.once('exit', r));
  console.log(`durability: 4 kills, ${acked.size} acknowledged blobs and ${jobs.length} acknowledged jobs all there; every job completed exactly once`);
});

test('the storage emulator killed alone mid-job: the host notices, restarts it on the same ports, and the job finishes from its saved state', async () => {
  const logs: string[] = [];
  const dataDir = await mkdtemp(join(tmpdir(), 'lakeinfer-azdies-'));
  const host = await startLocalHost({ azuriteLocation: dataDir, activityProcesses: 2, settings: { MODELS_CONTAINER: 'models' }, log: (m) => logs.push(m), activityOutput: () => undefined });
  try {
    const service = BlobServiceClient.fromConnectionString(host.connectionString);
    const models = service.getContainerClient('models');
    await models.create();
    await writeBlob(models, 'colours/model.onnx', Buffer.from(classifierFixture()));
    await writeJson(models, 'colours/model.json', classifierSpec());
    const images = service.getContainerClient('images');
    await images.create();
    for (let i = 0; i < 12; i++) await writeBlob(images, `img/${i}.png`, await new Canvas(8, 8, [200, i * 20, 0]).png());
    // The emulator saves every 5 s: as if the uploads were that long ago (the job start is flushed by the host).
    await host.azurite!.flush();
    const r = await fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify({ jobId: 'az-dies', input: { container: 'images', prefix: 'img/' }, output: { container: 'results' }, model: { name: 'colours' }, partitionSize: 1, maxParallelPartitions: 1, toleratedFailurePercent: 100 }) });
    assert.equal(r.status, 202);
    const first = host.azurite!.process;
    await new Promise((res) => setTimeout(res, 300));
    first.kill('SIGKILL');
    const s = await host.engine.waitFor('az-dies', 120_000);
    assert.ok(logs.some((l) => /storage emulator exited unexpectedly \(SIGKILL\); restarting it/.test(l)), logs.join('\n'));
    assert.ok(logs.some((l) => /storage emulator is back/.test(l)));
    assert.equal(s.runtimeStatus, 'Completed', String(s.output));
    // Same ports: the connection string every client holds still works.
    assert.notEqual(host.azurite!.process.pid, first.pid);
    assert.ok(await readBlob(service.getContainerClient('results'), 'az-dies/_manifest.json'));
    const status = (await (await fetch(`${host.url}/api/jobs/az-dies`)).json()) as { runtimeStatus: string };
    assert.equal(status.runtimeStatus, 'Completed');
  } finally {
    await host.stop();
  }
});

test('every acknowledged write is saved before its answer: a continuous job\'s cancel (a blob write, no terminate) survives the emulator killed right after the 202', async () => {
  const logs: string[] = [];
  const dataDir = await mkdtemp(join(tmpdir(), 'lakeinfer-ackcancel-'));
  const host = await startLocalHost({ azuriteLocation: dataDir, activityProcesses: 1, settings: { MODELS_CONTAINER: 'models' }, log: (m) => logs.push(m), activityOutput: () => undefined });
  try {
    const service = BlobServiceClient.fromConnectionString(host.connectionString);
    const models = service.getContainerClient('models');
    await models.create();
    await writeBlob(models, 'colours/model.onnx', Buffer.from(classifierFixture()));
    await writeJson(models, 'colours/model.json', classifierSpec());
    await service.getContainerClient('cam').create();
    await host.azurite!.flush();
    const r = await fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify({ jobId: 'ack-cont', mode: 'continuous', pollSeconds: 3600, input: { container: 'cam' }, output: { container: 'results' }, model: { name: 'colours' } }) });
    assert.equal(r.status, 202);
    // Watching: waiting an hour for its next look.
    for (let i = 0; i < 600; i++) {
      const s = (await (await fetch(`${host.url}/api/jobs/ack-cont`)).json()) as { progress?: { phase?: string } };
      if (s.progress?.phase === 'watching') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const first = host.azurite!.process;
    const del = await fetch(`${host.url}/api/jobs/ack-cont`, { method: 'DELETE' });
    assert.equal(del.status, 202);
    // The emulator dies the moment the answer is out (it saves on its own only every 5 s).
    first.kill('SIGKILL');
    for (let i = 0; i < 300 && !logs.some((l) => /storage emulator is back/.test(l)); i++) await new Promise((res) => setTimeout(res, 100));
    assert.ok(logs.some((l) => /storage emulator is back/.test(l)), logs.join('\n'));
    const outcome = await readBlob(service.getContainerClient('results'), 'ack-cont/_outcome.json');
    assert.ok(outcome, 'the acknowledged cancel is there after the emulator restarted');
    assert.equal((JSON.parse(outcome.data.toString()) as { status: string }).status, 'cancelled');
  } finally {
    await host.stop();
  }
});
