import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TokenCredential } from '@azure/identity';
import {
  createDataServiceClient,
  ensureContainer,
  jobPrefix,
  listAllBlobs,
  listBlobPages,
  mapLimit,
  outputBlobName,
  readBlob,
  readJson,
  readPlan,
  safeRelativeName,
  writeBlob,
  writeJson,
  writePlan,
  planIndexName,
  MAX_BLOB_NAME,
  type PlanIndex,
} from '../../lib/storage';
import { LakeInferError } from '../../lib/util/errors';
import { planProgressName, planStep, type PlanStepOptions } from '../../lib/storage/planStream';
import { splitIntoPartitions } from '../../lib/util/partitions';
import { uniqueContainer, useAzurite } from '../helpers/azurite';

const MODEL = { name: 'm', etag: 'onnx-etag', jsonEtag: 'json-etag' };

const az = useAzurite();

describe('listing and partitioning 10,000 blobs', () => {
  const input = uniqueContainer('in');
  const out = uniqueContainer('out');
  const names: string[] = [];
  for (let i = 0; i < 10_000; i++) names.push(`2026/${String(Math.floor(i / 1000)).padStart(2, '0')}/img-${String(i).padStart(5, '0')}.${i % 3 === 0 ? 'JPG' : 'png'}`);
  const others = ['2026/readme.txt', '2026/00/notes.json', '2025/old.jpg', 'top.png'];

  test('uploads', async () => {
    const c = az.service.getContainerClient(input);
    await c.create();
    await mapLimit([...names, ...others], 48, (n) => writeBlob(c, n, Buffer.from(n)));
  });

  test('lists every matching blob once, in name order, page by page', async () => {
    const c = az.service.getContainerClient(input);
    const pages = [];
    for await (const page of listBlobPages(c, { prefix: '2026/', extensions: ['.jpg', '.png'], pageSize: 1000 })) pages.push(page);
    assert.ok(pages.length >= 10, `expected at least 10 pages of <= 1000, got ${pages.length}`);
    assert.ok(pages.every((p) => p.items.length <= 1000));
    const listed = pages.flatMap((p) => p.items.map((b) => b.name));
    assert.deepEqual(listed, [...names].sort());
    assert.equal(pages.at(-1)!.continuationToken, undefined);
    const first = pages[0]!.items[0]!;
    assert.equal(first.size, Buffer.byteLength(first.name));
    assert.match(first.etag, /^0x[0-9A-F]+$/);
  });

  test('a continuation token resumes where the last page stopped', async () => {
    const c = az.service.getContainerClient(input);
    const it = listBlobPages(c, { prefix: '2026/', extensions: ['.jpg', '.png'], pageSize: 2500 });
    const p1 = (await it.next()).value!;
    await it.return(undefined);
    const rest = await listAllBlobs(c, { prefix: '2026/', extensions: ['.jpg', '.png'], pageSize: 2500, continuationToken: p1.continuationToken! });
    assert.equal(p1.items.length + rest.length, names.length);
    assert.equal(rest[0]!.name > p1.items.at(-1)!.name, true);
  });

  test('maxItems stops listing early', async () => {
    const c = az.service.getContainerClient(input);
    const got = await listAllBlobs(c, { prefix: '2026/', extensions: ['.png'], maxItems: 1234, pageSize: 500 });
    assert.equal(got.length, 1234);
    assert.ok(got.every((b) => b.name.endsWith('.png')));
  });

  test('writePlan writes one plan file per partition of 64, and they read back to the whole listing', async () => {
    const inC = az.service.getContainerClient(input);
    const outC = az.service.getContainerClient(out);
    await ensureContainer(outC);
    const prefix = jobPrefix('runs/', 'job-10k');
    const index = await writePlan(inC, outC, { jobId: 'job-10k', jobPrefix: prefix, partitionSize: 64, prefix: '2026/', extensions: ['.jpg', '.png'], pageSize: 1000, model: MODEL });
    assert.equal(index.total, 10_000);
    assert.equal(index.partitions, Math.ceil(10_000 / 64));
    const expected = splitIntoPartitions([...names].sort(), 64);
    const plans = await mapLimit(expected.map((_, n) => n), 16, (n) => readPlan(outC, prefix, n));
    plans.forEach((plan, n) => {
      assert.equal(plan.n, n);
      assert.deepEqual(plan.blobs.map((b) => b.name), expected[n]);
    });
    assert.equal(plans.at(-1)!.blobs.length, 10_000 % 64);
    const stored = await readJson<PlanIndex>(outC, `${prefix}_plan/index.json`);
    assert.deepEqual(stored, index);
    // The index commits the plan: planning again (a resumed job) reuses it instead of listing again.
    await writeBlob(inC, '2026/zz-new.png', Buffer.from('late'));
    const again = await writePlan(inC, outC, { jobId: 'job-10k', jobPrefix: prefix, partitionSize: 64, prefix: '2026/', extensions: ['.png', '.jpg'], model: MODEL });
    assert.deepEqual(again, index);
  });

  test("writePlan with partitionSize 'auto': a small listing spreads over the window, the index records the size chosen", async () => {
    const inC = az.service.getContainerClient(input);
    const outC = az.service.getContainerClient(out);
    const small = await writePlan(inC, outC, { jobId: 'auto-s', jobPrefix: 'auto-s/', partitionSize: 'auto', window: 32, prefix: '2026/', extensions: ['.jpg'], maxItems: 48, pageSize: 10, model: MODEL });
    assert.deepEqual([small.total, small.partitions, small.partitionSize], [48, 12, 4]);
    const large = await writePlan(inC, outC, { jobId: 'auto-l', jobPrefix: 'auto-l/', partitionSize: 'auto', window: 4, prefix: '2026/', extensions: ['.jpg', '.png'], pageSize: 1000, model: MODEL });
    assert.deepEqual([large.total, large.partitionSize, large.partitions], [10_001, 64, Math.ceil(10_001 / 64)], 'past window x 64 items every partition holds 64');
    const plans = await mapLimit(Array.from({ length: large.partitions }, (_, n) => n), 16, (n) => readPlan(outC, 'auto-l/', n));
    assert.deepEqual(plans.flatMap((p) => p.blobs.map((b) => b.name)), (await listAllBlobs(inC, { prefix: '2026/' })).map((b) => b.name).filter((n) => /\.(jpg|png)$/i.test(n)).sort(), 'each blob once, in order');
  });

  /** Steps until the plan is complete; each step's partitions so far. */
  async function steps(outC: ReturnType<typeof az.service.getContainerClient>, opts: PlanStepOptions, duplicate = false): Promise<number[]> {
    const inC = az.service.getContainerClient(input);
    const seen: number[] = [];
    for (let k = 0; k < 10_000; k++) {
      // At-least-once: a step delivered twice at once writes the same plan files; one moves the progress.
      const [step, twin] = await Promise.all([planStep(inC, outC, opts), duplicate && k % 2 === 1 ? planStep(inC, outC, opts) : undefined]);
      if (twin) assert.ok(twin.index.partitions === step.index.partitions || twin.index.partitions >= seen.at(-1)!, 'a twin never goes back');
      seen.push(step.index.partitions);
      if (!step.more) return seen;
    }
    throw new Error('the plan never completed');
  }

  test('a plan made in steps: the first step fills the window, each later one lists a chunk, and the parts read back to the whole listing', async () => {
    const inC = az.service.getContainerClient(input);
    const outC = az.service.getContainerClient(out);
    const all = (await listAllBlobs(inC, { prefix: '2026/', extensions: ['.jpg', '.png'] })).map((b) => b.name);
    const opts: PlanStepOptions = { jobId: 'stream', jobPrefix: 'stream/', partitionSize: 64, window: 4, model: MODEL, prefix: '2026/', extensions: ['.jpg', '.png'], chunkItems: 1000 };
    const first = await planStep(inC, outC, opts);
    assert.deepEqual([first.more, first.index.partitions, first.index.total], [true, 4, 256], 'the first step plans the window (4 x 64) and stops');
    const progress = (await readJson<{ carry: unknown[]; listed: number }>(outC, planProgressName('stream/')))!;
    assert.equal(progress.listed, 256);
    const seen = [4, ...(await steps(outC, opts))];
    const raw = (await listAllBlobs(inC, { prefix: '2026/' })).length;
    assert.equal(seen.length, 1 + Math.ceil((raw - 256) / 1000), 'each later step lists one page of 1,000 (matching or not)');
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! > seen[i - 1]!, 'every step adds partitions');
    const index = (await readJson<PlanIndex>(outC, planIndexName('stream/')))!;
    assert.deepEqual([index.total, index.partitions, index.partitionSize], [all.length, Math.ceil(all.length / 64), 64]);
    assert.equal(await readJson(outC, planProgressName('stream/')), undefined, 'the progress is dropped once the index commits the plan');
    const plans = await mapLimit(Array.from({ length: index.partitions }, (_, n) => n), 16, (n) => readPlan(outC, 'stream/', n));
    assert.deepEqual(plans.map((p) => p.first), plans.map((_, n) => n * 64));
    assert.deepEqual(plans.flatMap((p) => p.blobs.map((b) => b.name)), all, 'each blob once, in order');
    // A step after the end answers with the committed plan.
    assert.deepEqual(await planStep(inC, outC, opts), { index, more: false });
  });

  test("a plan made in steps with 'auto' size and duplicate deliveries: the same plan as whole planning", async () => {
    const inC = az.service.getContainerClient(input);
    const outC = az.service.getContainerClient(out);
    const base = { model: MODEL, prefix: '2026/', extensions: ['.jpg', '.png'] };
    const whole = await writePlan(inC, outC, { ...base, jobId: 'whole', jobPrefix: 'whole/', partitionSize: 'auto', window: 4, pageSize: 1000 });
    const seen = await steps(outC, { ...base, jobId: 'whole', jobPrefix: 'stepped/', partitionSize: 'auto', window: 4, chunkItems: 700 }, true);
    assert.equal(seen[0], 4, "the first step lists until the size is decided (window x 64) and plans 4 partitions of 64");
    const index = (await readJson<PlanIndex>(outC, planIndexName('stepped/')))!;
    assert.deepEqual(index, whole);
    for (let n = 0; n < whole.partitions; n += 7) {
      const [a, b] = await Promise.all([readPlan(outC, 'whole/', n), readPlan(outC, 'stepped/', n)]);
      assert.deepEqual({ ...b, etag: '' }, { ...a, etag: '' }, `partition ${n}`);
    }
    // A small listing ends in the first step: the size spreads it over the window, as whole planning does.
    const small = await planStep(inC, outC, { ...base, jobId: 's', jobPrefix: 'stepped-s/', partitionSize: 'auto', window: 32, extensions: ['.jpg'], maxItems: 48, chunkItems: 10 });
    assert.deepEqual([small.more, small.index.total, small.index.partitions, small.index.partitionSize], [false, 48, 12, 4]);
  });
});

