import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { healthDetailsHandler, healthHandler } from '../../functions/health';
import { loadSettings, resetSettingsCache } from '../../lib/util/config';
import { checkHealth } from '../../lib/api/health';
import { createDataServiceClient, resetDataService } from '../../lib/storage';
import { useAzurite } from '../helpers/azurite';

const az = useAzurite();

test('health: anonymous answer says ok or unavailable only; the keyed details name the missing setting, then 200 once storage and models exist', async () => {
  const saved = { ...process.env };
  try {
    delete process.env['DATA_STORAGE'];
    resetSettingsCache();
    resetDataService();
    const req = new HttpRequest({ method: 'GET', url: 'http://127.0.0.1/api/health' });
    let res = await healthDetailsHandler(req, new InvocationContext());
    assert.equal(res.status, 503);
    assert.match(JSON.stringify(res.jsonBody), /DATA_STORAGE/);
    const anon = await healthHandler(req, new InvocationContext());
    assert.equal(anon.status, 503);
    assert.deepEqual(anon.jsonBody, { status: 'unavailable' }, 'no setting, vault or container names to anonymous callers');

    process.env['DATA_STORAGE'] = az.azurite.connectionString;
    process.env['MODELS_CONTAINER'] = 'health-models';
    resetSettingsCache();
    res = await healthDetailsHandler(req, new InvocationContext());
    assert.equal(res.status, 503);
    assert.match(JSON.stringify(res.jsonBody), /health-models/);
    assert.doesNotMatch(JSON.stringify((await healthHandler(req, new InvocationContext())).jsonBody), /health-models/);

    await az.service.getContainerClient('health-models').create();
    res = await healthDetailsHandler(req, new InvocationContext());
    assert.equal(res.status, 200);
    assert.deepEqual((res.jsonBody as { ok: boolean }).ok, true);
    res = await healthHandler(req, new InvocationContext());
    assert.equal(res.status, 200);
    assert.deepEqual(res.jsonBody, { status: 'ok' });
  } finally {
    process.env = saved;
    resetSettingsCache();
    resetDataService();
  }
});

test('unreachable storage is reported, not thrown', async () => {
  const env = { DATA_STORAGE: 'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:9/devstoreaccount1' };
  const report = await checkHealth(
    () => loadSettings(env),
    (s) => createDataServiceClient(s.data, { pipeline: { retryOptions: { maxTries: 1 } } }),
  );
  assert.equal(report.ok, false);
  assert.equal(report.checks.find((c) => c.name === 'data storage')?.ok, false);
});
