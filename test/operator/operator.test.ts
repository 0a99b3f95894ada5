/**
 * The operator's commands (lakeinfer upload / models add / results) against a real Azurite: with a
 * connection string (the local host), and with an Entra ID token over TLS (a deployed account:
 * Azurite over HTTPS with --oauth basic, a stand-in credential in place of DefaultAzureCredential).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { main as cli } from '../../lib/cli/cli';
import { startAzurite } from '../../lib/local/azurite/azurite';
import { operatorStorage, OperatorStorageError } from '../../lib/operator/storage';
import { blobNameFor, progressBar } from '../../lib/operator/upload';
import { listAllBlobs, readBlob } from '../../lib/storage';
import { classifierFixture, classifierSpec } from '../helpers/models';
import { useAzurite } from '../helpers/azurite';

const az = useAzurite();
const root = join(__dirname, '..', '..', '..');

function folder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lakeinfer-upload-'));
  mkdirSync(join(dir, 'sub', 'deeper'), { recursive: true });
  writeFileSync(join(dir, 'a.png'), Buffer.from('not really a png, a'));
  writeFileSync(join(dir, 'sub', 'b.JPG'), Buffer.from('b'.repeat(1000)));
  writeFileSync(join(dir, 'sub', 'deeper', 'c.jpeg'), Buffer.from('c'));
  writeFileSync(join(dir, 'notes.txt'), Buffer.from('notes'));
  return dir;
}

test('upload: a folder in parallel with its sub-folders; a second run sends nothing unchanged; a changed file goes again', async () => {
  const dir = folder();
  const lines: string[] = [];
  const env = { DATA_STORAGE: az.azurite.connectionString };
  assert.equal(await cli(['upload', dir, '--container', 'up-images', '--prefix', 'batch/', '--extensions', '.png,.jpg,.jpeg'], env, (l) => lines.push(l)), 0);
  const c = az.service.getContainerClient('up-images');
  assert.deepEqual((await listAllBlobs(c, { prefix: 'batch/' })).map((b) => b.name).sort(), ['batch/a.png', 'batch/sub/b.JPG', 'batch/sub/deeper/c.jpeg']);
  assert.equal((await readBlob(c, 'batch/sub/b.JPG'))!.data.toString(), 'b'.repeat(1000));
  assert.match(lines.at(-1)!, /uploaded 3 files .* 0 unchanged/);
  assert.ok(lines.some((l) => /\[#+\] 3\/3 files/.test(l)), 'progress shown');

  lines.length = 0;
  await cli(['upload', dir, '--container', 'up-images', '--prefix', 'batch/', '--extensions', '.png,.jpg,.jpeg'], env, (l) => lines.push(l));
  assert.match(lines.at(-1)!, /uploaded 0 files \(0\.0 MB\) .* 3 unchanged/);

  writeFileSync(join(dir, 'a.png'), Buffer.from('changed'));
  lines.length = 0;
  await cli(['upload', dir, '--container', 'up-images', '--prefix', 'batch/'], env, (l) => lines.push(l));
  assert.match(lines.at(-1)!, /uploaded 2 files .* 2 unchanged/, 'the changed file and notes.txt (no extension filter)');
  assert.equal((await readBlob(c, 'batch/a.png'))!.data.toString(), 'changed');
  assert.equal(blobNameFor('/x', '/x/a/b.png', 'p/'), 'p/a/b.png');
  assert.equal(progressBar({ files: 4, done: 2, uploaded: 1, skipped: 1, bytes: 2_000_000 }, 10), '[#####.....] 2/4 files, 1 unchanged, 2.0 MB sent');
});

test('models add: checks model.json against the ONNX on this machine before uploading; a wrong pair uploads nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lakeinfer-model-'));
  writeFileSync(join(dir, 'model.onnx'), classifierFixture());
  writeFileSync(join(dir, 'model.json'), JSON.stringify(classifierSpec()));
  writeFileSync(join(dir, 'wrong.json'), JSON.stringify({ ...classifierSpec(), labels: ['red', 'green'] }));
  writeFileSync(join(dir, 'bad.json'), JSON.stringify({ ...classifierSpec(), adapter: 'nope' }));
  const env = { DATA_STORAGE: az.azurite.connectionString, MODELS_CONTAINER: 'op-models' };
  const lines: string[] = [];
  assert.equal(await cli(['models', 'add', 'colours', join(dir, 'model.onnx'), '--json', join(dir, 'model.json')], env, (l) => lines.push(l)), 0);
  assert.match(lines.at(-1)!, /model 'colours' checked and uploaded to op-models\/colours\//);
  const models = az.service.getContainerClient('op-models');
  assert.deepEqual((await listAllBlobs(models, { prefix: 'colours/' })).map((b) => b.name).sort(), ['colours/model.json', 'colours/model.onnx']);
  const json = JSON.parse((await readBlob(models, 'colours/model.json'))!.data.toString()) as { name: string; labels: string[] };
  assert.equal(json.name, 'colours');
  assert.deepEqual(json.labels, ['red', 'green', 'blue', 'gray']);
  assert.deepEqual(Buffer.compare((await readBlob(models, 'colours/model.onnx'))!.data, Buffer.from(classifierFixture())), 0);

  await assert.rejects(cli(['models', 'add', 'wrong', join(dir, 'model.onnx'), '--json', join(dir, 'wrong.json')], env, () => undefined), /2 labels|labels|classes/i);
  await assert.rejects(cli(['models', 'add', 'bad', join(dir, 'model.onnx'), '--json', join(dir, 'bad.json')], env, () => undefined), /adapter/);
  await assert.rejects(cli(['models', 'add', 'x', join(dir, 'model.onnx'), '--from-catalog', 'nope'], env, () => undefined), /no catalog entry 'nope' \(known: .*yolact-resnet50/);
  await assert.rejects(cli(['models', 'add', 'x', join(dir, 'model.onnx')], env, () => undefined), /--from-catalog <id> or --json <file>/);
  assert.deepEqual((await listAllBlobs(models)).map((b) => b.name).sort(), ['colours/model.json', 'colours/model.onnx'], 'nothing uploaded for the refused ones');
});

test('the data account: Entra ID by URL over https only, or a connection string; never both; a clear message when neither', async () => {
  assert.throws(() => operatorStorage({}), (e: unknown) => e instanceof OperatorStorageError && /--account-url https:\/\/<account>\.blob\.core\.windows\.net/.test(e.message));
  assert.throws(() => operatorStorage({ accountUrl: 'http://127.0.0.1:1/devstoreaccount1' }), /must use https/);
  assert.throws(() => operatorStorage({ accountUrl: 'https://a.blob.core.windows.net', connectionString: az.azurite.connectionString }), /not both/);
  assert.equal(operatorStorage({ accountUrl: 'https://acct.blob.core.windows.net/' }).accountName, 'acct');
  await assert.rejects(cli(['upload', folder(), '--container', 'x'], {}, () => undefined), /no data account/);
  const said: string[] = [];
  assert.equal(await cli(['upload', folder()], { DATA_STORAGE: az.azurite.connectionString }, (l) => said.push(l)), 2);
  assert.match(said.join('\n'), /^lakeinfer upload: missing --container \(e\.g\. --container images\)/);
});

test('Entra ID path: upload and models add against an account that takes bearer tokens only (Azurite over TLS, stand-in credential)', async () => {
  const tls = { cert: join(root, 'test', 'fixtures', 'tls', 'loopback.crt'), key: join(root, 'test', 'fixtures', 'tls', 'loopback.key') };
  const secure = await startAzurite({ tls });
  try {
    const dir = folder();
    const modelDir = mkdtempSync(join(tmpdir(), 'lakeinfer-model-'));
    writeFileSync(join(modelDir, 'model.onnx'), classifierFixture());
    writeFileSync(join(modelDir, 'model.json'), JSON.stringify(classifierSpec()));
    const script = join(root, 'dist', 'test', 'helpers', 'tokenCli.js');
    // A child process: Node reads NODE_EXTRA_CA_CERTS at start, so the test certificate is trusted there.
    const run = async (...args: string[]): Promise<string> =>
      (await promisify(execFile)(process.execPath, [script, ...args], { env: { ...process.env, NODE_EXTRA_CA_CERTS: tls.cert, DATA_STORAGE: '', LAKEINFER_ACCOUNT_URL: secure.blobEndpoint }, encoding: 'utf8' })).stdout;
    const up = await run('upload', dir, '--container', 'tok-images', '--prefix', 'in/');
    assert.match(up, /uploaded 4 files/);
    assert.match(up, /tokens requested: [1-9]/, 'the stand-in credential was asked for a storage token');
    const added = await run('models', 'add', 'colours', join(modelDir, 'model.onnx'), '--json', join(modelDir, 'model.json'), '--container', 'tok-models');
    assert.match(added, /model 'colours' checked and uploaded/);
    const listed = await run('list', 'tok-images', 'tok-models');
    assert.deepEqual(JSON.parse(listed.trim().split('\n').find((l) => l.startsWith('['))!), ['colours/model.json', 'colours/model.onnx', 'in/a.png', 'in/notes.txt', 'in/sub/b.JPG', 'in/sub/deeper/c.jpeg']);
    // Without a token the account refuses (no shared-key fallback hides a broken credential path).
    const noToken = await promisify(execFile)(process.execPath, [script, 'upload', dir, '--container', 'tok-images', '--no-token'], { env: { ...process.env, NODE_EXTRA_CA_CERTS: tls.cert, DATA_STORAGE: '', LAKEINFER_ACCOUNT_URL: secure.blobEndpoint }, encoding: 'utf8' }).then(
      () => 'accepted',
      (e: { stderr: string }) => e.stderr,
    );
    assert.match(noToken, /Server failed to authenticate the request/);
  } finally {
    await secure.stop();
  }
});
