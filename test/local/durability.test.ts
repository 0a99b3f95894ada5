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
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { DEV_ACCOUNT, DEV_KEY } from '../../lib/local/azurite/azurite';
import { LOCK_FILE } from '../../lib/local/azurite/lock';
import { startLocalHost } from '../../lib/local/host/host';
import { startAzurite } from '../../lib/local/azurite/azurite';
import { seeded } from '../../lib/local/durable/random';
import { listAllBlobs, readBlob, readJson, writeBlob, writeJson } from '../../lib/storage';
import type { Manifest } from '../../lib/fanin/finalize';
import { readParquetRows } from '../helpers/parquet';
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
  clearOutput: () => void;
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
        resolve({ proc, url, service: BlobServiceClient.fromConnectionString(cs, { retryOptions: { maxTries: 1 } }), azuritePid: pid, output: () => text, clearOutput: () => (text = '') });
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

type KillKind = 'host' | 'emulator' | 'both';
interface JobMark {
  kind: 'batch' | 'continuous';
  /** A cancel was acknowledged (202): the job must end cancelled. 'maybe': one was sent but its answer never came. */
  cancel?: 'acked' | 'maybe';
}

/**
 * The kill loop (issue 23): at seeded random moments the host, its storage emulator alone, or both
 * at once are killed with SIGKILL while images are uploaded, batch and continuous jobs submitted and
 * cancelled, jobs run, finalize and collect. After each kill: every blob the emulator acknowledged is
 * there with its bytes (after a kill of the emulator itself, those acknowledged before the last save
 * the host asked for: the emulator saves every 5 s on its own, the documented window), every job and
 * cancel the host acknowledged is there; at the end every batch job completes with each image
 * exactly once (or ends cancelled, when its cancel was acknowledged), every continuous job ends
 * cancelled with no blob version inferred twice. DURABILITY_SEED picks the schedule,
 * DURABILITY_KILLS how many kills (21 in npm test).
 */
