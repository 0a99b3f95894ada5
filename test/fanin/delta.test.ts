/**
 * The results as a Delta table, read by delta-rs (the `deltalake` package: a foreign reader, not
 * ours): a batch job's table is version 0 with every row once; a rewrite of the job's parts (as a
 * resumed job's) is one remove + add commit, so no version holds two runs' rows; two writers of
 * one version never both win; plain Parquet readers are unaffected (the log is `_`-prefixed).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { resetSettingsCache } from '../../lib/util/config';
import { DurableEngine } from '../../lib/local/durable/engine';
import { parseJobRequest } from '../../lib/job/request';
import { closeDefaultActivities } from '../../lib/orchestration/activities';
import type { Manifest } from '../../lib/fanin/finalize';
import { commitDelta, commitName, readDeltaLog } from '../../lib/fanin/delta';
import { readBlob, readJson, writeBlob, writeJson } from '../../lib/storage';
import { Canvas } from '../helpers/images';
import { classifierFixture, classifierSpec } from '../helpers/models';
import { useAzurite } from '../helpers/azurite';
import { registeredFunctions } from '../helpers/host';
import { DELTA_READ, downloadFolder, needPython, python } from '../helpers/python';

const az = useAzurite();
let out: ContainerClient;

before(async () => {
  await az.ready;
  process.env['DATA_STORAGE'] = az.azurite.connectionString;
  process.env['MODELS_CONTAINER'] = 'models';
  process.env['INFER_WORKERS'] = '1';
  resetSettingsCache();
  const models = az.service.getContainerClient('models');
  await models.createIfNotExists();
  await writeBlob(models, 'colours/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'colours/model.json', classifierSpec());
  const input = az.service.getContainerClient('delta-in');
  await input.create();
  for (let i = 0; i < 7; i++) await writeBlob(input, `img/${i}.png`, await new Canvas(8, 8, [i * 30, 100, 0]).png());
  await writeBlob(input, 'img/broken.png', 'not an image');
  out = az.service.getContainerClient('delta-out');
});
after(() => closeDefaultActivities());

interface DeltaRead {
  version: number;
  history: string[];
  versions: Record<string, string[]>;
  schema: string[];
}

describe('Delta table', () => {
  test('a batch job: version 0, every image once, the schema of the Parquet parts; a rewrite is one remove + add commit', async (t) => {
    const e = new DurableEngine(registeredFunctions(), { maxConcurrentActivities: 3 });
    const req = { jobId: 'dj', input: { container: 'delta-in', prefix: 'img/', extensions: ['.png'] }, output: { container: 'delta-out' }, model: { name: 'colours' }, partitionSize: 3, params: { topK: 1 }, toleratedFailurePercent: 20 };
    await e.start('inferenceJob', 'dj', { job: parseJobRequest(req), options: { parallel: 3, perGeneration: 4 } });
    const s = await e.waitFor('dj', 120_000);
    e.close();
    assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
    const m = (await readJson<Manifest>(out, 'dj/_manifest.json'))!;
    assert.deepEqual(m.datasets!.results.delta, { version: 0, committed: true, added: 3, removed: 0 });
    const log = await readDeltaLog(out, 'dj/results.parquet/');
    assert.deepEqual([log.version, [...log.files].sort()], [0, [...m.datasets!.results.parts].sort()]);
    const commit0 = (await readBlob(out, `dj/results.parquet/${commitName(0)}`))!.data.toString().split('\n').filter(Boolean).map((l) => Object.keys(JSON.parse(l) as object)[0]);
    assert.deepEqual(commit0, ['commitInfo', 'protocol', 'metaData', 'add', 'add', 'add']);

    // A rewrite of the job's parts (as a resumed job whose partitions wrote new pieces): one commit.
    const [first, ...rest] = m.datasets!.results.parts;
    const moved = first!.replace('-000000', '-000001');
    await writeBlob(out, `dj/results.parquet/${moved}`, (await readBlob(out, `dj/results.parquet/${first}`))!.data);
    const size = (await out.getBlobClient(`dj/results.parquet/${moved}`).getProperties()).contentLength!;
    const sizes = await Promise.all(rest.map(async (p) => (await out.getBlobClient(`dj/results.parquet/${p}`).getProperties()).contentLength!));
    const c1 = await commitDelta(out, 'dj/results.parquet/', [{ path: moved, size, rows: 3 }, ...rest.map((p, i) => ({ path: p, size: sizes[i]!, rows: 3 }))], { jobId: 'dj', operation: 'WRITE', now: Date.now() });
    assert.deepEqual(c1, { version: 1, committed: true, added: 1, removed: 1 });
    const again = await commitDelta(out, 'dj/results.parquet/', [{ path: moved, size, rows: 3 }, ...rest.map((p, i) => ({ path: p, size: sizes[i]!, rows: 3 }))], { jobId: 'dj', operation: 'WRITE', now: Date.now() });
    assert.deepEqual(again, { version: 1, committed: false, added: 0, removed: 0 }, 'nothing changed: no commit');

    if (!needPython(t, 'deltalake', 'pyarrow')) return;
    const dir = mkdtempSync(join(tmpdir(), 'lakeinfer-delta-'));
    await downloadFolder(out, 'dj/results.parquet/', dir);
    const read = python<DeltaRead>(DELTA_READ, dir);
    const images = [...Array.from({ length: 7 }, (_, i) => `img/${i}.png`), 'img/broken.png'].sort();
    assert.equal(read.version, 1);
    assert.deepEqual(read.versions['0'], images, 'version 0: every image once (the broken one as its failure row)');
    assert.deepEqual(read.versions['1'], images, 'version 1: the rewrite replaced its part: still every image once, never twice');
    assert.equal(read.history.length, 2);
    assert.ok(read.schema.includes('mask_rle') && read.schema.includes('job_id'));
    console.log(`delta: delta-rs reads versions 0 and 1 of dj (${images.length} images each), history ${read.history.join(', ')}`);
  });

  test('two writers of one version: exactly one wins, the other commits only what is still missing', async () => {
    const table = 'race/results.parquet/';
    await commitDelta(out, table, [{ path: 'a.parquet', size: 1, rows: 1 }], { jobId: 'race', operation: 'WRITE', now: 1 });
    const want = [{ path: 'a.parquet', size: 1, rows: 1 }, { path: 'b.parquet', size: 1, rows: 1 }];
    const [x, y] = await Promise.all([commitDelta(out, table, want, { jobId: 'race', operation: 'WRITE', now: 2 }), commitDelta(out, table, want, { jobId: 'race', operation: 'WRITE', now: 3 })]);
    assert.deepEqual([x.committed, y.committed].sort(), [false, true]);
    const log = await readDeltaLog(out, table);
    assert.deepEqual([log.version, [...log.files].sort()], [1, ['a.parquet', 'b.parquet']]);
  });
});
