import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inferenceLayout, loadSettings, parseSecretUri, SETTINGS, validateContainerName } from '../../lib/util/config';
import { cgroupCpuLimit, instanceCores } from '../../lib/util/cores';
import { LakeInferError } from '../../lib/util/errors';

const CS = 'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1';

function expectSettingError(fn: () => unknown, code: string, target: string, messagePart?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof LakeInferError, `expected LakeInferError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.target, target);
    assert.match(err.message, new RegExp(target.replace(/_/g, '_')));
    if (messagePart) assert.match(err.message, messagePart);
    return true;
  });
}

test('defaults apply when only the data connection is set', () => {
  const s = loadSettings({ DATA_STORAGE: CS });
  assert.deepEqual(s.data, { kind: 'connectionString', connectionString: CS });
  assert.equal(s.taskHub, 'lakeinfer');
  assert.equal(s.modelsContainer, 'models');
  assert.equal(s.inferWorkers, 0, 'one worker per core');
  assert.equal(s.ortIntraOpThreads, 0);
  assert.equal(s.inferBatchSize, 1);
  assert.equal(s.ioConcurrency, 8);
  assert.equal(s.maxImageBytes, 64 * 1024 * 1024);
  assert.equal(s.maxImagePixels, 100_000_000);
});

test('every setting with a default parses with its default', () => {
  for (const def of SETTINGS) if (def.default !== undefined) assert.ok(def.default.length > 0, def.name);
  assert.equal(new Set(SETTINGS.map((s) => s.name)).size, SETTINGS.length, 'setting names are unique');
});

test('missing data connection names the setting', () => {
  expectSettingError(() => loadSettings({}), 'ConfigMissing', 'DATA_STORAGE', /DATA_STORAGE__serviceUri/);
  expectSettingError(() => loadSettings({ DATA_STORAGE: '   ' }), 'ConfigMissing', 'DATA_STORAGE');
});

test('two data connections at once are refused', () => {
  expectSettingError(
    () => loadSettings({ DATA_STORAGE: CS, DATA_STORAGE__serviceUri: 'https://acct.blob.core.windows.net' }),
    'ConfigInvalid',
    'DATA_STORAGE__serviceUri',
  );
});

test('service URI with managed identity client id', () => {
  const s = loadSettings({ DATA_STORAGE__serviceUri: 'https://acct.blob.core.windows.net', DATA_STORAGE__clientId: 'abc' });
  assert.deepEqual(s.data, { kind: 'serviceUri', serviceUri: 'https://acct.blob.core.windows.net', clientId: 'abc' });
  expectSettingError(() => loadSettings({ DATA_STORAGE__serviceUri: 'http://acct.blob.core.windows.net' }), 'ConfigInvalid', 'DATA_STORAGE__serviceUri', /https/);
  expectSettingError(() => loadSettings({ DATA_STORAGE__serviceUri: 'not a url' }), 'ConfigInvalid', 'DATA_STORAGE__serviceUri');
});

test('Key Vault secret URI is parsed, with and without version', () => {
  const s = loadSettings({ DATA_STORAGE_SECRET_URI: 'https://kv1.vault.azure.net/secrets/data-conn' });
  assert.deepEqual(s.data, { kind: 'keyVaultSecret', vaultUrl: 'https://kv1.vault.azure.net', secretName: 'data-conn' });
  assert.deepEqual(parseSecretUri('https://kv1.vault.azure.net/secrets/data-conn/0123abc/'), {
    vaultUrl: 'https://kv1.vault.azure.net',
    secretName: 'data-conn',
    secretVersion: '0123abc',
  });
  expectSettingError(() => loadSettings({ DATA_STORAGE_SECRET_URI: 'https://kv1.vault.azure.net/keys/x' }), 'ConfigInvalid', 'DATA_STORAGE_SECRET_URI');
  expectSettingError(() => loadSettings({ DATA_STORAGE_SECRET_URI: 'http://kv1.vault.azure.net/secrets/x' }), 'ConfigInvalid', 'DATA_STORAGE_SECRET_URI');
});

test('a connection string that is not one is refused without echoing it', () => {
  assert.throws(
    () => loadSettings({ DATA_STORAGE: 'SharedAccessSignature=sv=2020&sig=topsecret' }),
    (err: unknown) => err instanceof LakeInferError && err.target === 'DATA_STORAGE' && !err.message.includes('topsecret'),
  );
});

test('integer settings are range checked and named', () => {
  expectSettingError(() => loadSettings({ DATA_STORAGE: CS, INFER_WORKERS: 'two' }), 'ConfigInvalid', 'INFER_WORKERS', /'two'/);
  expectSettingError(() => loadSettings({ DATA_STORAGE: CS, INFER_WORKERS: '65' }), 'ConfigInvalid', 'INFER_WORKERS', /between 0 and 64/);
  expectSettingError(() => loadSettings({ DATA_STORAGE: CS, INFER_BATCH_SIZE: '1.5' }), 'ConfigInvalid', 'INFER_BATCH_SIZE');
  assert.equal(loadSettings({ DATA_STORAGE: CS, IO_CONCURRENCY: ' 16 ' }).ioConcurrency, 16);
});

test('container and task hub names are validated', () => {
  expectSettingError(() => loadSettings({ DATA_STORAGE: CS, MODELS_CONTAINER: 'Models_1' }), 'ConfigInvalid', 'MODELS_CONTAINER');
  expectSettingError(() => loadSettings({ DATA_STORAGE: CS, TASK_HUB_NAME: 'my-hub' }), 'ConfigInvalid', 'TASK_HUB_NAME');
  assert.equal(validateContainerName('abc-1', 'x'), 'abc-1');
  assert.throws(() => validateContainerName('a--b', 'x'));
  assert.throws(() => validateContainerName('ab', 'x'));
  assert.throws(() => validateContainerName('-abc', 'x'));
});

test('inference layout: one single-threaded session per core unless set', () => {
  const auto = loadSettings({ DATA_STORAGE: CS });
  assert.deepEqual(inferenceLayout(auto, 1), { workers: 1, intraOpThreads: 1 });
  assert.deepEqual(inferenceLayout(auto, 2), { workers: 2, intraOpThreads: 1 });
  assert.deepEqual(inferenceLayout(auto, 0), { workers: 1, intraOpThreads: 1 }, 'at least one');
  assert.deepEqual(inferenceLayout(loadSettings({ DATA_STORAGE: CS, INFER_WORKERS: '1' }), 4), { workers: 1, intraOpThreads: 4 }, 'one session gets every core');
  assert.deepEqual(inferenceLayout(loadSettings({ DATA_STORAGE: CS, INFER_WORKERS: '3', ORT_INTRA_OP_THREADS: '2' }), 2), { workers: 3, intraOpThreads: 2 }, 'explicit settings win');
  assert.deepEqual(inferenceLayout(loadSettings({ DATA_STORAGE: CS, INFER_WORKERS: '3' }), 2), { workers: 3, intraOpThreads: 1 });
  expectSettingError(() => loadSettings({ DATA_STORAGE: CS, INFER_WORKERS: '-1' }), 'ConfigInvalid', 'INFER_WORKERS');
});

test('instance cores: the smaller of the scheduled CPUs and the cgroup quota', () => {
  const files = (m: Record<string, string>) => (p: string): string => {
    const v = m[p];
    if (v === undefined) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    return v;
  };
  assert.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' })), undefined);
  assert.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': '150000 100000\n' })), 1.5);
  assert.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '200000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })), 2);
  assert.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })), undefined);
  assert.equal(cgroupCpuLimit(files({})), undefined);
  assert.equal(instanceCores(undefined, 8), 8);
  assert.equal(instanceCores(1, 8), 1, 'a 1-CPU container on an 8-core host');
  assert.equal(instanceCores(1.5, 8), 1);
  assert.equal(instanceCores(0.5, 8), 1, 'at least one');
  assert.equal(instanceCores(16, 4), 4);
  assert.ok(instanceCores() >= 1);
});