const KILLS = Number(process.env['DURABILITY_KILLS'] ?? 21);
// About 20 s per kill on two cores: a longer loop gets a longer limit.
test('kill loop: the host, the emulator or both killed with SIGKILL at seeded moments during uploads, submits, cancels of both job kinds, jobs, finalize and collect: nothing acknowledged is lost', { timeout: Math.max(900_000, KILLS * 45_000) }, async () => {
  const seed = Number(process.env['DURABILITY_SEED'] ?? 2026);
  console.log(`durability: seed ${seed} (DURABILITY_SEED), ${KILLS} kills (DURABILITY_KILLS)`);
  const dataDir = await mkdtemp(join(tmpdir(), 'lakeinfer-durable-'));
  // The kill schedule (what, when) from one generator; the requests' choices from another, so that
  // a seed gives the same schedule however fast the machine answers.
  const schedule = seeded(seed);
  const rand = seeded(seed + 1);
  const pick = <T,>(xs: readonly T[], r = rand): T => xs[Math.floor(r() * xs.length)]!;
  /** Uploads the emulator acknowledged: md5, and when (client clock, after the answer). */
  const acked = new Map<string, { md5: string; at: number }>();
  const jobs = new Map<string, JobMark>();
  /** When each request the host acknowledged (it saves before answering) was sent. */
  const hostAcks: number[] = [0];
  const FIXED = 9;
  const batch = (jobId: string) => ({ jobId, input: { container: 'images', prefix: 'fixed/' }, output: { container: 'results', prefix: 'runs/' }, model: { name: 'colours' }, partitionSize: 2, maxParallelPartitions: 2, params: { topK: 1 } });
  const continuous = (jobId: string) => ({ jobId, mode: 'continuous', pollSeconds: 1, input: { container: 'cams', prefix: 'cam/', extensions: ['.png'] }, output: { container: 'results', prefix: 'watch/' }, model: { name: 'colours' }, partitionSize: 2, params: { topK: 1 } });
  const phases = new Map<string, number>();
  const kinds = new Map<KillKind, number>();

  let host = await startHost(dataDir);
  const models = host.service.getContainerClient('models');
  await models.createIfNotExists();
  await writeBlob(models, 'colours/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'colours/model.json', classifierSpec());
  for (const c of ['images', 'cams']) await host.service.getContainerClient(c).createIfNotExists();
  const images = host.service.getContainerClient('images');
  for (let i = 0; i < FIXED; i++) await writeBlob(images, `fixed/${i}.png`, await new Canvas(10, 8, [(i * 40) % 256, 200, 30]).png());
  // The setup is saved (a job start saves): from here on the loop's own rules apply.
  await fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify(batch('job-setup')) });
  jobs.set('job-setup', { kind: 'batch' });

  const verify = async (k: number, kind: KillKind, killedAt: number, backAt: number): Promise<void> => {
    const where = `kill ${k} (${kind})`;
    // What the emulator had saved when it died: everything acknowledged before a request the host
    // acknowledged was sent (the host saves before it answers), counting requests sent before the kill.
    const savedBefore = Math.max(...hostAcks.filter((t) => t < killedAt));
    for (const [name, a] of acked) {
      // After the emulator itself died, what it acknowledged after the last save may be gone.
      if (kind !== 'host' && a.at >= savedBefore) continue;
      const got = await readBlob(host.service.getContainerClient(name.startsWith('cam/') ? 'cams' : 'images'), name);
      assert.ok(got, `${where}: acknowledged blob ${name} is there after the restart (acknowledged ${killedAt - a.at} ms before the kill, ${savedBefore - a.at} ms before the last request the host saved for)`);
      assert.equal(md5(got.data), a.md5, `${where}: ${name} has its bytes`);
    }
    // Uploads the emulator may have lost are forgotten (not checked again): those acknowledged after
    // its last save, until it was seen back (an answer already on its way when SIGKILL was sent counts).
    if (kind !== 'host') for (const [name, a] of acked) if (a.at >= savedBefore && a.at <= backAt) acked.delete(name);
    for (const id of jobs.keys()) {
      const r = await fetch(`${host.url}/api/jobs/${id}`);
      assert.equal(r.status, 200, `${where}: acknowledged job ${id} is there after the restart`);
    }
  };

  for (let k = 0; k < KILLS; k++) {
    const kind: KillKind = pick(['host', 'host', 'emulator', 'both'] as const, schedule);
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    let stop = false;
    const uploads = (async () => {
      for (let i = 0; !stop; i++) {
        const png = await new Canvas(6, 6, [k * 11 % 256, i % 256, 99]).png();
        const cam = i % 3 === 0;
        const name = cam ? `cam/k${k}-${i}.png` : `live/k${k}-${i}.png`;
        try {
          await host.service.getContainerClient(cam ? 'cams' : 'images').getBlockBlobClient(name).uploadData(png);
          acked.set(name, { md5: md5(png), at: Date.now() });
        } catch {
          if (stop) return; // the emulator went away mid-request: not acknowledged
          await new Promise((r) => setTimeout(r, 50)); // answered 503 while it restarts
        }
      }
    })();
    const requests = (async () => {
      for (let i = 0; !stop; i++) {
        const r = rand();
        const running = [...jobs].filter(([, m]) => m.cancel === undefined);
        const sent = Date.now();
        try {
          if (r < 0.5 || running.length === 0) {
            const id = `job-${k}-${i}`;
            const res = await fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify(batch(id)) });
            if (res.status === 202) {
              jobs.set(id, { kind: 'batch' });
              hostAcks.push(sent);
            }
          } else if (r < 0.6 && [...jobs.values()].filter((m) => m.kind === 'continuous' && m.cancel === undefined).length < 2) {
            const id = `cont-${k}-${i}`;
            const res = await fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify(continuous(id)) });
            if (res.status === 202) {
              jobs.set(id, { kind: 'continuous' });
              hostAcks.push(sent);
            }
          } else if (r < 0.75) {
            const [id, mark] = pick(running);
            mark.cancel = 'maybe';
            const res = await fetch(`${host.url}/api/jobs/${id}`, { method: 'DELETE' });
            if (res.status === 202) {
              mark.cancel = 'acked';
              hostAcks.push(sent);
            } else if (res.status === 409) delete mark.cancel; // it ended (or is finishing) first
          }
        } catch {
          return; // the host went away mid-request: not acknowledged
        }
        await new Promise((res) => setTimeout(res, 100 + rand() * 300));
      }
    })();
    // Every third kill waits for a job to be finalizing, or a continuous job to be collecting.
    const watching = [...jobs].filter(([, m]) => m.kind === 'continuous' && m.cancel === undefined).map(([id]) => id);
    const aim = k % 3 === 2 ? (watching.length > 0 && schedule() < 0.5 ? 'watching' : 'finalizing') : undefined;
    const firstOfCycle = jobs.size;
    const until = Date.now() + 400 + schedule() * 1600;
    let phase = 'random moment';
    for (;;) {
      if (aim) {
        const ids = aim === 'watching' ? watching : [...jobs.keys()].slice(firstOfCycle);
        const seen = await Promise.all(ids.map((id) => fetch(`${host.url}/api/jobs/${id}`).then((r) => r.json() as Promise<{ progress?: { phase?: string } }>, () => undefined)));
        if (seen.some((v) => v?.progress?.phase === aim)) {
          phase = aim;
          break;
        }
        if (Date.now() > until + 3000) break;
      } else if (Date.now() > until) break;
      await new Promise((r) => setTimeout(r, aim ? 20 : 50));
    }
    phases.set(phase, (phases.get(phase) ?? 0) + 1);
    const lock = JSON.parse(readFileSync(join(dataDir, LOCK_FILE), 'utf8')) as { emulatorPid: number };
    const killedAt = Date.now();
    if (kind === 'host' || kind === 'both') host.proc.kill('SIGKILL');
    if (kind === 'emulator' || kind === 'both') process.kill(lock.emulatorPid, 'SIGKILL');
    if (kind === 'emulator') {
      // The host restarts its emulator on the same ports and goes back to its saved state.
      for (let i = 0; i < 600 && !/storage emulator is back/.test(host.output()); i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(host.output(), /storage emulator is back/, `kill ${k}: the host restarted its emulator`);
      host.clearOutput();
      stop = true;
      await Promise.all([uploads, requests]);
    } else {
      await new Promise((r) => host.proc.once('exit', r));
      stop = true;
      await Promise.all([uploads, requests]);
      // The emulator follows its host (saving what it acknowledged, when it was not killed itself).
      for (let i = 0; i < 200 && alive(lock.emulatorPid); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(!alive(lock.emulatorPid), `kill ${k}: the storage emulator (pid ${lock.emulatorPid}) outlived its host`);
      host = await startHost(dataDir);
    }
    await verify(k, kind, killedAt, Date.now());
  }

  // The end: continuous jobs are stopped; every job ends as its acknowledgements say.
  for (const [id, m] of jobs) {
    if (m.kind === 'continuous' && m.cancel !== 'acked') {
      const res = await fetch(`${host.url}/api/jobs/${id}`, { method: 'DELETE' });
      if (res.status === 202) m.cancel = 'acked';
    }
  }
  const out = host.service.getContainerClient('results');
  let completed = 0;
  let cancelled = 0;
  for (const [id, m] of jobs) {
    let v: { runtimeStatus: string; status: string } = { runtimeStatus: '', status: '' };
    for (let i = 0; i < 1200 && !['Completed', 'Failed', 'Terminated'].includes(v.runtimeStatus); i++) {
      v = (await (await fetch(`${host.url}/api/jobs/${id}`)).json()) as typeof v;
      if (!['Completed', 'Failed', 'Terminated'].includes(v.runtimeStatus)) await new Promise((r) => setTimeout(r, 100));
    }
    if (v.runtimeStatus === 'Failed') {
      const f = (await readBlob(out, `${m.kind === 'batch' ? 'runs' : 'watch'}/${id}/_failures.jsonl`))?.data.toString() ?? '';
      assert.fail(`job ${id} failed: ${JSON.stringify((v as { output?: unknown }).output)}; failures: ${f.slice(0, 3000)}`);
    }
    if (m.cancel === 'acked') assert.equal(v.status, 'cancelled', `job ${id}: its acknowledged cancel holds`);
    if (v.status === 'cancelled') {
      cancelled++;
      assert.ok(m.cancel !== undefined, `job ${id} ended cancelled, and only a cancel does that`);
    } else {
      completed++;
      assert.equal(v.status, 'succeeded', `job ${id}`);
    }
    const folder = m.kind === 'batch' ? `runs/${id}/` : `watch/${id}/`;
    let names: string[];
    if (m.kind === 'batch') {
      const text = (await readBlob(out, `${folder}results.jsonl`))?.data.toString() ?? '';
      names = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as ImageResult).map((r) => `${r.source.name}@${r.source.etag}`);
    } else {
      // A continuous job's results are its Parquet dataset: one row per image version (a classifier's top 1).
      const manifest = await readJson<Manifest>(out, `${folder}_manifest.json`);
      names = [];
      for (const part of manifest?.datasets?.results.parts ?? []) {
        const got = await readBlob(out, `${folder}results.parquet/${part}`);
        if (!got) {
          const have = (await listAllBlobs(out, { prefix: folder })).map((b) => b.name.slice(folder.length)).filter((n) => !n.startsWith('_arrivals/') && !n.startsWith('_continuous/') && !n.startsWith('results/'));
          assert.fail(`job ${id}: its manifest lists ${part}, which is not there; the folder holds ${have.join(', ')}; manifest ${JSON.stringify(manifest)}`);
        }
        names.push(...readParquetRows(got.data).rows.map((r) => `${String(r['image'])}@${String(r['image_etag'])}`));
      }
    }
    assert.equal(new Set(names).size, names.length, `job ${id}: no image version twice`);
    if (m.kind === 'batch' && v.status === 'succeeded') assert.deepEqual(names.map((n) => n.split('@')[0]).sort(), Array.from({ length: FIXED }, (_, i) => `fixed/${i}.png`).sort(), `job ${id}: every image exactly once`);
  }
  host.proc.kill('SIGTERM');
  await new Promise((r) => host.proc.once('exit', r));
  const show = (m: Map<string, number>): string => [...m].map(([x, n]) => `${x} ${n}`).join(', ');
  console.log(`durability: seed ${seed}: ${KILLS} kills (${show(kinds)}; at ${show(phases)}); ${acked.size} acknowledged blobs checked after every kill; ${jobs.size} acknowledged jobs (${[...jobs.values()].filter((m) => m.kind === 'continuous').length} continuous): ${completed} completed with each image once, ${cancelled} cancelled`);
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

test('an emulator whose host dies while it saves for a flush still saves what it acknowledged after (it no longer crashes answering a host that is gone)', async () => {
  for (let round = 0; round < 3; round++) {
    const dataDir = await mkdtemp(join(tmpdir(), 'lakeinfer-flushdeath-'));
    const proc = spawn(process.execPath, [join(__dirname, '..', 'helpers', 'dyingHost.js'), dataDir, '3000'], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(proc);
    let out = '';
    proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    await new Promise((r) => proc.once('exit', r));
    const pid = Number(/emulator (\d+)/.exec(out)?.[1]);
    assert.ok(pid > 0, out);
    for (let i = 0; i < 400 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!alive(pid), 'the emulator exits after its host');
    const acked = [...out.matchAll(/^acked (\S+)$/gm)].map((m) => m[1]!);
    assert.equal(acked.length, 3, out);
    const azurite = await startAzurite({ location: dataDir });
    try {
      const c = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient('acked');
      for (const name of acked) assert.ok(await readBlob(c, name), `round ${round}: ${name}, acknowledged after the flush began, is there after the restart`);
    } finally {
      await azurite.stop();
    }
  }
});
