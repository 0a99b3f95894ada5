/**
 * Whole jobs through the real registered handlers (orchestrator replayed by the durable-functions
 * SDK, real activities) on a real Azurite, with a real ONNX model.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ContainerClient } from '@azure/storage-blob';
import { resetSettingsCache } from '../../lib/util/config';
import { ActivityLostError } from '../../lib/local/functions/activityErrors';
import { DurableEngine, type ActivityRunner } from '../../lib/local/durable/engine';
import type { RegisteredFunction } from '../../lib/local/functions/functionsHost';
import { cancelJob, jobStatus, purgeJob, submitJob, type JobView } from '../../lib/api/jobs';
import { parseJobRequest } from '../../lib/job/request';
import { closeDefaultActivities } from '../../lib/orchestration/activities';
import type { Manifest } from '../../lib/fanin/finalize';
import type { JobProgress } from '../../lib/job/totals';
import type { ImageResult } from '../../lib/partition/pipeline';
import { listAllBlobs, readBlob, readJson, writeBlob, writeJson } from '../../lib/storage';
import { Canvas } from '../helpers/images';
import { classifierFixture, classifierSpec } from '../helpers/models';
import { useAzurite } from '../helpers/azurite';
import { registeredFunctions } from '../helpers/host';

const az = useAzurite();
let functions: Map<string, RegisteredFunction>;
let input: ContainerClient;
const COLOURS: [number, number, number][] = [[255, 0, 0], [0, 255, 0], [0, 0, 255]];
const GOOD = 20;
const BAD = ['img/zz-corrupt-1.png', 'img/zz-corrupt-2.png'];
const FAST = { parallel: 3, perGeneration: 4, retry: { firstRetryMs: 10, maxAttempts: 3, backoffCoefficient: 2, maxRetryMs: 50 } };

before(async () => {
  await az.ready;
  process.env['DATA_STORAGE'] = az.azurite.connectionString;
  process.env['MODELS_CONTAINER'] = 'models';
  process.env['INFER_WORKERS'] = '1';
  process.env['ORT_INTRA_OP_THREADS'] = '1';
  resetSettingsCache();
  functions = registeredFunctions();
  const models = az.service.getContainerClient('models');
  await models.create();
  await writeBlob(models, 'colours/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'colours/model.json', classifierSpec());
  input = az.service.getContainerClient('images');
  await input.create();
  for (let i = 0; i < GOOD; i++) await writeBlob(input, `img/${String(i).padStart(3, '0')}.png`, await new Canvas(16, 12, COLOURS[i % 3]!).png());
  for (const b of BAD) await writeBlob(input, b, 'not an image');
});

function request(jobId: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    jobId,
    input: { container: 'images', prefix: 'img/', extensions: ['.png'] },
    output: { container: 'results', prefix: 'runs/' },
    model: { name: 'colours' },
    partitionSize: 3,
    toleratedFailurePercent: 20,
    params: { topK: 1 },
    ...over,
  };
}

function engine(runActivity?: ActivityRunner): DurableEngine {
  return new DurableEngine(functions, { maxConcurrentActivities: 3, ...(runActivity ? { runActivity } : {}) });
}

/** Starts a job with small fan-out options through the real orchestrator (as POST /api/jobs would). */
async function run(e: DurableEngine, jobId: string, over: Record<string, unknown> = {}) {
  await e.start('inferenceJob', jobId, { job: parseJobRequest(request(jobId, over)), options: FAST });
  return e.waitFor(jobId, 120_000);
}

async function jsonl<T>(c: ContainerClient, name: string): Promise<T[]> {
  const b = await readBlob(c, name);
  return b ? b.data.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as T) : [];
}

after(() => closeDefaultActivities());

