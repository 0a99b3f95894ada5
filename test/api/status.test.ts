/**
 * GET /api/jobs/{id} of a running job: the outcome file (a cancel) is read at most once per
 * OUTCOME_TTL_MS however often a client polls, and a cancel accepted by this process shows at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlobServiceClient } from '@azure/storage-blob';
import { cancelJob, jobStatus } from '../../lib/api/jobs';
import type { InstanceStatus, JobClient } from '../../lib/api/client';
import type { JobView } from '../../lib/api/jobs';
import { parseJobRequest } from '../../lib/job/request';
import { useAzurite } from '../helpers/azurite';

const az = useAzurite();

test('status polls of a running job read its outcome once per 2 s; a cancel accepted here reads cancelling at once', async () => {
  const service = BlobServiceClient.fromConnectionString(az.azurite.connectionString);
  await service.getContainerClient('status-out').createIfNotExists();
  const job = parseJobRequest({ jobId: 'poll-1', input: { container: 'status-in' }, output: { container: 'status-out' }, model: { name: 'm' } });
  let runtimeStatus: InstanceStatus['runtimeStatus'] = 'Running';
  const client: JobClient = {
    start: async () => undefined,
    status: async (id) => ({ instanceId: id, runtimeStatus, input: { job } }),
    terminate: async () => undefined,
    raiseEvent: async () => undefined,
    purge: async () => false,
    list: async () => [],
  };
  let storageUses = 0;
  const opts = { storage: async (): Promise<BlobServiceClient> => (storageUses++, service) };
  const poll = async (): Promise<JobView> => (await jobStatus(client, 'poll-1', 'http://127.0.0.1', opts)).body as JobView;
  for (let i = 0; i < 10; i++) assert.equal((await poll()).status, 'running');
  assert.equal(storageUses, 1, 'ten polls, one outcome read');

  const c = await cancelJob(client, 'poll-1', 'http://127.0.0.1', opts);
  assert.equal(c.status, 202);
  assert.equal((c.body as JobView).status, 'cancelling');
  const uses = storageUses;
  assert.equal((await poll()).status, 'cancelling', 'the cancel this process accepted, at once');
  assert.equal(storageUses, uses, 'known without reading storage again');

  // After the cache's 2 s a poll reads the outcome again (another instance's cancel shows by then).
  await new Promise((r) => setTimeout(r, 2100));
  assert.equal((await poll()).status, 'cancelling');
  assert.equal(storageUses, uses + 1);
  runtimeStatus = 'Terminated';
  assert.equal((await poll()).status, 'cancelled');
});
