/**
 * What a job guarantees, case by case, as a careless or hostile user would find out otherwise:
 * one request and one model version per job, models checked before any work, the orchestrator's
 * own input checked, outputs that cannot feed back or collide, cancel and finalize never
 * disagreeing, and a host that answers bad requests with 4xx instead of 500s or hangs.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { closeDefaultActivities, defaultActivities } from '../../lib/orchestration/activities';
import { cancelJob, submitJob } from '../../lib/api/jobs';
import { emptyFolder, folderRegistryName } from '../../lib/job/folder';
import { resetSettingsCache } from '../../lib/util/config';
import { LakeInferError } from '../../lib/util/errors';
import type { Manifest } from '../../lib/fanin/finalize';
import { parseJobRequest } from '../../lib/job/request';
import { DurableEngine, type ActivityRunner } from '../../lib/local/durable/engine';
import { startLocalHost, type LocalHost } from '../../lib/local/host/host';
import { downloadOutputs } from '../../lib/cli/outputs';
import { ModelCache, analyzeImage } from '../../lib/model';
import { DEFAULT_LIMITS } from '../../lib/model/preprocess';
import type { ImageResult } from '../../lib/partition/pipeline';
import { partSummaryName, type PartitionSummary } from '../../lib/partition/parts';
import { listAllBlobs, maskConnectionString, readBlob, readJson, writeBlob, writeJson, writePlan } from '../../lib/storage';
import { uniqueContainer, useAzurite } from '../helpers/azurite';
import { registeredFunctions } from '../helpers/host';
import { Canvas } from '../helpers/images';
import { classifierFixture, classifierSpec, nanForDarkFixture, yolactSpec } from '../helpers/models';

const az = useAzurite();
const COLOURS: [number, number, number][] = [[255, 0, 0], [0, 255, 0], [0, 0, 255]];
const FAST = { parallel: 2, perGeneration: 50, retry: { firstRetryMs: 10, maxAttempts: 2, backoffCoefficient: 1, maxRetryMs: 20 } };

let models: ContainerClient;
let images: ContainerClient;
let out: ContainerClient;

before(async () => {
  await az.ready;
  process.env['DATA_STORAGE'] = az.azurite.connectionString;
  process.env['MODELS_CONTAINER'] = 'models';
  process.env['INFER_WORKERS'] = '1';
  process.env['ORT_INTRA_OP_THREADS'] = '1';
  resetSettingsCache();
  models = az.service.getContainerClient('models');
  await models.create();
  await writeBlob(models, 'colours/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'colours/model.json', classifierSpec());
  images = az.service.getContainerClient('images');
  await images.create();
  for (const folder of ['a', 'b']) for (let i = 0; i < 6; i++) await writeBlob(images, `${folder}/${i}.png`, await new Canvas(8, 8, COLOURS[i % 3]!).png());
  out = az.service.getContainerClient('results');
});
after(() => closeDefaultActivities());

function request(jobId: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { jobId, input: { container: 'images', prefix: 'a/' }, output: { container: 'results', prefix: 'g/' }, model: { name: 'colours' }, partitionSize: 2, params: { topK: 1 }, ...over };
}

async function runJob(jobId: string, over: Record<string, unknown> = {}, runActivity?: ActivityRunner) {
  const e = new DurableEngine(registeredFunctions(), { maxConcurrentActivities: 2, ...(runActivity ? { runActivity } : {}) });
  await e.start('inferenceJob', jobId, { job: parseJobRequest(request(jobId, over)), options: FAST });
  const s = await e.waitFor(jobId, 60_000);
  e.close();
  return s;
}

async function results(prefix: string): Promise<ImageResult[]> {
  const b = await readBlob(out, `${prefix}results.jsonl`);
  return b ? b.data.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as ImageResult) : [];
}

function code(c: string, re?: RegExp) {
  return (e: unknown) => e instanceof LakeInferError && e.code === c && (re === undefined || re.test(e.message));
}

describe('one request per job', () => {
  test('restart: true replaces a finished job: a new plan from the new input, the old outputs gone', async () => {
    assert.equal((await runJob('re-1')).runtimeStatus, 'Completed');
    assert.deepEqual((await results('g/re-1/')).map((r) => r.source.name.split('/')[0]), new Array(6).fill('a'));
    // Without restart, planJob refuses the other request (as the API does with a 409).
    const refused = await runJob('re-1', { input: { container: 'images', prefix: 'b/' } });
    assert.equal(refused.runtimeStatus, 'Failed');
    assert.match(String(refused.output), /JobSpecConflict: .*input\.prefix differ/);
    const s = await runJob('re-1', { input: { container: 'images', prefix: 'b/' }, params: { topK: 2 }, restart: true });
    assert.equal(s.runtimeStatus, 'Completed', String(s.output));
    const rs = await results('g/re-1/');
    assert.deepEqual(rs.map((r) => r.source.name.split('/')[0]), new Array(6).fill('b'), 'every result from the new input');
    assert.ok(rs.every((r) => r.classes!.length === 2), 'every result with the new params');
    const perImage = (await listAllBlobs(out, { prefix: 'g/re-1/results/' })).map((b) => b.name);
    assert.ok(perImage.every((n) => n.startsWith('g/re-1/results/b/')), `no result of the old request left: ${perImage.join(', ')}`);
    const m = (await readJson<Manifest>(out, 'g/re-1/_manifest.json'))!;
    assert.equal(m.input.prefix, 'b/');
  });

  test('a model replaced during a job: the job runs the version it pinned, or fails with ModelChanged; never two versions', async () => {
    const swapJob = async (jobId: string, replaceJson: boolean) => {
      await writeBlob(models, `${jobId}/model.onnx`, Buffer.from(classifierFixture()));
      await writeJson(models, `${jobId}/model.json`, classifierSpec());
      const pinned = await new ModelCache({ workers: 1, intraOpThreads: 1, batchSize: 1 }).current(models, jobId);
      let swapped = false;
      const s = await runJob(jobId, { model: { name: jobId } }, async (name, _input, _attempt, run) => {
        const r = await run();
        if (name === 'planJob' && !swapped) {
          swapped = true;
          // Another version uploaded, and this process's loaded copy dropped (as on another instance).
          await writeBlob(models, `${jobId}/model.onnx`, Buffer.from(nanForDarkFixture()));
          if (replaceJson) await writeJson(models, `${jobId}/model.json`, { ...classifierSpec(), labels: ['a', 'b', 'c', 'd'] });
          await closeDefaultActivities();
        }
        return r;
      });
      return { s, pinned, rs: await results(`g/${jobId}/`), manifest: (await readJson<Manifest>(out, `g/${jobId}/_manifest.json`))! };
    };
    // model.onnx replaced: the plan's instance still has the pinned file on its disk, so every
    // partition runs the pinned version (and the pinned model.json's labels).
    const kept = await swapJob('swap-onnx', false);
    assert.equal(kept.s.runtimeStatus, 'Completed', String(kept.s.output));
    assert.equal(kept.rs.length, 6);
    assert.deepEqual(new Set(kept.rs.map((r) => r.model.etag)), new Set([kept.pinned.etag]), 'every result from the pinned version');
    assert.equal(kept.manifest.model.etag, kept.pinned.etag);
    // model.json replaced too: the pinned version can be had nowhere; every partition fails with
    // ModelChanged, no result of the new version is written, and the manifest names the pinned one.
    const gone = await swapJob('swap-both', true);
    assert.equal(gone.s.runtimeStatus, 'Failed');
    assert.match((await readBlob(out, 'g/swap-both/_failures.jsonl'))!.data.toString(), /ModelChanged.*restart/);
    assert.equal(gone.rs.length, 0, 'no result from the other version');
    assert.equal(gone.manifest.model.etag, gone.pinned.etag);
  });

  test('where the pinned version is nowhere to be had any more, loading it is ModelChanged (with the way out)', async () => {
    const cache = new ModelCache({ workers: 1, intraOpThreads: 1, batchSize: 1, cacheDir: await mkdtemp(join(tmpdir(), 'lakeinfer-pin-')) });
    try {
      await writeBlob(models, 'gone/model.onnx', Buffer.from(classifierFixture()));
      await writeJson(models, 'gone/model.json', classifierSpec());
      const pin = await cache.current(models, 'gone');
      await writeBlob(models, 'gone/model.onnx', Buffer.from(nanForDarkFixture()));
      await assert.rejects(cache.get(models, 'gone', pin), code('ModelChanged', /replaced after this job was planned.*"restart": true/));
      // model.json replaced alone: the same.
      const pin2 = await cache.current(models, 'gone');
      await writeJson(models, 'gone/model.json', { ...classifierSpec(), labels: ['a', 'b', 'c', 'd'] });
      await assert.rejects(cache.get(models, 'gone', pin2), code('ModelChanged', /model\.json/));
    } finally {
      await cache.close();
    }
  });
});

describe('models are checked against their ONNX file before any work', () => {
  async function plan(name: string, json: unknown, onnx = classifierFixture()) {
    await writeBlob(models, `${name}/model.onnx`, Buffer.from(onnx));
    await writeJson(models, `${name}/model.json`, json);
    return defaultActivities().planJob(parseJobRequest(request(`plan-${name}`, { model: { name } })));
  }

  test('too few labels, the wrong adapter, a normalisation that makes NaN: ModelInvalid saying what is wrong', async () => {
    let r = await plan('short-labels', { ...classifierSpec(), labels: ['red', 'green', 'blue'] });
    assert.ok(!r.ok && r.error.code === 'ModelInvalid' && /lists 3 labels but the model scores 4 classes/.test(r.error.message), JSON.stringify(r));
    r = await plan('wrong-adapter', { ...yolactSpec(), input: { ...yolactSpec().input, width: 8, height: 8 } });
    assert.ok(!r.ok && r.error.code === 'ModelInvalid' && /yolact adapter finds no outputs/.test(r.error.message), JSON.stringify(r));
    r = await plan('nan-scale', { ...classifierSpec(), input: { ...classifierSpec().input, scale: 1e39 } });
    assert.ok(!r.ok && r.error.code === 'ModelInvalid' && /normalisation gives/.test(r.error.message), JSON.stringify(r));
    r = await plan('fine', classifierSpec());
    assert.ok(r.ok, JSON.stringify(r));
  });

  test('outputs that are NaN for one image fail that image with ModelOutputInvalid, never a result', async () => {
    const cache = new ModelCache({ workers: 1, intraOpThreads: 1, batchSize: 1 });
    try {
      const c = az.service.getContainerClient(uniqueContainer('models'));
      await c.create();
      await writeBlob(c, 'nan/model.onnx', Buffer.from(nanForDarkFixture()));
      await writeJson(c, 'nan/model.json', classifierSpec());
      const m = await cache.get(c, 'nan', undefined, { validate: true });
      assert.equal((await analyzeImage(await new Canvas(8, 8, [250, 240, 230]).png(), m, {}, DEFAULT_LIMITS)).classes!.length, 4);
      await assert.rejects(analyzeImage(await new Canvas(8, 8, [0, 0, 0]).png(), m, {}, DEFAULT_LIMITS), code('ModelOutputInvalid', /NaN or infinite/));
    } finally {
      await cache.close();
    }
  });

  test('the local model cache stays under its size, and a file ONNX Runtime cannot load is removed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lakeinfer-cache-'));
    const size = classifierFixture().length;
    const cache = new ModelCache({ workers: 1, intraOpThreads: 1, batchSize: 1, cacheDir: dir, maxCacheBytes: Math.floor(size * 1.5) });
    try {
      const c = az.service.getContainerClient(uniqueContainer('models'));
      await c.create();
      for (const name of ['one', 'two']) {
        await writeBlob(c, `${name}/model.onnx`, Buffer.from(classifierFixture()));
        await writeJson(c, `${name}/model.json`, classifierSpec());
        await cache.get(c, name);
      }
      assert.equal((await readdir(dir)).filter((f) => f.endsWith('.onnx')).length, 1, 'only the most recent fits');
      await writeBlob(c, 'broken/model.onnx', Buffer.from('not onnx at all'));
      await writeJson(c, 'broken/model.json', classifierSpec());
      await assert.rejects(cache.get(c, 'broken'), code('ModelInvalid'));
      const left = await readdir(dir);
      assert.equal(left.filter((f) => f.endsWith('.onnx')).length, 1, `the broken download is gone: ${left.join(', ')}`);
      assert.equal(left.filter((f) => f.endsWith('.part')).length, 0);
    } finally {
      await cache.close();
    }
  });
});

describe('the orchestrator checks its own input', () => {
  test('an input the API would refuse fails the instance at once, naming the field (no loop spins)', async () => {
    const e = new DurableEngine(registeredFunctions(), { maxConcurrentActivities: 2 });
    const job = { ...parseJobRequest(request('bad-input')), maxParallelPartitions: 0 };
    await e.start('inferenceJob', 'bad-input', { job });
    const s = await e.waitFor('bad-input', 10_000);
    e.close();
    assert.equal(s.runtimeStatus, 'Failed');
    assert.match(String(s.output), /field 'job\.maxParallelPartitions'/);
  });
});

describe('outputs cannot feed back into inputs or collide with another job', () => {
  test('planning skips the job\'s own folder; a folder inside another job\'s is an OutputConflict', async () => {
    // The planner never lists a job's own outputs, even if they share a prefix with its input.
    const c = az.service.getContainerClient(uniqueContainer('mixed'));
    await c.create();
    await writeBlob(c, 'data/1.png', await new Canvas(8, 8).png());
    await writeBlob(c, 'data/job/overlays/1.png', await new Canvas(8, 8).png());
    const index = await writePlan(c, c, { jobId: 'job', jobPrefix: 'data/job/', partitionSize: 10, prefix: 'data/', extensions: ['.png'], model: { name: 'm', etag: 'e', jsonEtag: 'j' }, exclude: { container: c.containerName, prefix: 'data/job/' } });
    assert.equal(index.total, 1);
    // A job whose folder would lie inside job 'host-job''s folder.
    assert.equal((await runJob('host-job')).runtimeStatus, 'Completed');
    const r = await defaultActivities().planJob(parseJobRequest(request('nested', { output: { container: 'results', prefix: 'g/host-job/' } })));
    assert.ok(!r.ok && r.error.code === 'OutputConflict', JSON.stringify(r));
  });

  test('job folders never nest the other way: a folder that would contain another job\'s is refused (API 409, plan OutputConflict), and a restart never empties one', async () => {
    // 'inner' lives in g/outer/deep/inner/; a job 'outer' under g/ would contain it.
    assert.equal((await runJob('inner', { output: { container: 'results', prefix: 'g/outer/deep/' } })).runtimeStatus, 'Completed');
    const innerFiles = (await listAllBlobs(out, { prefix: 'g/outer/deep/inner/' })).map((b) => b.name).sort();
    assert.ok(innerFiles.includes('g/outer/deep/inner/results.jsonl'));
    const plan = await defaultActivities().planJob(parseJobRequest(request('outer')));
    assert.ok(!plan.ok && plan.error.code === 'OutputConflict' && /would contain the folder of another job \('g\/outer\/deep\/inner\/'\)/.test(plan.error.message), JSON.stringify(plan));
    const client = { start: () => Promise.reject(new Error('must not start')), status: () => Promise.resolve(undefined), terminate: () => Promise.resolve(), purge: () => Promise.resolve(), list: () => Promise.resolve([]) };
    const api = await submitJob(client as never, request('outer'), 'http://x', { storage: () => Promise.resolve(az.service) });
    assert.equal(api.status, 409, JSON.stringify(api.body));
    assert.match(JSON.stringify(api.body), /OutputConflict.*g\/outer\/deep\/inner\//);
    // A folder taken before folders were registered (no registration): a restart stops at the inner job's _job.json.
    await out.getBlobClient(folderRegistryName('g/outer/deep/inner/')).delete();
    await assert.rejects(emptyFolder(out, 'g/outer/'), code('OutputConflict', /holds the folder of another job \('g\/outer\/deep\/inner\/'\)/));
    assert.deepEqual((await listAllBlobs(out, { prefix: 'g/outer/deep/inner/' })).map((b) => b.name).sort(), innerFiles, 'the inner job keeps all its files');
  });

  test('reserved folder names are refused as output prefixes, naming the field', () => {
    for (const prefix of ['_lakeinfer/continuous/', 'a/_parts/', '_plan/', 'x/_delta_log/']) {
      assert.throws(() => parseJobRequest(request('r', { output: { container: 'results', prefix } })), (e: unknown) => e instanceof LakeInferError && e.code === 'InvalidRequest' && e.target === 'output.prefix' && /reserved folder name/.test(e.message), prefix);
    }
  });
});

describe('cancel and finalize never disagree', () => {
  async function racing(jobId: string, when: 'before' | 'after') {
    const client = { engine: undefined as DurableEngine | undefined };
    let cancel: Promise<{ status: number; body: unknown }> | undefined;
    let finalized: Promise<unknown> | undefined;
    const e = new DurableEngine(registeredFunctions(), {
      maxConcurrentActivities: 2,
      runActivity: async (name, _input, _attempt, run) => {
        if (name !== 'finalizeJob') return run();
        const jobClient = { start: () => Promise.resolve(), status: (id: string) => client.engine!.status(id), terminate: (id: string, why: string) => client.engine!.terminate(id, why), raiseEvent: (id: string, name: string, data: unknown) => client.engine!.raiseEvent(id, name, data), purge: (id: string) => client.engine!.purge(id), list: () => client.engine!.list({}) };
        const opts = { storage: () => Promise.resolve(az.service) };
        if (when === 'before') {
          // DELETE arrives while finalize is running, before it decides the outcome.
          cancel = cancelJob(jobClient, jobId, 'http://x', opts);
          await cancel;
          finalized = run();
          return finalized;
        }
        const r = await run();
        // DELETE arrives after finalize decided the outcome (and wrote the manifest).
        cancel = cancelJob(jobClient, jobId, 'http://x', opts);
        await cancel;
        return r;
      },
    });
    client.engine = e;
    await e.start('inferenceJob', jobId, { job: parseJobRequest(request(jobId)), options: FAST });
    const s = await e.waitFor(jobId, 60_000);
    // Finalize, its result dropped by the terminated instance, finishes writing (a fixed sleep raced on a slow CI machine).
    await finalized?.catch(() => undefined);
    e.close();
    return { s, cancelled: (await cancel!).status, manifest: (await readJson<Manifest>(out, `g/${jobId}/_manifest.json`))!, report: (await readBlob(out, `g/${jobId}/report.html`))!.data.toString() };
  }

  test('a cancel during finalize wins: the job is Terminated, its manifest and report say cancelled', async () => {
    const r = await racing('fin-1', 'before');
    assert.equal(r.cancelled, 202);
    assert.equal(r.s.runtimeStatus, 'Terminated');
    assert.equal(r.manifest.status, 'cancelled');
    assert.match(r.report, /cancelled/);
  });

  test('a cancel after the outcome is decided is refused: the job completes, its manifest says succeeded', async () => {
    const r = await racing('fin-2', 'after');
    assert.equal(r.cancelled, 409);
    assert.equal(r.s.runtimeStatus, 'Completed');
    assert.equal(r.manifest.status, 'succeeded');
  });
});

describe('composition never trusts a fragment blindly', () => {
  test('a fragment rewritten between its summary and finalize: never composed, its partition runs again, the job has each image once', async () => {
    const calls: string[] = [];
    let forged = '';
    const s = await runJob('forge-1', {}, async (name, input, _attempt, run) => {
      const n = (input as { n?: number }).n;
      calls.push(n === undefined ? name : `${name}:${n}`);
      if (name === 'finalizeJob' && !forged) {
        // Someone rewrites partition 1's results fragment after its summary recorded it.
        const sm = (await readJson<PartitionSummary>(out, partSummaryName('g/forge-1/', 1)))!;
        forged = sm.pieces[0]!.results.name!;
        const original = (await readBlob(out, forged))!.data.toString();
        await writeBlob(out, forged, original.replace(/"name":"a\/(\d)\.png"/, '"name":"a/X.png"'));
      }
      return run();
    });
    assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
    assert.deepEqual(calls.filter((c) => c === 'inferPartition:1').length, 2, `partition 1 ran again: ${calls.join(' ')}`);
    assert.equal(calls.filter((c) => c === 'finalizeJob').length, 2);
    const names = (await results('g/forge-1/')).map((r) => r.source.name).sort();
    assert.deepEqual(names, ['a/0.png', 'a/1.png', 'a/2.png', 'a/3.png', 'a/4.png', 'a/5.png'], 'each image once, no forged line');
    const m = (await readJson<Manifest>(out, 'g/forge-1/_manifest.json'))!;
    // The rerun finds its images' per-image results (skipExisting) and counts them skipped.
    assert.deepEqual([m.status, m.counts.images, m.counts.succeeded + m.counts.skipped, m.counts.failed, m.counts.partitionsFailed], ['succeeded', 6, 6, 0, 0]);
  });

  test('a fragment gone between its summary and finalize (deleted, or lost with a storage rollback): its partition runs again, the job has each image once', async () => {
    const calls: string[] = [];
    let gone = '';
    const s = await runJob('gone-1', {}, async (name, input, _attempt, run) => {
      const n = (input as { n?: number }).n;
      calls.push(n === undefined ? name : `${name}:${n}`);
      if (name === 'finalizeJob' && !gone) {
        const sm = (await readJson<PartitionSummary>(out, partSummaryName('g/gone-1/', 2)))!;
        gone = sm.pieces[0]!.results.name!;
        await out.getBlobClient(gone).delete();
      }
      return run();
    });
    assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
    assert.equal(calls.filter((c) => c === 'inferPartition:2').length, 2, `partition 2 ran again: ${calls.join(' ')}`);
    assert.deepEqual((await results('g/gone-1/')).map((r) => r.source.name).sort(), ['a/0.png', 'a/1.png', 'a/2.png', 'a/3.png', 'a/4.png', 'a/5.png']);
  });

  test('a duplicate attempt racing the first (at-least-once delivery) writes beside it: the job has each image once', async () => {
    const s = await runJob('dup-1', {}, async (name, input, _attempt, run) => {
      if (name !== 'inferPartition' || (input as { n: number }).n !== 0) return run();
      // The same message delivered twice at once: both attempts run to the end.
      const [first] = await Promise.all([run(), run()]);
      return first;
    });
    assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
    const names = (await results('g/dup-1/')).map((r) => r.source.name).sort();
    assert.deepEqual(names, ['a/0.png', 'a/1.png', 'a/2.png', 'a/3.png', 'a/4.png', 'a/5.png']);
    const fragments = (await listAllBlobs(out, { prefix: 'g/dup-1/_parts/0/' })).map((b) => b.name).filter((n) => n.endsWith('.results.jsonl'));
    assert.equal(fragments.length, 2, `each attempt its own fragment: ${fragments.join(', ')}`);
  });
});

describe('the local host answers bad requests with 4xx, never a 500 or a hang', () => {
  let host: LocalHost;
  before(async () => {
    await az.ready;
    host = await startLocalHost({ storageConnectionString: az.azurite.connectionString, activityProcesses: 1, settings: { MODELS_CONTAINER: 'models' }, log: () => undefined, activityOutput: () => undefined });
  });
  after(() => host?.stop());

  test('a 2 MiB body is a 413; malformed percent-encoding is a 400; control characters and overlapping outputs are 400s naming the field', async () => {
    let r = await fetch(`${host.url}/api/jobs`, { method: 'POST', body: 'x'.repeat(2 * 1024 * 1024) });
    assert.equal(r.status, 413);
    r = await fetch(`${host.url}/api/jobs/%E0%A4%A`);
    assert.equal(r.status, 400);
    for (const [over, target] of [
      [{ output: { container: 'results', prefix: 'runs/\u0001x/' } }, 'output.prefix'],
      [{ input: { container: 'images', prefix: 'a\u007f/' } }, 'input.prefix'],
      [{ output: { container: 'images', prefix: 'a/out/' } }, 'output.prefix'],
      [{ input: { container: 'images', prefix: '' }, output: { container: 'images', prefix: 'runs/' } }, 'output.prefix'],
    ] as const) {
      r = await fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify(request('bad', over)) });
      const body = (await r.json()) as { error: { target: string; message: string } };
      assert.equal(r.status, 400, JSON.stringify(over));
      assert.equal(body.error.target, target, body.error.message);
    }
    // The Durable endpoint checks what the API checks: no instance from a bad input.
    const job = { ...parseJobRequest(request('direct')), maxParallelPartitions: 0 };
    r = await fetch(`${host.url}/runtime/webhooks/durabletask/orchestrators/inferenceJob/direct`, { method: 'POST', body: JSON.stringify({ job }) });
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { error: { target: string } }).error.target, 'job.maxParallelPartitions');
    assert.equal((await fetch(`${host.url}/api/jobs/direct`)).status, 404);
    // A forged resume state is refused (it would carry counts and a plan of its own); an unknown orchestrator is a 404.
    const forged = { state: { job: parseJobRequest(request('forged')), options: FAST, next: 5, totals: { partitionsDone: 5, partitionsFailed: 0, images: 1000, succeeded: 1000, failed: 0, skipped: 0, detections: 0, activitySeconds: 0 }, failedPartitions: [], generation: 0, startedAt: new Date().toISOString() } };
    r = await fetch(`${host.url}/runtime/webhooks/durabletask/orchestrators/inferenceJob/forged`, { method: 'POST', body: JSON.stringify(forged) });
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { error: { target: string } }).error.target, 'state');
    assert.equal((await fetch(`${host.url}/api/jobs/forged`)).status, 404, 'no instance from a forged state');
    r = await fetch(`${host.url}/runtime/webhooks/durabletask/orchestrators/noSuchOrchestrator/x`, { method: 'POST', body: '{}' });
    assert.equal(r.status, 404);
  });

  test('five simultaneous POSTs of one new jobId: one starts it, the others are duplicates, no 500', async () => {
    const answers = await Promise.all(Array.from({ length: 5 }, () => fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify(request('race-1')) }).then(async (r) => ({ status: r.status, body: (await r.json()) as { duplicate?: boolean } }))));
    assert.deepEqual(answers.map((a) => a.status), [202, 202, 202, 202, 202]);
    assert.equal(answers.filter((a) => !a.body.duplicate).length, 1, 'exactly one started it');
    await host.engine.waitFor('race-1', 60_000);
  });

  test('results --out: names too long for the local file system are shortened, listed, and distinct', async () => {
    const c = az.service.getContainerClient(uniqueContainer('long'));
    await c.create();
    const long = `${'x'.repeat(300)}.json`;
    await writeBlob(c, `job/results/${long}`, '{}');
    await writeBlob(c, `job/results/${'x'.repeat(301)}.json`, '{"b":1}');
    await writeBlob(c, 'job/_manifest.json', '{}');
    const dir = await mkdtemp(join(tmpdir(), 'lakeinfer-long-'));
    const got = await downloadOutputs(c, 'job/', dir);
    assert.equal(got.files, 3);
    assert.equal(got.renamed.length, 2);
    const files = await readdir(join(dir, 'results'));
    assert.equal(files.length, 2, 'both kept');
    assert.ok(files.every((f) => Buffer.byteLength(f) <= 255 && f.endsWith('.json')), files.join(', '));
  });

  test('results --out never writes outside --out: no symbolic link inside it is followed; a name that is both a file and a folder is reported; the rest is downloaded', async () => {
    const c = az.service.getContainerClient(uniqueContainer('links'));
    await c.create();
    for (const name of ['job/_manifest.json', 'job/results/a.json', 'job/overlays/x.png', 'job/report.html', 'job/clash', 'job/clash/inner.json']) await writeBlob(c, name, `{"name":"${name}"}`);
    const dir = await mkdtemp(join(tmpdir(), 'lakeinfer-links-'));
    const outside = await mkdtemp(join(tmpdir(), 'lakeinfer-outside-'));
    // A link where a folder goes and a link where a file goes, both pointing outside.
    await symlink(outside, join(dir, 'overlays'));
    await writeFile(join(outside, 'report.html'), 'mine');
    await symlink(join(outside, 'report.html'), join(dir, 'report.html'));
    const got = await downloadOutputs(c, 'job/', dir);
    assert.deepEqual(await readdir(outside), ['report.html'], 'nothing written outside --out');
    assert.equal(await readFile(join(outside, 'report.html'), 'utf8'), 'mine', 'the file a link points at is untouched');
    const reasons = Object.fromEntries(got.failed.map((f) => [f.blob, f.reason]));
    assert.match(reasons['job/overlays/x.png']!, /'overlays' is a symbolic link/);
    assert.match(reasons['job/report.html']!, /'report\.html' is a symbolic link/);
    assert.match(reasons['job/clash/inner.json']!, /'clash' is a file, and this name needs it to be a folder/);
    assert.equal(got.failed.length, 3, JSON.stringify(got.failed));
    assert.equal(got.files, 3, 'the others are downloaded');
    assert.equal(await readFile(join(dir, 'results', 'a.json'), 'utf8'), '{"name":"job/results/a.json"}');
  });

  test('a failure reason is never empty and never carries a stack or a server path: a container holding a name storage cannot list', async () => {
    const odd = az.service.getContainerClient(uniqueContainer('odd'));
    await odd.create();
    const png = await new Canvas(8, 8, [1, 2, 3]).png();
    await writeBlob(odd, 'p/ok.png', png);
    // Written past our own name checks, as any other tool could: Azurite then answers 500 to every listing.
    await odd.getBlockBlobClient('p/\uFFFEz.png').uploadData(png);
    const s = await runJob('odd-names', { input: { container: odd.containerName, prefix: 'p/' } });
    assert.equal(s.runtimeStatus, 'Failed');
    const reason = String(s.output);
    assert.match(reason, /^listing blobs failed for '[^']+': storage answered HTTP 500 with no message; a blob name it cannot list \(a control character or noncharacter\) does this$/);
    assert.ok(!/\n|\bat \w|\/dist\/|node_modules/.test(reason), `no stack, no server paths: ${reason}`);
  });

  test('connection strings are printed with the key masked', () => {
    assert.equal(maskConnectionString('DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net'), 'DefaultEndpointsProtocol=https;AccountName=a;AccountKey=***;EndpointSuffix=core.windows.net');
    assert.equal(maskConnectionString('BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=sv=2024&sig=abc'), 'BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=***');
  });
});