describe('a whole job', () => {
  test('plans, fans out over 8 partitions in 2 generations, fans in: exactly the expected files', async () => {
    const e = engine();
    const s = await run(e, 'job-ok');
    e.close();
    assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
    const out = az.service.getContainerClient('results');
    const p = 'runs/job-ok/';
    const results = await jsonl<ImageResult>(out, `${p}results.jsonl`);
    assert.equal(results.length, GOOD);
    assert.equal(new Set(results.map((r) => r.source.name)).size, GOOD, 'each image exactly once');
    for (const r of results) {
      const i = Number(r.source.name.slice(4, 7));
      assert.equal(r.classes![0]!.label, ["red", "green", "blue"][i % 3], r.source.name);
    }
    const failures = await jsonl<{ blob: string; code: string; stage: string }>(out, `${p}_failures.jsonl`);
    assert.deepEqual(failures.map((f) => [f.blob, f.code, f.stage]).sort(), BAD.map((b) => [b, 'ImageDecodeFailed', 'decode']));
    const coco = JSON.parse((await readBlob(out, `${p}coco_results.json`))!.data.toString()) as unknown[];
    assert.ok(Array.isArray(coco));
    const manifest = (await readJson<Manifest>(out, `${p}_manifest.json`))!;
    assert.equal(manifest.status, 'succeeded');
    assert.deepEqual(manifest.counts, { images: 22, succeeded: 20, failed: 2, skipped: 0, detections: 0, partitions: 8, partitionsFailed: 0 });
    assert.equal(manifest.model.name, 'colours');
    assert.ok(manifest.instanceSeconds > 0);
    assert.equal(manifest.latencyHistogram.counts.reduce((a, b) => a + b, 0), 22);
    const progress = s.customStatus as JobProgress;
    assert.deepEqual({ phase: progress.phase, partitions: progress.partitions, generation: progress.generation }, { phase: 'done', partitions: { total: 8, done: 8, failed: 0 }, generation: 1 });
    assert.deepEqual(s.output, { jobId: 'job-ok', status: 'succeeded', counts: manifest.counts, files: manifest.files });
    // Exactly the expected files: plan, parts, results, failures, manifest, per-image results.
    const names = (await listAllBlobs(out, { prefix: p })).map((b) => b.name.slice(p.length));
    const top = names.filter((n) => !n.startsWith('_plan/') && !n.startsWith('_parts/') && !n.startsWith('results/') && !n.startsWith('overlays/')).sort();
    // Overlays for the report's samples (the default): a small job's every good image.
    assert.deepEqual(names.filter((n) => n.startsWith('overlays/')).sort(), results.map((r) => `overlays/${r.source.name}.png`).sort());
    assert.deepEqual(top, ['_failures.jsonl', '_job.json', '_manifest.json', '_outcome.json', 'coco_results.json', 'report.html', 'results.jsonl', ...Array.from({ length: 8 }, (_, n) => `results.parquet/part-0000${n}-000000.parquet`), 'results.parquet/_delta_log/00000000000000000000.json'].sort());
    // The Parquet dataset: one part per partition, a row per image here (the classifier's top class and its runners-up), failures included.
    assert.deepEqual(manifest.datasets?.results.parts, Array.from({ length: 8 }, (_, n) => `part-0000${n}-000000.parquet`));
    assert.ok(manifest.files.includes(`${p}results.parquet/`));
    assert.equal(names.filter((n) => n.startsWith('results/')).length, GOOD);
    assert.equal(names.filter((n) => n.startsWith('_plan/')).length, 9);
    assert.equal(names.filter((n) => n.startsWith('_parts/')).length, 8 * 5, 'per partition: its summary, and the results, COCO and failures fragments and attempts record of its one piece');
  });

  test('output.formats: only the formats asked for; a Parquet part no partition names (an earlier split) is removed from the dataset', async () => {
    const e = engine();
    const out = az.service.getContainerClient('results');
    const s1 = await run(e, 'job-jsonl-only', { output: { container: 'results', prefix: 'runs/', formats: ['jsonl'] } });
    assert.equal(s1.runtimeStatus, 'Completed');
    const m1 = (await readJson<Manifest>(out, 'runs/job-jsonl-only/_manifest.json'))!;
    assert.equal(m1.datasets, undefined);
    const top1 = (await listAllBlobs(out, { prefix: 'runs/job-jsonl-only/' })).map((b) => b.name.slice('runs/job-jsonl-only/'.length)).filter((n) => !/^(_plan|_parts|results|overlays)\//.test(n));
    assert.deepEqual(top1.sort(), ['_failures.jsonl', '_job.json', '_manifest.json', '_outcome.json', 'report.html', 'results.jsonl']);
    // A stale part (as an earlier run split differently would leave) is not part of the dataset.
    await writeBlob(out, 'runs/job-parquet-only/results.parquet/part-00099-000007.parquet', Buffer.from('stale'));
    const s2 = await run(e, 'job-parquet-only', { output: { container: 'results', prefix: 'runs/', formats: ['parquet'] } });
    e.close();
    assert.equal(s2.runtimeStatus, 'Completed');
    const m2 = (await readJson<Manifest>(out, 'runs/job-parquet-only/_manifest.json'))!;
    assert.equal(m2.datasets!.results.removed, 1);
    const parts = (await listAllBlobs(out, { prefix: 'runs/job-parquet-only/results.parquet/' })).map((b) => b.name.split('/').pop()!);
    assert.deepEqual(parts.sort(), [...m2.datasets!.results.parts].sort());
    assert.ok(!(await out.getBlobClient('runs/job-parquet-only/results.jsonl').exists()));
    assert.ok(!(await out.getBlobClient('runs/job-parquet-only/coco_results.json').exists()));
    assert.equal(m2.datasets!.results.rows, GOOD + BAD.length, 'a row per image: the top class of the classifier (topK 1), one per failure');
  });

  test('partitions failing then succeeding on retry: every result present exactly once', async () => {
    const attempts = new Map<number, number>();
    const e = engine(async (name, inp, attempt, go) => {
      if (name === 'inferPartition') {
        const n = (inp as { n: number }).n;
        attempts.set(n, Math.max(attempts.get(n) ?? 0, attempt));
        if ((n === 1 || n === 5) && attempt < 3) throw new Error(`injected crash in partition ${n}, attempt ${attempt}`);
      }
      return go();
    });
    const s = await run(e, 'job-retry');
    e.close();
    assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
    assert.equal(attempts.get(1), 3);
    assert.equal(attempts.get(5), 3);
    assert.equal(attempts.get(0), 1);
    const out = az.service.getContainerClient('results');
    const results = await jsonl<ImageResult>(out, 'runs/job-retry/results.jsonl');
    assert.equal(results.length, GOOD);
    assert.equal(new Set(results.map((r) => r.source.name)).size, GOOD);
    assert.equal((await readJson<Manifest>(out, 'runs/job-retry/_manifest.json'))!.counts.partitionsFailed, 0);
  });

  test('at-least-once delivery: every activity runs twice, concurrently with what follows; every result, count and file exactly once', async () => {
    const runs = new Map<string, number>();
    const e = new DurableEngine(functions, {
      maxConcurrentActivities: 3,
      duplicateRate: 1,
      runActivity: async (name, inp, _a, go) => {
        const key = name === 'inferPartition' ? `${name}:${(inp as { n: number }).n}` : name;
        runs.set(key, (runs.get(key) ?? 0) + 1);
        return go();
      },
    });
    const s = await run(e, 'job-twice');
    await e.drain(); // the second finalize may still be writing
    e.close();
    assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
    assert.deepEqual([...runs.values()].every((v) => v === 2), true, JSON.stringify([...runs]));
    assert.equal(runs.size, 10, 'plan, 8 partitions, finalize');
    // Each second completion is dropped: as a duplicate, or as stale when its execution has ended
    // (continueAsNew, or the job completed while the second finalize ran).
    assert.equal(e.stats.duplicateCompletions + e.stats.staleMessages, 10, JSON.stringify(e.stats));
    const out = az.service.getContainerClient('results');
    const p = 'runs/job-twice/';
    const results = await jsonl<ImageResult>(out, `${p}results.jsonl`);
    assert.equal(results.length, GOOD);
    assert.equal(new Set(results.map((r) => r.source.name)).size, GOOD);
    const failures = await jsonl<{ blob: string }>(out, `${p}_failures.jsonl`);
    assert.deepEqual(failures.map((f) => f.blob).sort(), BAD);
    const manifest = (await readJson<Manifest>(out, `${p}_manifest.json`))!;
    assert.equal(manifest.status, 'succeeded');
    assert.deepEqual(manifest.counts, { images: 22, succeeded: 20, failed: 2, skipped: 0, detections: 0, partitions: 8, partitionsFailed: 0 });
    assert.deepEqual(s.output, { jobId: 'job-twice', status: 'succeeded', counts: manifest.counts, files: manifest.files });
    const names = (await listAllBlobs(out, { prefix: p })).map((b) => b.name.slice(p.length));
    assert.equal(names.filter((n) => n.startsWith('results/')).length, GOOD);
    assert.equal((await jsonl<unknown>(out, `${p}results.jsonl`)).length, GOOD, 'read again after every duplicate finished');
  });

  test('an activity whose process keeps dying after its work: delivered again, each delivery counted in storage; past maxAttempts it fails for good (AttemptsExhausted) instead of running for ever', async () => {
    let deliveries = 0;
    const e = new DurableEngine(functions, {
      maxConcurrentActivities: 3,
      visibilityTimeoutMs: 20,
      runActivity: async (name, inp, _a, go) => {
        if (name !== 'inferPartition' || (inp as { n: number }).n !== 2) return go();
        deliveries++;
        const r = (await go()) as { ok: boolean };
        // The process dies before the partition is complete (here: its summary, written last, is
        // taken away again, as if never written), every time.
        if (r.ok) {
          await az.service.getContainerClient('results').getBlobClient('runs/job-poison/_parts/2.json').delete();
          throw new ActivityLostError('worker process killed before the partition completed');
        }
        return r;
      },
    });
    const s = await run(e, 'job-poison', { skipExisting: false, toleratedFailurePercent: 50 });
    e.close();
    assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
    assert.equal(deliveries, FAST.retry.maxAttempts + 1, 'three deliveries ran; the fourth found its attempts spent');
    assert.equal(e.stats.redeliveries, FAST.retry.maxAttempts);
    const out = az.service.getContainerClient('results');
    const m = (await readJson<Manifest>(out, 'runs/job-poison/_manifest.json'))!;
    assert.equal(m.counts.partitionsFailed, 1);
    const failures = await jsonl<{ blob: string; code: string; message: string }>(out, 'runs/job-poison/_failures.jsonl');
    const part = failures.find((f) => f.blob === '(partition 2)')!;
    assert.equal(part.code, 'AttemptsExhausted');
    assert.match(part.message, /partition 2 was attempted 4 times, more than its 3 attempts/);
  });

  test('a partition that exhausts its retries is recorded; the others finish; the threshold decides', async () => {
    const always = (bad: number): ActivityRunner => async (name, inp, _attempt, go) => {
      if (name === 'inferPartition' && (inp as { n: number }).n === bad) throw new Error(`storage unreachable for partition ${bad}`);
      return go();
    };
    // 3 images of 22 lost with the partition (+2 corrupt) = 22.7% > 20%: the job fails, with all other outputs written.
    const e = engine(always(2));
    const s = await run(e, 'job-exhaust');
    e.close();
    assert.equal(s.runtimeStatus, 'Failed');
    assert.match(String(s.output), /JobFailed: 5 of 22 images failed/);
    const out = az.service.getContainerClient('results');
    const m = (await readJson<Manifest>(out, 'runs/job-exhaust/_manifest.json'))!;
    assert.equal(m.status, 'failed');
    assert.equal(m.counts.partitionsFailed, 1);
    assert.equal(m.counts.succeeded, GOOD - 3);
    const failures = await jsonl<{ blob: string; code: string; message: string }>(out, 'runs/job-exhaust/_failures.jsonl');
    const part = failures.find((f) => f.blob === '(partition 2)');
    assert.ok(part, 'the partition is in the failures');
    assert.match(part.message, /storage unreachable for partition 2/);
    assert.equal((await jsonl<ImageResult>(out, 'runs/job-exhaust/results.jsonl')).length, GOOD - 3);

    // Tolerating more, the same failure completes the job.
    const e2 = engine(always(2));
    const s2 = await run(e2, 'job-tolerate', { toleratedFailurePercent: 50 });
    e2.close();
    assert.equal(s2.runtimeStatus, 'Completed');
    assert.equal((await readJson<Manifest>(out, 'runs/job-tolerate/_manifest.json'))!.status, 'succeeded');
  });

  test('a failed job resubmitted: complete partitions are skipped without touching their images; only the failed one runs', async () => {
    const base = 'http://127.0.0.1:7071';
    let broken = true;
    const runs: number[] = [];
    const e = engine(async (name, inp, _a, go) => {
      if (name === 'inferPartition') {
        const n = (inp as { n: number }).n;
        runs.push(n);
        if (n === 2 && broken) throw new Error('storage unreachable for partition 2');
      }
      return go();
    });
    await submitJob(e, request('job-resume', { toleratedFailurePercent: 10 }), base);
    assert.equal((await e.waitFor('job-resume', 60_000)).runtimeStatus, 'Failed');
    // An image of a complete partition disappears: a partition that looked at its images would fail it.
    const plan0 = (await readJson<{ blobs: { name: string }[] }>(az.service.getContainerClient('results'), 'runs/job-resume/_plan/0.json'))!;
    const gone = plan0.blobs[0]!.name;
    const kept = (await readBlob(input, gone))!.data;
    await input.getBlobClient(gone).delete();
    try {
      broken = false;
      runs.length = 0;
      const again = await submitJob(e, request('job-resume', { toleratedFailurePercent: 10 }), base);
      assert.equal((again.body as { resumed: boolean }).resumed, true);
      const s = await e.waitFor('job-resume', 60_000);
      assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
      const m = (await readJson<Manifest>(az.service.getContainerClient('results'), 'runs/job-resume/_manifest.json'))!;
      assert.equal(m.counts.succeeded, 3, 'partition 2 (three images) computed');
      assert.equal(m.counts.skipped + m.counts.failed, 19, 'the other partitions taken as they were (with their two corrupt images)');
      assert.equal(m.counts.failed, 2, `${gone} was not looked at again`);
      assert.deepEqual([...new Set(runs)].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7], 'every partition asked once, the complete ones answer from their summary');
      assert.equal((await jsonl<ImageResult>(az.service.getContainerClient('results'), 'runs/job-resume/results.jsonl')).length, GOOD);
    } finally {
      await writeBlob(input, gone, kept);
      e.close();
    }
  });
});