describe('awkward names', () => {
  const weird = [
    'with space/a b.jpg',
    'unicodé/日本語の画像.png',
    'emoji/🐱 cat.jpeg',
    'dots../..x/.hidden.png',
    'percent%2F.png',
    'double//slash.png',
    `long/${'x'.repeat(1000)}.png`,
  ];

  test('round trip through listing and results under the job prefix', async () => {
    const inC = az.service.getContainerClient(uniqueContainer('weird'));
    const outC = az.service.getContainerClient(uniqueContainer('weirdout'));
    await inC.create();
    await outC.create();
    for (const name of weird) {
      assert.ok(name.length < MAX_BLOB_NAME);
      await writeBlob(inC, name, Buffer.from(name));
    }
    const listed = await listAllBlobs(inC, { extensions: ['.jpg', '.jpeg', '.png'] });
    // Azure keeps names verbatim (no dot-segment resolution), so every weird name lists back as written.
    assert.deepEqual(new Set(listed.map((b) => b.name)), new Set(weird));
    const prefix = jobPrefix('runs', 'weird-job');
    const outNames = new Set<string>();
    for (const b of listed) {
      const got = await readBlob(inC, b.name);
      assert.equal(got?.data.toString(), b.name, `content of ${b.name}`);
      const outName = outputBlobName(prefix, 'results', b.name, '.json');
      assert.ok(outName.startsWith('runs/weird-job/results/'), outName);
      assert.ok(outName.length <= MAX_BLOB_NAME);
      const segs = outName.split('/');
      assert.ok(segs.every((s) => s !== '' && s !== '.' && s !== '..'), `no dot or empty segments in ${outName}`);
      assert.ok(!outName.includes('\\'));
      outNames.add(outName);
      await writeJson(outC, outName, { source: b.name });
    }
    assert.equal(outNames.size, weird.length, 'distinct inputs map to distinct outputs');
    const written = await listAllBlobs(outC);
    assert.equal(written.length, weird.length);
    assert.ok(written.every((b) => b.name.startsWith('runs/weird-job/results/')));
    for (const name of outNames) {
      const props = await outC.getBlobClient(name).getProperties();
      assert.equal(props.contentType, 'application/json; charset=utf-8');
    }
  });

  test('names with dot segments are refused before any request, never resolved to another blob', async () => {
    const c = az.service.getContainerClient(uniqueContainer('dots'));
    await c.create();
    await writeBlob(c, 'b.jpg', Buffer.from('the other blob'));
    for (const name of ['../escape.jpg', 'a/../b.jpg', './dot/./x.png', 'x/..']) {
      await assert.rejects(readBlob(c, name), (err: unknown) => err instanceof LakeInferError && err.code === 'InvalidName' && err.target === name);
      await assert.rejects(writeBlob(c, name, 'x'), (err: unknown) => err instanceof LakeInferError && err.code === 'InvalidName');
    }
    assert.deepEqual((await listAllBlobs(c)).map((b) => b.name), ['b.jpg']);
    assert.equal((await readBlob(c, 'b.jpg'))?.data.toString(), 'the other blob');
  });

  test('safe names: dot segments escaped, one-to-one, long names hashed', () => {
    assert.equal(safeRelativeName('../escape.jpg'), '%2E%2E/escape.jpg');
    assert.equal(safeRelativeName('a/./b'), 'a/%2E/b');
    assert.equal(safeRelativeName('/abs.png'), '%2F/abs.png');
    assert.equal(safeRelativeName('x%2E%2E'), 'x%252E%252E');
    // The storage service turns '\\' into '/', so listings never hold it; escaped all the same.
    assert.equal(safeRelativeName('back\\slash.png'), 'back%5Cslash.png');
    assert.notEqual(safeRelativeName('..'), safeRelativeName('%2E%2E'));
    const long1 = safeRelativeName(`${'y'.repeat(2000)}1`);
    const long2 = safeRelativeName(`${'y'.repeat(2000)}2`);
    assert.ok(long1.length <= 900 && long2.length <= 900);
    assert.notEqual(long1, long2);
    assert.throws(() => safeRelativeName(''), LakeInferError);
    assert.throws(() => jobPrefix('runs/../..', 'j'), /output\.prefix/);
    assert.throws(() => jobPrefix('runs', 'bad id!'), /jobId/);
    assert.equal(jobPrefix('/runs//x/', 'j1'), 'runs/x/j1/');
    assert.equal(jobPrefix(undefined, 'j1'), 'j1/');
  });
});

