/**
 * Lake-native inputs and failure rules through whole jobs (real orchestrator under the strict
 * engine, real activities, real Azurite, a real ONNX model): a manifest job and a listing
 * filtered by last-modified time each infer exactly the images they name, once; a failure count
 * ends a job the percentage alone would pass; the default tolerates a few broken files; bad
 * requests are 400s naming the field.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ContainerClient } from '@azure/storage-blob';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { resetSettingsCache } from '../../lib/util/config';
import { DurableEngine } from '../../lib/local/durable/engine';
import type { RegisteredFunction } from '../../lib/local/functions/functionsHost';
import { DEFAULT_TOLERATED_FAILURE_PERCENT, parseJobRequest } from '../../lib/job/request';
import { closeDefaultActivities } from '../../lib/orchestration/activities';
import type { Manifest } from '../../lib/fanin/finalize';
import type { ImageResult } from '../../lib/partition/pipeline';
import { readBlob, readJson, writeBlob, writeJson } from '../../lib/storage';
import { LakeInferError } from '../../lib/util/errors';
import { Canvas } from '../helpers/images';
import { classifierFixture, classifierSpec } from '../helpers/models';
import { useAzurite } from '../helpers/azurite';
import { registeredFunctions } from '../helpers/host';

const az = useAzurite();
let functions: Map<string, RegisteredFunction>;
let input: ContainerClient;
let out: ContainerClient;
const FAST = { parallel: 3, perGeneration: 4, retry: { firstRetryMs: 10, maxAttempts: 2, backoffCoefficient: 2, maxRetryMs: 50 } };
let between = '';

before(async () => {
  await az.ready;
  process.env['DATA_STORAGE'] = az.azurite.connectionString;
  process.env['MODELS_CONTAINER'] = 'models';
  process.env['INFER_WORKERS'] = '1';
  resetSettingsCache();
  functions = registeredFunctions();
  const models = az.service.getContainerClient('models');
  await models.createIfNotExists();
  await writeBlob(models, 'colours/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'colours/model.json', classifierSpec());
  input = az.service.getContainerClient('lake');
  await input.create();
  out = az.service.getContainerClient('lake-out');
  for (let i = 0; i < 6; i++) await writeBlob(input, `old/${i}.png`, await new Canvas(8, 8, [200, i * 30, 0]).png());
  await new Promise((r) => setTimeout(r, 1100)); // last-modified has a resolution of one second
  between = new Date().toISOString();
  await new Promise((r) => setTimeout(r, 1100));
  for (let i = 0; i < 4; i++) await writeBlob(input, `old/new-${i}.png`, await new Canvas(8, 8, [0, i * 30, 200]).png());
  for (let i = 0; i < 3; i++) await writeBlob(input, `broken/${i}.png`, 'not an image');
  for (let i = 0; i < 97; i++) await writeBlob(input, `mixed/${String(i).padStart(2, '0')}.png`, await new Canvas(4, 4, [i, 0, 0]).png());
  for (let i = 0; i < 3; i++) await writeBlob(input, `mixed/zz-broken-${i}.png`, 'not an image');
});
after(() => closeDefaultActivities());

async function run(jobId: string, body: Record<string, unknown>) {
  const e = new DurableEngine(functions, { maxConcurrentActivities: 3 });
  try {
    const req = { jobId, output: { container: 'lake-out' }, model: { name: 'colours' }, partitionSize: 4, params: { topK: 1 }, ...body };
    await e.start('inferenceJob', jobId, { job: parseJobRequest(req), options: FAST });
    return await e.waitFor(jobId, 120_000);
  } finally {
    e.close();
  }
}

async function resultNames(jobId: string): Promise<string[]> {
  const b = await readBlob(out, `${jobId}/results.jsonl`);
  return b!.data.toString().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as ImageResult).source.name).sort();
}

describe('inputs', () => {
  test('a manifest job (CSV of names and blob URLs, repeats, a missing blob) infers exactly the listed images once', async () => {
    const csv = ['path', 'old/1.png', `${input.url}/old/new-2.png`, 'old/1.png', 'old/3.png', 'old/missing.png', 'old/readme.txt'].join('\n');
    await writeBlob(input, 'lists/today.csv', csv);
    const s = await run('from-manifest', { input: { container: 'lake', extensions: ['.png'], manifest: { blob: 'lists/today.csv' } }, toleratedFailurePercent: 30 });
    assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
    assert.deepEqual(await resultNames('from-manifest'), ['old/1.png', 'old/3.png', 'old/new-2.png']);
    const failures = (await readBlob(out, 'from-manifest/_failures.jsonl'))!.data.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { blob: string; code: string });
    assert.deepEqual(failures.map((f) => [f.blob, f.code]), [['old/missing.png', 'BlobNotFound']], 'a listed blob that does not exist fails alone');
    const read = await readJson<Record<string, unknown>>(out, 'from-manifest/_plan/manifest-read.json');
    assert.deepEqual(read, { manifest: { container: 'lake', blob: 'lists/today.csv' }, entries: 6, planned: 4, duplicates: 1, filtered: 1, invalid: 0 });
  });

  test('a manifest naming blobs of another container fails at plan with ManifestInvalid and the count', async () => {
    await writeBlob(input, 'lists/bad.jsonl', ['"old/1.png"', JSON.stringify(input.url.replace('/lake', '/other') + '/x.png')].join('\n'));
    const s = await run('bad-manifest', { input: { container: 'lake', extensions: ['.png'], manifest: { blob: 'lists/bad.jsonl' } } });
    assert.equal(s.runtimeStatus, 'Failed');
    assert.match(String(s.output), /ManifestInvalid: manifest 'lists\/bad\.jsonl': 1 of 2 entries name blobs outside container 'lake'/);
  });

  for (const rule of ['daily-csv', 'daily-parquet']) {
    test(`an inventory run (${rule.slice(6)}, as Azure writes it): the blobs of the input container it lists, current ones only, filtered, each once`, async () => {
      // The run's files as Azure Blob Inventory wrote them (test/fixtures/inventory/make_inventory.py),
      // in its destination container; the manifest names this account's endpoint, as Azure's does.
      const inv = az.service.getContainerClient('inventory');
      await inv.createIfNotExists();
      const dir = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'inventory');
      const folder = `2026/01/21/02-00-00/${rule}`;
      for (const f of readdirSync(join(dir, folder))) {
        let body = readFileSync(join(dir, folder, f));
        if (f.endsWith('-manifest.json')) body = Buffer.from(JSON.stringify({ ...JSON.parse(body.toString()), endpoint: az.service.url.replace(/\/$/, '') }));
        await writeBlob(inv, `${folder}/${f}`, body);
      }
      const inventory = { container: 'inventory', manifestBlob: `${folder}/${rule}-manifest.json` };
      const s = await run(`inv-${rule}`, { input: { container: 'lake', extensions: ['.png'], inventory } });
      assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
      assert.deepEqual(await resultNames(`inv-${rule}`), ['old/0.png', 'old/2.png', 'old/new-1.png', 'old/new-3.png']);
      const read = await readJson<Record<string, unknown>>(out, `inv-${rule}/_plan/inventory-read.json`);
      assert.deepEqual(read, { inventory, rows: 12, planned: 4, otherContainers: 2, notCurrent: 3, filtered: 2, duplicates: 1, invalid: 0 });
      // The same filters as a listing: a prefix, and last-modified times.
      const since = await run(`inv-since-${rule}`, { input: { container: 'lake', prefix: 'old/', extensions: ['.png'], inventory, modifiedSince: '2026-01-15T00:00:00Z' } });
      assert.equal(since.runtimeStatus, 'Completed', JSON.stringify(since.output));
      assert.deepEqual(await resultNames(`inv-since-${rule}`), ['old/new-1.png', 'old/new-3.png']);
    });
  }

  test('an inventory run that did not succeed, of another account, or of containers is refused at plan with the reason', async () => {
    const inv = az.service.getContainerClient('inventory');
    await inv.createIfNotExists();
    const base = { destinationContainer: 'inventory', endpoint: az.service.url.replace(/\/$/, ''), files: [], ruleDefinition: { format: 'csv', objectType: 'blob' }, status: 'Succeeded' };
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['failed', { ...base, status: 'PartiallySucceeded' }, /the run's status is 'PartiallySucceeded', not 'Succeeded'/],
      ['account', { ...base, endpoint: 'https://someoneelse.blob.core.windows.net' }, /inventories the account at https:\/\/someoneelse\.blob\.core\.windows\.net/],
      ['containers', { ...base, ruleDefinition: { format: 'csv', objectType: 'container' } }, /the rule inventories containers, not blobs/],
    ];
    for (const [name, m, re] of cases) {
      await writeBlob(inv, `bad/${name}/${name}-manifest.json`, JSON.stringify(m));
      const s = await run(`inv-bad-${name}`, { input: { container: 'lake', inventory: { container: 'inventory', manifestBlob: `bad/${name}/${name}-manifest.json` } } });
      assert.equal(s.runtimeStatus, 'Failed');
      assert.match(String(s.output), re);
    }
  });

  test('modifiedSince / modifiedBefore select by last-modified time', async () => {
    const s = await run('since', { input: { container: 'lake', prefix: 'old/', extensions: ['.png'], modifiedSince: between } });
    assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
    assert.deepEqual(await resultNames('since'), ['old/new-0.png', 'old/new-1.png', 'old/new-2.png', 'old/new-3.png']);
    const b = await run('before', { input: { container: 'lake', prefix: 'old/', extensions: ['.png'], modifiedBefore: between } });
    assert.deepEqual(await resultNames('before'), Array.from({ length: 6 }, (_, i) => `old/${i}.png`));
    assert.equal(b.runtimeStatus, 'Completed');
    const none = await run('since-future', { input: { container: 'lake', prefix: 'old/', extensions: ['.png'], modifiedSince: '2099-01-01T00:00:00Z' } });
    assert.equal(none.runtimeStatus, 'Failed');
    assert.match(String(none.output), /NoInputImages: .*last modified in \[2099-01-01T00:00:00\.000Z, -\)/);
  });
});

describe('failure rules', () => {
  test('toleratedFailureCount ends a job the percentage would pass; -1 is no limit by count; both are in the manifest', async () => {
    const mixed = { container: 'lake', prefix: 'mixed/', extensions: ['.png'] };
    const s = await run('count-2', { input: mixed, toleratedFailurePercent: 50, toleratedFailureCount: 2 });
    assert.equal(s.runtimeStatus, 'Failed');
    assert.match(String(s.output), /JobFailed: 3 of 100 images failed \(3\.00%\), more than the tolerated count 2/);
    const m = (await readJson<Manifest>(out, 'count-2/_manifest.json'))!;
    assert.deepEqual([m.status, m.toleratedFailurePercent, m.toleratedFailureCount], ['failed', 50, 2]);
    const ok = await run('count-3', { input: mixed, toleratedFailureCount: 3 });
    assert.equal(ok.runtimeStatus, 'Completed', String(ok.output));
    const unlimited = await run('count-none', { input: mixed, toleratedFailureCount: -1, toleratedFailurePercent: 1 });
    assert.equal(unlimited.runtimeStatus, 'Failed', 'the percentage still applies');
    assert.match(String(unlimited.output), /more than the tolerated 1%/);
  });

  test(`the default (${DEFAULT_TOLERATED_FAILURE_PERCENT}%): a first run over a folder with a few broken files completes and names them`, async () => {
    const s = await run('default-rule', { input: { container: 'lake', prefix: 'mixed/', extensions: ['.png'] } });
    assert.equal(s.runtimeStatus, 'Completed', String(s.output));
    const m = (await readJson<Manifest>(out, 'default-rule/_manifest.json'))!;
    assert.deepEqual([m.counts.images, m.counts.failed, m.status], [100, 3, 'succeeded']);
    const all = await run('default-all-broken', { input: { container: 'lake', prefix: 'broken/', extensions: ['.png'] } });
    assert.equal(all.runtimeStatus, 'Failed', 'a folder of broken files still fails');
  });
});

describe('requests', () => {
  const base = { input: { container: 'lake' }, output: { container: 'lake-out' }, model: { name: 'colours' } };
  const field = (body: Record<string, unknown>): string => {
    try {
      parseJobRequest(body);
    } catch (e) {
      return `${(e as LakeInferError).target}: ${(e as LakeInferError).message}`;
    }
    return 'accepted';
  };
  test('bad names, times and combinations are refused naming the field', () => {
    assert.match(field({ ...base, output: { container: 'lake-out', prefix: 'a\uFFFE/' } }), /^output\.prefix: .*noncharacter U\+FFFE/);
    assert.match(field({ ...base, output: { container: 'lake-out', prefix: 'a\uD800b/' } }), /^output\.prefix: .*lone surrogates/);
    assert.match(field({ ...base, input: { container: 'lake', prefix: 'x\u0085/' } }), /^input\.prefix: .*control characters/);
    assert.match(field({ ...base, input: { container: 'lake', prefix: '\uD83D\uDE00/' } }), /^accepted$/, 'a real emoji (a surrogate pair) is fine');
    assert.match(field({ ...base, input: { container: 'lake', modifiedSince: 'yesterday' } }), /^input\.modifiedSince: .*ISO 8601/);
    assert.match(field({ ...base, input: { container: 'lake', modifiedSince: '2026-02-01T00:00:00Z', modifiedBefore: '2026-01-01T00:00:00Z' } }), /^input\.modifiedBefore: .*must be later/);
    assert.match(field({ ...base, input: { container: 'lake', manifest: { blob: 'list.txt' } } }), /^input\.manifest\.format: .*is needed/);
    assert.match(field({ ...base, input: { container: 'lake', manifest: { blob: 'l.csv' }, modifiedSince: '2026-01-01T00:00:00Z' } }), /^input\.modifiedSince: .*filters a listing/);
    assert.match(field({ ...base, mode: 'continuous', input: { container: 'lake', manifest: { blob: 'l.csv' } } }), /^input\.manifest: .*cannot feed a continuous job/);
    assert.match(field({ ...base, toleratedFailureCount: -2 }), /^toleratedFailureCount: /);
    assert.match(field({ ...base, input: { container: 'lake', inventory: { container: 'inv', manifestBlob: '2026/01/21/r/r.csv' } } }), /^input\.inventory\.manifestBlob: .*<ruleName>-manifest\.json/);
    assert.match(field({ ...base, input: { container: 'lake', inventory: { container: 'inv', manifestBlob: 'r/r-manifest.json' }, manifest: { blob: 'l.csv' } } }), /^input\.inventory: .*give one/);
    assert.match(field({ ...base, mode: 'continuous', input: { container: 'lake', inventory: { container: 'inv', manifestBlob: 'r/r-manifest.json' } } }), /^input\.inventory: .*cannot feed a continuous job/);
  });
});
