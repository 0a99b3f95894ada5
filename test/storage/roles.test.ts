/**
 * The first minutes after a deployment: role assignments still propagating answer 403. A loopback
 * proxy in front of a real Azurite answers 403 AuthorizationPermissionMismatch (as Azure Storage
 * does for a missing data role) until it is told the roles arrived.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BlobServiceClient } from '@azure/storage-blob';
import { storageError } from '../../lib/storage';
import { isAuthorizationDenied, whileRolesPropagate, type RolePropagation } from '../../lib/storage/roles';
import { uniqueContainer, useAzurite } from '../helpers/azurite';

const az = useAzurite();

/** Forwards to Azurite, or answers 403 while `denying` is true. */
async function rbacProxy(target: number): Promise<{ port: number; denied: () => number; grant: () => void; close: () => Promise<void> }> {
  let denying = true;
  let denied = 0;
  const server = createServer((req, res) => {
    if (denying) {
      denied++;
      req.resume();
      res.writeHead(403, { 'content-type': 'application/xml', 'x-ms-error-code': 'AuthorizationPermissionMismatch' });
      res.end('<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized to perform this operation using this permission.</Message></Error>');
      return;
    }
    const up = request({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => req.socket.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    denied: () => denied,
    grant: () => (denying = false),
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

function viaProxy(port: number): BlobServiceClient {
  const cs = az.azurite.connectionString.replace(/BlobEndpoint=http:\/\/127\.0\.0\.1:\d+/, `BlobEndpoint=http://127.0.0.1:${port}`);
  return BlobServiceClient.fromConnectionString(cs, { retryOptions: { maxTries: 1 } });
}

test('a 403 inside the propagation window is waited out with backoff and logged; the operation then succeeds', async () => {
  const proxy = await rbacProxy(az.azurite.blobPort);
  try {
    const name = uniqueContainer('roles');
    await az.service.getContainerClient(name).create();
    const svc = viaProxy(proxy.port);
    const logs: string[] = [];
    const sleeps: number[] = [];
    let clock = 1_000_000;
    const p: RolePropagation = {
      startedAt: clock - 5_000, // the instance started 5 s ago
      windowMs: 600_000,
      firstDelayMs: 2_000,
      maxDelayMs: 30_000,
      log: (m) => logs.push(m),
      now: () => clock,
      sleep: async (ms) => {
        sleeps.push(ms);
        clock += ms;
        if (sleeps.length === 4) proxy.grant(); // the role assignment reached storage
      },
    };
    const text = await whileRolesPropagate('planJob', async () => {
      await svc.getContainerClient(name).getBlockBlobClient('a.txt').upload('hello', 5);
      return (await svc.getContainerClient(name).getBlobClient('a.txt').downloadToBuffer()).toString();
    }, p);
    assert.equal(text, 'hello');
    assert.deepEqual(sleeps, [2_000, 4_000, 8_000, 16_000]);
    assert.equal(proxy.denied(), 4);
    assert.equal(logs.length, 4);
    assert.match(logs[0]!, /planJob: storage or Key Vault answered 403 \(AuthorizationPermissionMismatch\); waiting for role assignments to propagate/);
  } finally {
    await proxy.close();
  }
});

test('a 403 after the window is a missing role: it fails at once, not retried', async () => {
  const proxy = await rbacProxy(az.azurite.blobPort);
  try {
    const svc = viaProxy(proxy.port);
    let calls = 0;
    const p: RolePropagation = { startedAt: 0, windowMs: 600_000, firstDelayMs: 1, maxDelayMs: 1, log: () => assert.fail('no wait'), now: () => 700_000, sleep: () => assert.fail('no wait') };
    await assert.rejects(
      whileRolesPropagate('x', async () => {
        calls++;
        await svc.getContainerClient('any').exists();
      }, p),
      (err: unknown) => isAuthorizationDenied(err),
    );
    assert.equal(calls, 1);
    // A storage failure translated for the job (the pipeline's per-image path) keeps its cause: still recognised.
    let wrapped: unknown;
    try {
      await svc.getContainerClient('any').getBlobClient('x.jpg').download();
    } catch (err) {
      wrapped = storageError(err, 'downloading image', 'any/x.jpg');
    }
    assert.ok(isAuthorizationDenied(wrapped));
    // Other failures are not taken for propagation.
    assert.equal(isAuthorizationDenied(Object.assign(new Error('x'), { statusCode: 403, code: 'AuthenticationFailed' })), false);
    assert.equal(isAuthorizationDenied(Object.assign(new Error('x'), { statusCode: 404, code: 'BlobNotFound' })), false);
  } finally {
    await proxy.close();
  }
});
