/**
 * The entrances a newcomer takes: every CLI command's --help, unknown commands named, a host that is
 * not running named as such, jobs found again (GET /api/jobs, lakeinfer list), a typo'd prefix
 * failing with NoInputImages, retry of a failed job, cancel reporting cancelling then cancelled, an
 * empty continuous job with a readable empty Parquet dataset and no new generation per idle look.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobListItem } from '../../lib/api/jobs';
import { main as cli } from '../../lib/cli/cli';
import { status, watch } from '../../lib/cli/client';
import { uploadDemo } from '../../lib/cli/demo';
import { startLocalHost, type LocalHost } from '../../lib/local/host/host';
import type { Manifest } from '../../lib/fanin/finalize';
import { readBlob } from '../../lib/storage';
import { useAzurite } from '../helpers/azurite';
import { readParquetRows } from '../helpers/parquet';
import { RESULT_COLUMNS } from '../../lib/partition/parquet';

const az = useAzurite();

async function run(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const code = await cli(argv, env, (s) => lines.push(s));
  return { code, out: lines.join('\n') };
}

test('every command has --help (host too: it starts nothing), help COMMAND works, unknown commands are named', async () => {
  for (const c of ['host', 'submit', 'status', 'list', 'results', 'retry', 'cancel', 'purge', 'report', 'upload', 'models']) {
    for (const form of [[c, '--help'], [c, '-h'], ['help', c]]) {
      const r = await run(form);
      assert.equal(r.code, 0, `${form.join(' ')}: ${r.out}`);
      assert.match(r.out, new RegExp(`^usage: lakeinfer ${c}\\b`), form.join(' '));
    }
  }
  const top = await run(['help']);
  assert.equal(top.code, 0);
  for (const c of ['host', 'list', 'retry', 'models']) assert.match(top.out, new RegExp(`^  ${c} `, 'm'));
  const bad = await run(['sumbit', 'job.json']);
  assert.equal(bad.code, 2);
  assert.match(bad.out, /^lakeinfer: unknown command 'sumbit'/);
  const missing = await run(['status']);
  assert.equal(missing.code, 2);
  assert.match(missing.out, /lakeinfer status: missing JOB_ID; see 'lakeinfer status --help'/);
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

test('a command with no host running says so and what to start', async () => {
  const port = await closedPort();
  await assert.rejects(run(['status', 'x', '--url', `http://127.0.0.1:${port}`]), new RegExp(`no job API answers at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\): is \`lakeinfer host\` running\\? Start it in another terminal with 'npm run lakeinfer -- host --data \\.lakeinfer/azurite'`));
  await assert.rejects(run(['list', '--url', 'https://myapp.azurewebsites.invalid']), /check --url \(LAKEINFER_URL\)/);
});

test('upload: a missing folder, a bad container name, a prefix with a control character or a dot segment are named', async () => {
  const env = { DATA_STORAGE: az.azurite.connectionString };
  const dir = await mkdtemp(join(tmpdir(), 'lakeinfer-up-'));
  await writeFile(join(dir, 'a.jpg'), 'x');
  let r = await run(['upload', join(dir, 'nope'), '--container', 'images'], env);
  assert.equal(r.code, 2);
  assert.match(r.out, /no such folder: .*nope/);
  r = await run(['upload', dir, '--container', 'Photos'], env);
  assert.equal(r.code, 2);
  assert.match(r.out, /--container must be a valid container name .* got 'Photos'.*container names are lower case \(e\.g\. 'photos'\)/);
  r = await run(['upload', dir, '--container', 'images', '--prefix', 'a\u0007b/'], env);
  assert.equal(r.code, 2);
  assert.match(r.out, /control character/);
  r = await run(['upload', dir, '--container', 'images', '--prefix', '../x/'], env);
  assert.equal(r.code, 2);
  assert.match(r.out, /'\.' or '\.\.' segment/);
  // A storage that is not there: a hint, not 17 s of retries and a bare ECONNREFUSED.
  const t0 = Date.now();
  const port = await closedPort();
  await assert.rejects(run(['upload', dir, '--container', 'images'], { DATA_STORAGE: az.azurite.connectionString.replace(/BlobEndpoint=http:\/\/127\.0\.0\.1:\d+/, `BlobEndpoint=http://127.0.0.1:${port}`) }), /refused the connection: is `lakeinfer host` running\?/);
  assert.ok(Date.now() - t0 < 15_000, `${Date.now() - t0} ms`);
});

describe('with a local host', () => {
  let host: LocalHost;
  const env = (): NodeJS.ProcessEnv => ({ LAKEINFER_URL: host.url, DATA_STORAGE: az.azurite.connectionString });
  before(async () => {
    host = await startLocalHost({ port: 0, storageConnectionString: az.azurite.connectionString, activityProcesses: 2, settings: { MODELS_CONTAINER: 'models' }, log: () => undefined });
    await uploadDemo(az.service, 6);
  });
  after(async () => {
    await host?.stop();
  });

  async function job(name: string, request: unknown): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'lakeinfer-job-'));
    const file = join(dir, `${name}.json`);
    await writeFile(file, JSON.stringify(request));
    return file;
  }

  test("a typo'd prefix fails with NoInputImages naming container and prefix; jobs are listed newest first, filtered and paged", async () => {
    const ok = await job('ok', { jobId: 'entr-ok', input: { container: 'images', prefix: 'demo/', extensions: ['.jpg', '.png'] }, output: { container: 'results', prefix: 'entr/' }, model: { name: 'ppocr-v4-det' }, toleratedFailurePercent: 50 });
    assert.equal((await run(['submit', ok, '--wait'], env())).code, 0);
    const typo = await job('typo', { jobId: 'entr-typo', input: { container: 'images', prefix: 'dmeo/' }, output: { container: 'results', prefix: 'entr/' }, model: { name: 'ppocr-v4-det' } });
    const r = await run(['submit', typo, '--wait'], env());
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /job entr-typo: failed \(Failed\)/);
    assert.match(r.out, /reason: .*NoInputImages: no images to infer: container 'images' has no blobs under prefix 'dmeo\/' with the extensions \.jpg, \.jpeg, \.png/);

    const listed = await run(['list'], env());
    assert.equal(listed.code, 0);
    const lines = listed.out.split('\n');
    const iTypo = lines.findIndex((l) => l.startsWith('entr-typo '));
    const iOk = lines.findIndex((l) => l.startsWith('entr-ok '));
    assert.ok(iTypo >= 0 && iOk > iTypo, `newest first:\n${listed.out}`);
    assert.match(lines[iOk]!, /succeeded .* images 6\/9 done, 3 failed {2}results\/entr\/entr-ok\//);
    const failedOnly = await run(['list', '--status', 'failed'], env());
    assert.ok(failedOnly.out.includes('entr-typo') && !failedOnly.out.includes('entr-ok'), failedOnly.out);

    // The API: a page of one, then the next by its token; a bad filter is a 400 naming the parameter.
    const p1 = (await (await fetch(`${host.url}/api/jobs?top=1`)).json()) as { jobs: JobListItem[]; continuationToken?: string };
    assert.equal(p1.jobs.length, 1);
    assert.ok(p1.continuationToken);
    const p2 = (await (await fetch(`${host.url}/api/jobs?top=1&continuationToken=${p1.continuationToken}`)).json()) as { jobs: JobListItem[] };
    assert.equal(p2.jobs.length, 1);
    assert.notEqual(p2.jobs[0]!.jobId, p1.jobs[0]!.jobId);
    assert.deepEqual(p1.jobs[0]!.outputs?.container, 'results');
    const bad = await fetch(`${host.url}/api/jobs?status=done`);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { target: string } }).error.target, 'status');
  });

  test('retry redrives a failed job with its own request and says what it keeps and retries', async () => {
    const strict = await job('strict', { jobId: 'entr-strict', input: { container: 'images', prefix: 'demo/', extensions: ['.jpg', '.png'] }, output: { container: 'results', prefix: 'entr/' }, model: { name: 'ppocr-v4-det' }, partitionSize: 3, toleratedFailurePercent: 0 });
    const first = await run(['submit', strict, '--wait'], env());
    assert.equal(first.code, 1);
    assert.match(first.out, /job entr-strict: failed/);
    const r = await run(['retry', 'entr-strict', '--wait'], env());
    assert.match(r.out, /retried \(was failed\): 6 images done are kept; the failed and unfinished partitions run again \(3 images failed last time\)/);
    assert.match(r.out, /job entr-strict: failed/, 'the same broken files fail again');
    await assert.rejects(run(['retry', 'entr-ok'], env()), /HTTP 409: job 'entr-ok' succeeded; nothing to retry: its 3 failed image\(s\) failed for reasons of their own \(listed in entr\/entr-ok\/_failures\.jsonl\)/);
  });

  test('cancel reports cancelling, then cancelled once the job has stopped', async () => {
    const slow = await job('slow', { jobId: 'entr-cancel', input: { container: 'images', prefix: 'demo/', extensions: ['.jpg', '.png'] }, output: { container: 'results', prefix: 'entr/' }, model: { name: 'ppocr-v4-det' }, partitionSize: 1, maxParallelPartitions: 1, skipExisting: false });
    assert.equal((await run(['submit', slow], env())).code, 0);
    for (let i = 0; i < 200 && (await status({ url: host.url }, 'entr-cancel')).progress?.phase !== 'inferring'; i++) await new Promise((res) => setTimeout(res, 50));
    const r = await run(['cancel', 'entr-cancel'], env());
    assert.equal(r.code, 0);
    // The local engine may process the terminate before the answer is read: then 'cancelled' at once.
    const lines = r.out.split('\n').filter((l) => l.startsWith('job entr-cancel:')).map((l) => l.replace(/ \(.*\)$/, ''));
    assert.ok(JSON.stringify(lines) === JSON.stringify(['job entr-cancel: cancelling', 'job entr-cancel: cancelled']) || JSON.stringify(lines) === JSON.stringify(['job entr-cancel: cancelled']), r.out);
    assert.equal((await status({ url: host.url }, 'entr-cancel')).status, 'cancelled');
  });

  test('a continuous job may start empty: a valid empty Parquet dataset, and idle looks start no new generation', async () => {
    const req = await job('cont', { jobId: 'entr-cont', mode: 'continuous', pollSeconds: 1, input: { container: 'images', prefix: 'nothing-yet/' }, output: { container: 'results', prefix: 'entr/' }, model: { name: 'ppocr-v4-det' } });
    assert.equal((await run(['submit', req], env())).code, 0);
    const out = az.service.getContainerClient('results');
    let manifest: Manifest | undefined;
    for (let i = 0; i < 300 && !manifest; i++) {
      const m = await readBlob(out, 'entr/entr-cont/_manifest.json');
      if (m) manifest = JSON.parse(m.data.toString()) as Manifest;
      else await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(manifest, 'the provisional manifest of an empty continuous job');
    assert.deepEqual(manifest.datasets?.results.parts, ['part-empty.parquet']);
    const part = await readBlob(out, 'entr/entr-cont/results.parquet/part-empty.parquet');
    const read = readParquetRows(part!.data); // arrow-rs (parquet-wasm): the reader DuckDB-like engines are strictest about
    assert.equal(read.rows.length, 0);
    assert.deepEqual(read.columns.map((c) => c.name), RESULT_COLUMNS.map((c) => c.name));
    // Several looks (one a second) later: still the first generation, nothing new written per look.
    await new Promise((res) => setTimeout(res, 4_500));
    const s = await status({ url: host.url }, 'entr-cont');
    assert.equal(s.progress?.phase, 'watching');
    assert.equal(s.progress?.generation, 0, 'idle looks stay in their generation');
    // A continuous job stops at its next look: the cancel is 'cancelling' first, then 'cancelled'.
    const c = await run(['cancel', 'entr-cont'], env());
    assert.deepEqual(c.out.split('\n').filter((l) => l.startsWith('job entr-cont:')).map((l) => l.replace(/ \(.*\)$/, '')), ['job entr-cont: cancelling', 'job entr-cont: cancelled'], c.out);
    const end = await watch({ url: host.url }, 'entr-cont', () => undefined, 200, 30_000);
    assert.equal(end.status, 'cancelled');
  });
});
