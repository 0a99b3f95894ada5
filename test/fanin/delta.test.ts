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
import { checkpointName, CHECKPOINT_EVERY, commitDelta, commitName, LAST_CHECKPOINT, readDeltaLog, readDeltaState } from '../../lib/fanin/delta';
import { readBlob, readJson, writeBlob, writeJson } from '../../lib/storage';
import { Canvas } from '../helpers/images';
import { classifierFixture, classifierSpec } from '../helpers/models';
import { useAzurite } from '../helpers/azurite';
import { registeredFunctions } from '../helpers/host';
import { DELTA_READ, downloadFolder, needPython, python, SPARK_READ, type SparkRead } from '../helpers/python';

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

/** Tables the Spark test at the end reads (one Spark session for all). */
const tables: Record<string, string> = {};

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

    // Statistics per part: row count, null counts, min/max of numeric and short string columns.
    const add = JSON.parse((await readBlob(out, `dj/results.parquet/${commitName(0)}`))!.data.toString().split('\n').filter(Boolean).find((l) => l.startsWith('{"add"'))!) as { add: { stats: string } };
    const stats = JSON.parse(add.add.stats) as { numRecords: number; minValues: Record<string, unknown>; maxValues: Record<string, unknown>; nullCount: Record<string, number> };
    assert.equal(stats.numRecords, 3);
    assert.equal(stats.minValues['job_id'], 'dj');
    assert.ok(typeof stats.minValues['width'] === 'number' && typeof stats.maxValues['score'] === 'number', JSON.stringify(stats));
    assert.equal(stats.nullCount['mask_rle'], 3, 'a classifier has no masks');
    assert.equal(stats.minValues['image'], undefined, 'long free-text columns carry no min/max');
    tables.dj = 'dj/results.parquet/';

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

  test(`a checkpoint every ${CHECKPOINT_EVERY} versions (the protocol's Parquet schema) and _last_checkpoint: the state read from it equals the full replay; readers start from it`, async (t) => {
    const table = 'ckpt/results.parquet/';
    const files: { path: string; size: number; rows: number }[] = [];
    for (let v = 0; v <= 12; v++) {
      // Appends, with a replacement now and then (a resumed job's rewrite).
      if (v === 7) files.splice(2, 1);
      const data = (await readBlob(out, `dj/results.parquet/${(await readDeltaLog(out, 'dj/results.parquet/')).files.values().next().value}`))!.data;
      files.push({ path: `part-${String(v).padStart(5, '0')}-000000.parquet`, size: data.length, rows: 3 });
      await writeBlob(out, `${table}${files[files.length - 1]!.path}`, data);
      const c = await commitDelta(out, table, files, { jobId: 'ckpt', operation: 'STREAMING UPDATE', now: 1000 + v });
      assert.equal(c.version, v);
      assert.equal(c.checkpoint ?? false, v === 10, `version ${v}`);
    }
    assert.ok(await readBlob(out, `${table}${checkpointName(10)}`), 'the checkpoint file');
    // protocol, metaData, 10 active files and the tombstone of the part removed at version 7.
    assert.deepEqual(await readJson(out, `${table}${LAST_CHECKPOINT}`), { version: 10, size: 2 + 10 + 1 });
    const fromCheckpoint = await readDeltaState(out, table);
    assert.equal(fromCheckpoint.version, 12);
    assert.deepEqual([...fromCheckpoint.adds.keys()].sort(), files.map((f) => f.path).sort(), 'checkpoint + commits 11, 12 = the active files');
    assert.deepEqual(fromCheckpoint.metaData?.partitionColumns, []);
    // The same state without the checkpoint (replaying every commit).
    await out.getBlobClient(`${table}${LAST_CHECKPOINT}`).delete();
    assert.deepEqual([...(await readDeltaState(out, table)).adds.keys()].sort(), [...fromCheckpoint.adds.keys()].sort());
    await writeJson(out, `${table}${LAST_CHECKPOINT}`, { version: 10, size: 13 });
    tables.ckpt = table;
    if (!needPython(t, 'deltalake', 'pyarrow')) return;
    const dir = mkdtempSync(join(tmpdir(), 'lakeinfer-ckpt-'));
    await downloadFolder(out, table, dir);
    const read = python<{ version: number; versions: Record<string, string[]> }>(DELTA_READ, dir);
    assert.equal(read.version, 12);
    assert.equal(read.versions['12']!.length, files.length * 3, 'delta-rs reads the latest version through the checkpoint (3 rows a part)');
    assert.equal(read.versions['5']!.length, 6 * 3, 'and time-travels to a version before it');
  });

  test('a table shared by jobs (output.table), partitioned by job_id: each job writes its partition; a restarted job replaces its own rows, never another job\'s', async (t) => {
    const run = async (jobId: string, prefix: string, restart = false) => {
      const e = new DurableEngine(registeredFunctions(), { maxConcurrentActivities: 3 });
      const req = { jobId, input: { container: 'delta-in', prefix, extensions: ['.png'] }, output: { container: 'delta-out', table: { path: 'tables/colours/' } }, model: { name: 'colours' }, partitionSize: 3, params: { topK: 1 }, toleratedFailurePercent: 20, restart };
      await e.start('inferenceJob', jobId, { job: parseJobRequest(req), options: { parallel: 3, perGeneration: 4 } });
      const s = await e.waitFor(jobId, 120_000);
      e.close();
      assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
      return (await readJson<Manifest>(out, `${jobId}/_manifest.json`))!;
    };
    const ma = await run('shared-a', 'img/');
    const mb = await run('shared-b', 'img/1');
    assert.equal(ma.datasets!.results.shared, true);
    assert.equal(ma.datasets!.results.path, 'tables/colours/');
    assert.ok(ma.datasets!.results.parts.every((p) => p.startsWith('job_id=shared-a/')), ma.datasets!.results.parts.join(', '));
    assert.ok(!(await out.getBlobClient('shared-a/results.parquet/_delta_log/00000000000000000000.json').exists()), 'no table of its own');
    const commit0 = (await readBlob(out, `tables/colours/${commitName(0)}`))!.data.toString();
    assert.match(commit0, /"partitionColumns":\["job_id"\]/);
    let log = await readDeltaLog(out, 'tables/colours/');
    assert.equal(log.version, 1);
    assert.deepEqual([...log.files].sort(), [...ma.datasets!.results.parts, ...mb.datasets!.results.parts].sort());
    // Job a again from scratch (restart): its rows are replaced in one commit, b's untouched.
    const again = await run('shared-a', 'img/', true);
    log = await readDeltaLog(out, 'tables/colours/');
    assert.equal(log.version, 2);
    assert.deepEqual([...log.files].sort(), [...again.datasets!.results.parts, ...mb.datasets!.results.parts].sort());
    tables.shared = 'tables/colours/';
    if (!needPython(t, 'deltalake', 'pyarrow')) return;
    const dir = mkdtempSync(join(tmpdir(), 'lakeinfer-shared-'));
    await downloadFolder(out, 'tables/colours/', dir);
    const read = python<{ version: number; versions: Record<string, string[]> }>(DELTA_READ, dir);
    assert.equal(read.versions['2']!.length, 8 + 1, 'delta-rs: job a (8 images) and job b (img/1.png) once each');
    assert.equal(new Set(read.versions['2']).size, 8, 'img/1.png twice: once per job, never twice for a job');
  });

  test('Spark with Delta Lake (pyspark + delta-spark) reads the tables: a job\'s, through a checkpoint, and one shared by jobs with its versions', { timeout: 300_000 }, async (t) => {
    if (!needPython(t, 'pyspark', 'delta')) return;
    const dirs: Record<string, string> = {};
    for (const [k, table] of Object.entries(tables)) {
      dirs[k] = mkdtempSync(join(tmpdir(), `lakeinfer-spark-${k}-`));
      await downloadFolder(out, table, dirs[k]);
    }
    assert.deepEqual(Object.keys(dirs).sort(), ['ckpt', 'dj', 'shared'], 'the tables the tests above wrote');
    const read = python<Record<string, SparkRead>>(SPARK_READ, ...Object.values(dirs));
    const dj = read[dirs['dj']!]!;
    assert.equal(dj.version, 1);
    assert.deepEqual(dj.versions['0'], dj.versions['1'], 'the rewrite: every image once at both versions');
    assert.equal(dj.versions['1']!.length, 8);
    const ckpt = read[dirs['ckpt']!]!;
    assert.equal(ckpt.version, 12);
    assert.equal(ckpt.versions['12']!.length, 12 * 3);
    const shared = read[dirs['shared']!]!;
    assert.deepEqual(shared.partitionColumns, ['job_id']);
    assert.deepEqual(shared.jobs, { 'shared-a': 8, 'shared-b': 1 }, 'each job its rows once, after job a was restarted');
    assert.deepEqual(shared.history, ['WRITE', 'WRITE', 'WRITE']);
    console.log(`delta: Spark reads dj (v${dj.version}), ckpt (v${ckpt.version}, through its checkpoint) and the shared table (jobs ${JSON.stringify(shared.jobs)})`);
  });
});