test('a job that cannot be planned fails at once with the reason, without retries', async () => {
  let plans = 0;
  const e = engine(async (name, _i, _a, go) => {
    if (name === 'planJob') plans++;
    return go();
  });
  const s = await run(e, 'job-no-input', { input: { container: 'nope', prefix: 'img/' } });
  assert.equal(s.runtimeStatus, 'Failed');
  assert.match(String(s.output), /ContainerNotFound: input container 'nope' does not exist/);
  const s2 = await run(e, 'job-no-model', { model: { name: 'missing-model' } });
  e.close();
  assert.equal(s2.runtimeStatus, 'Failed');
  assert.match(String(s2.output), /ModelNotFound: model 'missing-model' not found/);
  assert.equal(plans, 2, 'one attempt each: not retryable');
});

describe('the job API over the engine', () => {
  test('a job naming a container this deployment was not given is refused with 400 on that field, before anything starts', async () => {
    const e = engine();
    const base = 'http://127.0.0.1:7071';
    const containers = { input: ['images'], output: ['results'] };
    const r = request('job-containers');
    const wrongIn = await submitJob(e, { ...r, input: { ...(r as { input: object }).input, container: 'elsewhere' } }, base, { containers });
    assert.equal(wrongIn.status, 400);
    assert.equal((wrongIn.body as { error: { target: string; message: string } }).error.target, 'input.container');
    assert.match((wrongIn.body as { error: { message: string } }).error.message, /'elsewhere'.*INPUT_CONTAINERS: images/);
    const wrongOut = await submitJob(e, { ...r, output: { container: 'images', prefix: 'runs/' } }, base, { containers });
    assert.equal(wrongOut.status, 400);
    assert.equal((wrongOut.body as { error: { target: string } }).error.target, 'output.container');
    assert.equal(await e.status('job-containers'), undefined, 'nothing was started');
    const ok = await submitJob(e, r, base, { containers });
    assert.equal(ok.status, 202);
    // Empty lists (the local default) allow any container.
    assert.equal((await submitJob(e, { ...request('job-any'), output: { container: 'anything-goes', prefix: '' } }, base, { containers: { input: [], output: [] } })).status, 202);
    await e.waitFor('job-containers', 120_000);
    await e.waitFor('job-any', 120_000);
    e.close();
  });

  test('submit validates, is idempotent per jobId, resumes after a failure; status and cancel', async () => {
    const e = engine();
    const base = 'http://127.0.0.1:7071';
    const bad = await submitJob(e, { ...request('x'), partitionSize: 0 }, base);
    assert.equal(bad.status, 400);
    assert.equal((bad.body as { error: { target: string } }).error.target, 'partitionSize');
    const missing = await submitJob(e, { input: { container: 'images' }, model: { name: 'colours' } }, base);
    assert.equal((missing.body as { error: { target: string } }).error.target, 'output');

    const first = await submitJob(e, request('job-api'), base);
    assert.equal(first.status, 202);
    const again = await submitJob(e, request('job-api'), base);
    assert.ok(again.status === 202 || again.status === 200);
    assert.equal((again.body as { duplicate: boolean }).duplicate, true);
    const done = await e.waitFor('job-api', 120_000);
    assert.equal(done.runtimeStatus, 'Completed');
    const st = await jobStatus(e, 'job-api', base);
    assert.equal(st.status, 200);
    assert.equal((st.body as { outputs: { manifest: string } }).outputs.manifest, 'runs/job-api/_manifest.json');
    const afterDone = await submitJob(e, request('job-api'), base);
    assert.equal(afterDone.status, 200, 'a finished job is not run again');
    assert.equal((await jobStatus(e, 'nope', base)).status, 404);
    assert.equal((await cancelJob(e, 'job-api', base)).status, 409);
    e.close();
  });

  test('cancel mid-job: 202 with the job cancelling, then cancelled; running partitions stop at their next image; outputs written so far intact; purge forgets the finished job, never a running one', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const e = engine(async (name, inp, _a, go) => {
      if (name === 'inferPartition' && (inp as { n: number }).n >= 3) await gate;
      return go();
    });
    const base = 'http://127.0.0.1:7071';
    const opts = { storage: async () => az.service };
    await submitJob(e, request('job-cancel'), base, opts);
    const out = az.service.getContainerClient('results');
    for (let i = 0; i < 200 && !(await readBlob(out, 'runs/job-cancel/_parts/2.json')); i++) await new Promise((r) => setTimeout(r, 50));
    const before = (await listAllBlobs(out, { prefix: 'runs/job-cancel/results/' })).length;
    assert.equal(before, 9, 'the first three partitions finished');
    assert.equal((await purgeJob(e, 'job-cancel')).status, 409, 'a running job keeps its history');
    const c = await cancelJob(e, 'job-cancel', base, opts);
    assert.equal(c.status, 202);
    // Terminate is a message, as on Azure: the job reads 'cancelling' until the engine processes it.
    assert.deepEqual([(c.body as JobView).runtimeStatus, (c.body as JobView).status], ['Running', 'cancelling']);
    assert.equal((await e.waitFor('job-cancel', 10_000)).runtimeStatus, 'Terminated');
    assert.equal(((await jobStatus(e, 'job-cancel', base, opts)).body as JobView).status, 'cancelled');
    release();
    await e.drain();
    assert.equal((await e.status('job-cancel'))!.runtimeStatus, 'Terminated');
    assert.ok((await listAllBlobs(out, { prefix: 'runs/job-cancel/results/' })).length >= before, 'nothing written was lost');
    const purged = await purgeJob(e, 'job-cancel');
    assert.deepEqual([purged.status, (purged.body as { purged: boolean }).purged], [200, true]);
    assert.equal((await jobStatus(e, 'job-cancel', base)).status, 404, 'its history is gone');
    assert.ok(await readBlob(out, 'runs/job-cancel/_job.json'), 'its folder stays');
    assert.equal((await purgeJob(e, 'job-cancel')).status, 404);
    e.close();
  });
});