describe('edge containers', () => {
  test('an empty container plans zero partitions', async () => {
    const inC = az.service.getContainerClient(uniqueContainer('empty'));
    const outC = az.service.getContainerClient(uniqueContainer('emptyout'));
    await inC.create();
    await outC.create();
    assert.deepEqual(await listAllBlobs(inC), []);
    const index = await writePlan(inC, outC, { jobId: 'e', jobPrefix: 'e/', partitionSize: 10, model: MODEL });
    assert.equal(index.total, 0);
    assert.equal(index.partitions, 0);
  });

  test('a missing container is a clear ContainerNotFound error naming it', async () => {
    const name = uniqueContainer('missing');
    await assert.rejects(listAllBlobs(az.service.getContainerClient(name)), (err: unknown) => {
      assert.ok(err instanceof LakeInferError);
      assert.equal(err.code, 'ContainerNotFound');
      assert.equal(err.retryable, false);
      assert.match(err.message, new RegExp(`container '${name}' does not exist`));
      return true;
    });
    await assert.rejects(readPlan(az.service.getContainerClient(name), 'j/', 0), (err: unknown) => err instanceof LakeInferError && err.code === 'ContainerNotFound');
  });

  test('a missing plan file is PlanInvalid; a missing blob reads as undefined', async () => {
    const c = az.service.getContainerClient(uniqueContainer('plans'));
    await c.create();
    assert.equal(await readBlob(c, 'nope.json'), undefined);
    await assert.rejects(readPlan(c, 'j/', 3), (err: unknown) => err instanceof LakeInferError && err.code === 'PlanInvalid' && /_plan\/3\.json/.test(err.message));
  });

  test('ifNotExists never overwrites what is already written', async () => {
    const c = az.service.getContainerClient(uniqueContainer('once'));
    await c.create();
    const etag = await writeBlob(c, 'r.json', '{"v":1}', { ifNotExists: true });
    assert.equal(etag, (await readBlob(c, 'r.json'))!.etag, 'written: its new ETag');
    assert.equal(await writeBlob(c, 'r.json', '{"v":2}', { ifNotExists: true }), false);
    assert.deepEqual(await readJson(c, 'r.json'), { v: 1 });
  });
});

