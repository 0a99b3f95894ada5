/**
 * A listing planned in steps (PLAN_CHUNK_ITEMS) through the real orchestrator and activities: the
 * first partitions run while the rest is listed, each image is inferred once, and a step delivered
 * twice (at-least-once) leaves one plan.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ContainerClient } from '@azure/storage-blob';
import { resetSettingsCache } from '../../lib/util/config';
import { DurableEngine } from '../../lib/local/durable/engine';
import type { RegisteredFunction } from '../../lib/local/functions/functionsHost';
import { parseJobRequest } from '../../lib/job/request';
import { closeDefaultActivities } from '../../lib/orchestration/activities';
import type { Manifest } from '../../lib/fanin/finalize';
import type { ImageResult } from '../../lib/partition/pipeline';
import { planProgressName } from '../../lib/storage/planStream';
import { planIndexName, readBlob, readJson, writeBlob, writeJson, type PlanIndex } from '../../lib/storage';
import { Canvas } from '../helpers/images';
import { classifierFixture, classifierSpec } from '../helpers/models';
import { useAzurite } from '../helpers/azurite';
import { registeredFunctions } from '../helpers/host';

const az = useAzurite();
let functions: Map<string, RegisteredFunction>;
let out: ContainerClient;
const GOOD = 40;
const BAD = ['img/017-corrupt.png', 'img/031-corrupt.png'];
const OPTIONS = { parallel: 2, perGeneration: 4, retry: { firstRetryMs: 10, maxAttempts: 3, backoffCoefficient: 2, maxRetryMs: 50 } };

before(async () => {
  await az.ready;
  process.env['DATA_STORAGE'] = az.azurite.connectionString;
  process.env['MODELS_CONTAINER'] = 'models';
  process.env['INFER_WORKERS'] = '1';
  process.env['ORT_INTRA_OP_THREADS'] = '1';
  process.env['PLAN_CHUNK_ITEMS'] = '5';
  resetSettingsCache();
  await closeDefaultActivities();
  functions = registeredFunctions();
  const models = az.service.getContainerClient('models');
  await models.create();
  await writeBlob(models, 'colours/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'colours/model.json', classifierSpec());
  const input = az.service.getContainerClient('images');
  await input.create();
  out = az.service.getContainerClient('results');
  for (let i = 0; i < GOOD; i++) {
    await writeBlob(input, `img/${String(i).padStart(3, '0')}.png`, await new Canvas(16, 12, i % 2 ? [255, 0, 0] : [0, 0, 255]).png());
    // Blobs the job does not match, between the images: a step's chunk counts them too.
    if (i % 7 === 0) await writeBlob(input, `img/${String(i).padStart(3, '0')}-notes.txt`, 'not for the model');
  }
  for (const b of BAD) await writeBlob(input, b, 'not an image');
});

after(async () => {
  delete process.env['PLAN_CHUNK_ITEMS'];
  resetSettingsCache();
  await closeDefaultActivities();
});

async function jsonl<T>(name: string): Promise<T[]> {
  const b = await readBlob(out, name);
  return b ? b.data.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as T) : [];
}

for (const duplicates of [false, true]) {
  test(`a listing planned in steps of 5 blobs${duplicates ? ', every activity delivered twice' : ''}: partitions start before the listing ends; each image once`, async () => {
    const jobId = duplicates ? 'steps-twice' : 'steps';
    const events: string[] = [];
    const e = new DurableEngine(functions, {
      maxConcurrentActivities: 3,
      ...(duplicates ? { duplicateRate: 1 } : {}),
      runActivity: async (name, _i, _a, go) => {
        events.push(`start ${name}`);
        try {
          return await go();
        } finally {
          events.push(`end ${name}`);
        }
      },
    });
    try {
      const request = { jobId, input: { container: 'images', prefix: 'img/', extensions: ['.png'] }, output: { container: 'results', prefix: 'runs/' }, model: { name: 'colours' }, partitionSize: 3, maxParallelPartitions: 2, toleratedFailurePercent: 20, params: { topK: 1 } };
      await e.start('inferenceJob', jobId, { job: parseJobRequest(request), options: OPTIONS });
      const s = await e.waitFor(jobId, 180_000);
      await e.drain();
      assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
      const planMore = events.filter((x) => x === 'start planMore').length;
      // 42 images and 6 other blobs: the first step lists 5, every later one at most 5 more (a
      // delivery that comes again after the progress moved lists the next chunk).
      assert.ok(planMore >= Math.ceil((48 - 5) / 5), `planMore ran ${planMore} times`);
      const firstInfer = events.indexOf('start inferPartition');
      const lastPlan = events.lastIndexOf('end planMore');
      assert.ok(firstInfer >= 0 && firstInfer < lastPlan, 'the first partition started before the listing ended');
      const p = `runs/${jobId}/`;
      const index = (await readJson<PlanIndex>(out, planIndexName(p)))!;
      assert.deepEqual([index.total, index.partitions, index.partitionSize], [42, 14, 3]);
      assert.equal(await readJson(out, planProgressName(p)), undefined);
      const manifest = (await readJson<Manifest>(out, `${p}_manifest.json`))!;
      assert.deepEqual(manifest.counts, { images: 42, succeeded: 40, failed: 2, skipped: 0, detections: 0, partitions: 14, partitionsFailed: 0 });
      const results = await jsonl<ImageResult>(`${p}results.jsonl`);
      assert.equal(results.length, GOOD);
      assert.equal(new Set(results.map((r) => r.source.name)).size, GOOD, 'each image exactly once');
      assert.deepEqual((await jsonl<{ blob: string }>(`${p}_failures.jsonl`)).map((f) => f.blob).sort(), BAD);
    } finally {
      e.close();
    }
  });
}