describe('client construction', () => {
  test('connection string client reaches Azurite', async () => {
    const svc = await createDataServiceClient({ kind: 'connectionString', connectionString: az.azurite.connectionString });
    const name = uniqueContainer('cs');
    await svc.getContainerClient(name).create();
    assert.ok(await svc.getContainerClient(name).exists());
  });

  test('Key Vault secret supplies the connection string (secret reader stands in for the vault)', async () => {
    const asked: string[] = [];
    const svc = await createDataServiceClient(
      { kind: 'keyVaultSecret', vaultUrl: 'https://kv1.vault.azure.net', secretName: 'data-conn', secretVersion: 'v2' },
      {
        readSecret: async (vault, name, version) => {
          asked.push(`${vault}|${name}|${version}`);
          return az.azurite.connectionString;
        },
      },
    );
    assert.deepEqual(asked, ['https://kv1.vault.azure.net|data-conn|v2']);
    const name = uniqueContainer('kv');
    await svc.getContainerClient(name).create();
    assert.ok(await svc.getContainerClient(name).exists());
  });

  test('an unreadable secret is SecretUnavailable naming the secret, never a value', async () => {
    await assert.rejects(
      createDataServiceClient(
        { kind: 'keyVaultSecret', vaultUrl: 'https://kv1.vault.azure.net', secretName: 'data-conn' },
        { readSecret: async () => { throw Object.assign(new Error('Forbidden'), { statusCode: 403 }); } },
      ),
      (err: unknown) => err instanceof LakeInferError && err.code === 'SecretUnavailable' && /data-conn/.test(err.message) && err.target === 'DATA_STORAGE_SECRET_URI' && !err.retryable,
    );
    await assert.rejects(
      createDataServiceClient({ kind: 'keyVaultSecret', vaultUrl: 'https://kv1.vault.azure.net', secretName: 's' }, { readSecret: async () => 'AccountKey=hunter2' }),
      (err: unknown) => err instanceof LakeInferError && err.code === 'ConfigInvalid' && !err.message.includes('hunter2'),
    );
  });

  test('service URI uses the token credential given (managed identity on Azure)', async () => {
    const scopes: string[] = [];
    const credential: TokenCredential = {
      getToken: async (s) => {
        scopes.push(...(Array.isArray(s) ? s : [s]));
        return { token: 'fake', expiresOnTimestamp: Date.now() + 3600_000 };
      },
    };
    const svc = await createDataServiceClient({ kind: 'serviceUri', serviceUri: 'https://acct.blob.core.windows.net' }, { credential });
    assert.equal(svc.url.replace(/\/$/, ''), 'https://acct.blob.core.windows.net');
    assert.equal(svc.accountName, 'acct');
    assert.equal(svc.credential, credential);
  });
});
