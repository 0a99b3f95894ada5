/**
 * Fan-in by composition: blobs put together in storage from other blobs' byte ranges (Put Block
 * From URL), numbered past the block limit, resumable, with a copy through the process only where
 * the storage cannot stage from a URL; and finalize over synthetic partitions, whose bytes through
 * the process do not grow with the size of the results.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BlobSASPermissions, BlobServiceClient, ContainerSASPermissions, type ContainerClient } from '@azure/storage-blob';
import { connectionStringFor } from '../../lib/local/azurite/azurite';
import { finalizeJob, PartitionsToRecompute, type FinalizeInput } from '../../lib/fanin/finalize';
import { EMPTY_TOTALS } from '../../lib/job/totals';
import { LATENCY_BOUNDS_MS, partSummaryName, pieceFragmentName, type PartitionSummary } from '../../lib/partition/parts';
import { parseJobRequest } from '../../lib/job/request';
import { composeBlob, emptyComposeStats, readBlob, readJson, writeBlob, writeJson, type Part } from '../../lib/storage';
import { uniqueContainer, useAzurite } from '../helpers/azurite';

const az = useAzurite();
let c: ContainerClient;

before(async () => {
  await az.ready;
  c = az.service.getContainerClient(uniqueContainer('compose'));
  await c.create();
});

async function text(container: ContainerClient, name: string): Promise<string> {
  return (await readBlob(container, name))!.data.toString('utf8');
}

/** A proxy in front of Azurite that answers Put Block From URL with 501, as a stock Azurite does. */
async function withoutBlockFromUrl<T>(fn: (service: BlobServiceClient) => Promise<T>): Promise<{ value: T; refused: number }> {
  let refused = 0;
  const server: Server = createServer((req, res) => {
    if (req.headers['x-ms-copy-source'] && /comp=block(&|$)/.test(req.url ?? '')) {
      refused++;
      req.resume();
      res.writeHead(501, { 'content-type': 'application/xml', 'x-ms-error-code': 'NotImplemented' });
      res.end('<?xml version="1.0" encoding="utf-8"?><Error><Code>NotImplemented</Code><Message>not implemented</Message></Error>');
      return;
    }
    const up = request({ host: '127.0.0.1', port: az.azurite.blobPort, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (server.address() as AddressInfo).port;
    const value = await fn(BlobServiceClient.fromConnectionString(connectionStringFor(port, az.azurite.queuePort, az.azurite.tablePort)));
    return { value, refused };
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

describe('composeBlob', () => {
  const fragments = ['{"a":1}\n{"a":2}\n', '{"a":3}\n', '', '{"a":4}\n{"a":5}\n{"a":6}\n'];
  const parts = (): Part[] => fragments.map((f, i) => ({ key: `f${i}`, source: `frag/${i}.jsonl`, offset: 0, count: Buffer.byteLength(f) })).filter((p) => p.count > 0);
  before(async () => {
    for (const [i, f] of fragments.entries()) await writeBlob(c, `frag/${i}.jsonl`, f);
  });

  test('blocks staged from the fragments\' URLs: the bytes never pass through the process', async () => {
    const stats = emptyComposeStats();
    const names = await composeBlob(c, { name: () => 'out/all.jsonl' }, 3, parts(), { stats });
    assert.deepEqual(names, ['out/all.jsonl']);
    assert.equal(await text(c, 'out/all.jsonl'), fragments.join(''));
    assert.equal(stats.blocksFromUrl, 3);
    assert.equal(stats.bytesThroughProcess, 0);
    assert.equal(stats.bytesFromUrl, Buffer.byteLength(fragments.join('')));
    const props = await c.getBlobClient('out/all.jsonl').getProperties();
    assert.equal(props.contentType, 'application/x-ndjson; charset=utf-8');
  });

  test('a rerun reuses the staged blocks and writes the same blob', async () => {
    const stats = emptyComposeStats();
    await composeBlob(c, { name: () => 'out/all.jsonl' }, 3, parts(), { stats });
    assert.equal(stats.blocksReused, 3);
    assert.equal(stats.blocksFromUrl, 0);
    assert.equal(await text(c, 'out/all.jsonl'), fragments.join(''));
  });

  test('a JSON array from comma-first fragments: head, tail, the first comma skipped in every numbered file', async () => {
    const coco = [',\n{"id":1}', ',\n{"id":2},\n{"id":3}', ',\n{"id":4}', ',\n{"id":5}', ',\n{"id":6},\n{"id":7}'];
    for (const [i, f] of coco.entries()) await writeBlob(c, `coco/${i}.json`, f);
    const ps: Part[] = coco.map((f, i) => ({ key: `c${i}`, source: `coco/${i}.json`, offset: 0, count: Buffer.byteLength(f) }));
    const spec = { name: (i: number | undefined) => `out/coco${i === undefined ? '' : `-${i}`}.json`, head: Buffer.from('['), tail: Buffer.from('\n]\n'), skipFirst: 1 };
    const one = await composeBlob(c, spec, ps.length, ps);
    assert.deepEqual(one, ['out/coco.json']);
    assert.deepEqual((JSON.parse(await text(c, 'out/coco.json')) as { id: number }[]).map((x) => x.id), [1, 2, 3, 4, 5, 6, 7]);
    // Four blocks per blob: head, two parts, tail -> three files, each a valid array.
    const many = await composeBlob(c, spec, ps.length, ps, { maxBlocks: 4 });
    assert.deepEqual(many, ['out/coco-0.json', 'out/coco-1.json', 'out/coco-2.json']);
    const ids = [];
    for (const name of many) ids.push(...(JSON.parse(await text(c, name)) as { id: number }[]).map((x) => x.id));
    assert.deepEqual(ids, [1, 2, 3, 4, 5, 6, 7]);
    const empty = await composeBlob(c, { ...spec, name: () => 'out/empty.json' }, 0, []);
    assert.deepEqual(JSON.parse(await text(c, empty[0]!)), []);
  });

  test('a storage without Put Block From URL (a stock Azurite): the same blob, copied through the process and counted', async () => {
    const stats = emptyComposeStats();
    const { refused } = await withoutBlockFromUrl(async (svc) => composeBlob(svc.getContainerClient(c.containerName), { name: () => 'out/fallback.jsonl' }, 3, parts(), { stats }));
    assert.ok(refused >= 1 && refused <= 3, `refused ${refused} (the blocks asked for at once)`);
    assert.equal(await text(c, 'out/fallback.jsonl'), fragments.join(''));
    assert.equal(stats.fallbackCopies, 3);
    assert.equal(stats.bytesThroughProcess, Buffer.byteLength(fragments.join('')));
  });

  test('the emulator checks the source as Azure does: a tampered SAS is refused', async () => {
    const url = await c.getBlobClient('frag/0.jsonl').generateSasUrl({ permissions: BlobSASPermissions.parse('r'), expiresOn: new Date(Date.now() + 60_000) });
    const bad = url.replace(/sig=[^&]+/, 'sig=AAAA');
    // A container SAS for another container (it does not grant this one) is refused too.
    const other = az.service.getContainerClient(uniqueContainer('other'));
    await other.create();
    const foreign = `${c.getBlobClient('frag/0.jsonl').url}${new URL(await other.generateSasUrl({ permissions: ContainerSASPermissions.parse('r'), expiresOn: new Date(Date.now() + 60_000) })).search}`;
    await assert.rejects(c.getBlockBlobClient('out/x').stageBlockFromURL(Buffer.from('x'.repeat(32)).toString('base64'), foreign, 0, 4), (err: unknown) => (err as { statusCode?: number }).statusCode === 403);
    await assert.rejects(c.getBlockBlobClient('out/x').stageBlockFromURL(Buffer.from('x'.repeat(32)).toString('base64'), bad, 0, 4), (err: unknown) => (err as { statusCode?: number }).statusCode === 403);
    await c.getBlockBlobClient('out/x').stageBlockFromURL(Buffer.from('x'.repeat(32)).toString('base64'), url, 2, 4);
    await c.getBlockBlobClient('out/x').commitBlockList([Buffer.from('x'.repeat(32)).toString('base64')]);
    assert.equal(await text(c, 'out/x'), fragments[0]!.slice(2, 6), 'the range asked for');
  });
});

/**
 * Put Block From URL as Azure answers it
 * (https://learn.microsoft.com/rest/api/storageservices/put-block-from-url, "Request headers" and
 * "Authorization"; error codes from https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes).
 */
describe('the emulator\'s Put Block From URL answers as Azure does', () => {
  const id = Buffer.from('y'.repeat(32)).toString('base64');
  const body = '0123456789abcdef';
  const status = (s: number, code?: string) => (err: unknown) => (err as { statusCode?: number }).statusCode === s && (code === undefined || (err as { code?: string }).code === code);
  const sas = (ms: number, perms = 'r') => c.getBlobClient('src/a.txt').generateSasUrl({ permissions: BlobSASPermissions.parse(perms), expiresOn: new Date(Date.now() + ms) });
  const staged = async (name: string) => {
    await c.getBlockBlobClient(name).commitBlockList([id]);
    return text(c, name);
  };
  let etag = '';
  before(async () => {
    etag = (await writeBlob(c, 'src/a.txt', body)) as string;
  });

  test('Azure answers 403/404 CannotVerifyCopySource to a source URL without authorization on a private container', async () => {
    await assert.rejects(c.getBlockBlobClient('out/noauth').stageBlockFromURL(id, c.getBlobClient('src/a.txt').url, 0, 4), (err: unknown) => [403, 404].includes((err as { statusCode?: number }).statusCode ?? 0) && (err as { code?: string }).code === 'CannotVerifyCopySource');
  });

  test('Azure answers 403 to a SAS that has expired since it was first accepted (never remembered)', async () => {
    const url = await sas(1500);
    await c.getBlockBlobClient('out/exp').stageBlockFromURL(id, url, 0, 4);
    await new Promise((r) => setTimeout(r, 2500));
    await assert.rejects(c.getBlockBlobClient('out/exp').stageBlockFromURL(id, url, 0, 4), status(403, 'CannotVerifyCopySource'));
  });

  test('Azure answers 403 to a SAS without read permission, and to one whose stored access policy was revoked', async () => {
    await assert.rejects(c.getBlockBlobClient('out/w').stageBlockFromURL(id, await sas(60_000, 'w'), 0, 4), status(403, 'CannotVerifyCopySource'));
    const pc = az.service.getContainerClient(uniqueContainer('policy'));
    await pc.create();
    await writeBlob(pc, 'a.txt', body);
    await pc.setAccessPolicy(undefined, [{ id: 'readers', accessPolicy: { permissions: 'r', startsOn: new Date(Date.now() - 60_000), expiresOn: new Date(Date.now() + 3600_000) } }]);
    const url = `${pc.getBlobClient('a.txt').url}${new URL(await pc.generateSasUrl({ identifier: 'readers' })).search}`;
    await c.getBlockBlobClient('out/pol').stageBlockFromURL(id, url, 0, 4);
    await pc.setAccessPolicy(undefined, []);
    await assert.rejects(c.getBlockBlobClient('out/pol').stageBlockFromURL(id, url, 0, 4), status(403, 'CannotVerifyCopySource'));
  });

  test('a source URL naming another host is refused, never served from this account', async () => {
    const url = new URL(await sas(60_000));
    url.hostname = url.hostname === 'localhost' ? '127.0.0.1' : 'localhost';
    await assert.rejects(c.getBlockBlobClient('out/host').stageBlockFromURL(id, url.toString(), 0, 4), status(404, 'CannotVerifyCopySource'));
  });

  test('Azure answers 412 SourceConditionNotMet when x-ms-source-if-match / -if-none-match / -if-modified-since / -if-unmodified-since do not hold', async () => {
    const url = await sas(60_000);
    const b = c.getBlockBlobClient('out/cond');
    // The SDK's BlockBlobClient.stageBlockFromURL sends no source conditions; its generated
    // operation (the REST call as specified) does.
    type Conditions = { sourceIfMatch?: string; sourceIfNoneMatch?: string; sourceIfModifiedSince?: Date; sourceIfUnmodifiedSince?: Date };
    const op = (b as unknown as { blockBlobContext: { stageBlockFromURL(id: string, len: number, url: string, o: { sourceRange: string; sourceModifiedAccessConditions: Conditions }): Promise<unknown> } }).blockBlobContext;
    const stage = (cond: Conditions) => op.stageBlockFromURL(id, 0, url, { sourceRange: 'bytes=0-3', sourceModifiedAccessConditions: cond });
    await assert.rejects(stage({ sourceIfMatch: '"0x8D0000000000000"' }), status(412, 'SourceConditionNotMet'));
    await assert.rejects(stage({ sourceIfNoneMatch: `"${etag}"` }), status(412, 'SourceConditionNotMet'));
    await assert.rejects(stage({ sourceIfModifiedSince: new Date(Date.now() + 3600_000) }), status(412, 'SourceConditionNotMet'));
    await assert.rejects(stage({ sourceIfUnmodifiedSince: new Date(Date.now() - 3600_000) }), status(412, 'SourceConditionNotMet'));
    await stage({ sourceIfMatch: `"${etag}"`, sourceIfNoneMatch: '"other"', sourceIfUnmodifiedSince: new Date(Date.now() + 3600_000) });
    assert.equal(await staged('out/cond'), body.slice(0, 4));
  });

  test('Azure answers 400 Md5Mismatch when x-ms-source-content-md5 is not the MD5 of the range read', async () => {
    const url = await sas(60_000);
    const b = c.getBlockBlobClient('out/md5');
    await assert.rejects(b.stageBlockFromURL(id, url, 4, 4, { sourceContentMD5: createHash('md5').update('nope').digest() }), status(400, 'Md5Mismatch'));
    await b.stageBlockFromURL(id, url, 4, 4, { sourceContentMD5: createHash('md5').update(body.slice(4, 8)).digest() });
    assert.equal(await staged('out/md5'), body.slice(4, 8));
  });

  test('x-ms-source-range follows HTTP: bytes=N- is from N to the end; a range past the end is 416', async () => {
    const url = await sas(60_000);
    await c.getBlockBlobClient('out/open').stageBlockFromURL(id, url, 5);
    assert.equal(await staged('out/open'), body.slice(5));
    await assert.rejects(c.getBlockBlobClient('out/past').stageBlockFromURL(id, url, body.length + 3, 2), status(416));
  });
});

describe('finalize by composition', () => {
  const job = parseJobRequest({ jobId: 'fin', input: { container: 'images' }, output: { container: 'results' }, model: { name: 'm' }, partitionSize: 4 }, new Date('2026-01-01T00:00:00Z'));

  /** Writes `partitions` synthetic partitions whose results lines are `lineBytes` long; partition 3 has no summary (failed). */
  async function synthetic(container: ContainerClient, partitions: number, lineBytes: number): Promise<void> {
    const pad = 'x'.repeat(lineBytes);
    for (let n = 0; n < partitions; n++) {
      if (n === 3) continue;
      const results = Array.from({ length: 4 }, (_, i) => JSON.stringify({ source: { name: `img/${n}-${i}.jpg` }, pad })).join('\n') + '\n';
      const coco = Array.from({ length: 4 }, (_, i) => `,\n${JSON.stringify({ image_id: n * 4 + i + 1, category_id: 1, bbox: [0, 0, 1, 1], score: 0.5 })}`).join('');
      const failures = n % 5 === 0 ? `${JSON.stringify({ blob: `img/${n}-bad.jpg`, stage: 'decode', code: 'ImageDecodeFailed', message: 'bad' })}\n` : '';
      const frag = async (kind: 'results' | 'coco' | 'failures', body: string) => ({ bytes: Buffer.byteLength(body), etag: (await writeBlob(container, pieceFragmentName(job.jobPrefix, n, 0, kind), body)) as string });
      const summary: PartitionSummary = {
        n,
        images: 4,
        succeeded: 4,
        failed: failures ? 1 : 0,
        skipped: 0,
        detections: 4,
        stageMs: { downloadMs: 1, decodeMs: 1, inferMs: 1, postMs: 1, writeMs: 1 },
        wallMs: 10,
        startedAt: '2026-01-01T00:00:01.000Z',
        endedAt: '2026-01-01T00:00:02.000Z',
        latencyCounts: LATENCY_BOUNDS_MS.map((_, i) => (i === 2 ? 4 : 0)),
        samples: [{ name: `img/${n}-0.jpg`, width: 1, height: 1, detections: 1, labels: ['a'] }],
        failureHead: [],
        pieces: [{ from: 0, to: 4, results: await frag('results', results), coco: await frag('coco', coco), failures: await frag('failures', failures) }],
        model: { etag: 'e', jsonEtag: 'j' },
        planEtag: 'p',
        run: 'r',
      };
      await writeJson(container, partSummaryName(job.jobPrefix, n), summary);
    }
  }

  const input = (partitions: number): FinalizeInput => ({
    job,
    status: 'succeeded',
    totals: { ...EMPTY_TOTALS, partitionsDone: partitions - 1, partitionsFailed: 1, images: partitions * 4, succeeded: (partitions - 1) * 4, failed: 4 },
    partitions,
    failedPartitions: [{ n: 3, code: 'PartitionFailed', message: 'storage unreachable' }],
    model: { name: 'm', etag: 'e' },
    startedAt: '2026-01-01T00:00:00.000Z',
    endedAt: '2026-01-01T00:00:03.000Z',
  });

  test('results.jsonl, coco_results.json and _failures.jsonl are composed in storage; numbered past the block limit; bytes through the process do not grow with the results', async () => {
    const through: number[] = [];
    for (const lineBytes of [10, 20_000]) {
      const out = az.service.getContainerClient(uniqueContainer('fin'));
      await out.create();
      await synthetic(out, 30, lineBytes);
      const m = await finalizeJob(out, input(30), { instanceMemoryMB: 2048, pricePerGbSecond: 0.000026 }, { maxBlocks: 12 });
      through.push(m.stats.bytesThroughProcess);
      assert.equal(m.stats.fallbackCopies, 0);
      assert.equal(m.stats.summaries, 29);
      const results = m.files.filter((f) => /results(-\d+)?\.jsonl$/.test(f));
      assert.deepEqual(results, [0, 1, 2].map((i) => `fin/results-0000${i}.jsonl`), '29 fragments at 12 blocks per file');
      const lines = (await Promise.all(results.map((f) => text(out, f)))).join('').split('\n').filter(Boolean);
      assert.equal(lines.length, 29 * 4);
      assert.deepEqual(lines.map((l) => (JSON.parse(l) as { source: { name: string } }).source.name).slice(0, 5), ['img/0-0.jpg', 'img/0-1.jpg', 'img/0-2.jpg', 'img/0-3.jpg', 'img/1-0.jpg'], 'in partition order');
      const coco = m.files.filter((f) => /coco_results(-\d+)?\.json$/.test(f));
      assert.equal(coco.length, 3, 'ten fragments and the brackets per file');
      const anns = (await Promise.all(coco.map(async (f) => JSON.parse(await text(out, f)) as { image_id: number }[]))).flat();
      assert.equal(anns.length, 29 * 4);
      assert.equal(new Set(anns.map((a) => a.image_id)).size, 29 * 4);
      const failures = (await Promise.all(m.files.filter((f) => /_failures(-\d+)?\.jsonl$/.test(f)).map((f) => text(out, f)))).join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { blob: string; code: string });
      assert.deepEqual(failures.filter((f) => f.blob === '(partition 3)').map((f) => f.code), ['PartitionFailed']);
      assert.equal(failures.length, 1 + 6, 'the failed partition and one bad image in every fifth');
      assert.ok(m.files.includes('fin/_manifest.json') && m.files.includes('fin/report.html'));
    }
    assert.equal(through[0], through[1], `bytes through the process: ${through.join(' vs ')}`);
    assert.ok(through[0]! < 1024, 'only the brackets and the failed partition line');
  });
  test('a fragment rewritten after its summary recorded it is never composed: finalize forgets that partition (it runs again) and says what it had counted', async () => {
    for (const how of ['by etag (a summary without MD5s)', 'by MD5 (checked by storage as it copies)']) {
      const out = az.service.getContainerClient(uniqueContainer('forged'));
      await out.create();
      await synthetic(out, 6, 10);
      if (how.startsWith('by MD5')) {
        // The summaries as the pipeline writes them now: each fragment's MD5 beside its ETag.
        for (const n of [0, 1, 2, 4, 5]) {
          const sm = (await readJson<PartitionSummary>(out, partSummaryName(job.jobPrefix, n)))!;
          for (const p of sm.pieces) for (const k of ['results', 'coco', 'failures'] as const) p[k].md5 = createHash('md5').update((await readBlob(out, pieceFragmentName(job.jobPrefix, n, p.from, k)))!.data).digest('base64');
          await writeJson(out, partSummaryName(job.jobPrefix, n), sm);
        }
      }
      const forged = pieceFragmentName(job.jobPrefix, 2, 0, 'results');
      const original = await text(out, forged);
      // Same length (the recorded byte count still fits), other bytes: a forged line.
      await writeBlob(out, forged, original.replace('img/2-0.jpg', 'img/9-9.jpg'));
      const err = await finalizeJob(out, input(6), { instanceMemoryMB: 2048, pricePerGbSecond: 0.000026 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof PartitionsToRecompute, `${how}: ${String(err)}`);
      assert.equal(err.code, 'FragmentChanged');
      assert.deepEqual(err.partitions, [{ n: 2, counts: { images: 4, succeeded: 4, failed: 0, skipped: 0, detections: 4, wallMs: 10 } }]);
      assert.match(err.message, /fin\/_parts\/2\/0\.results\.jsonl.*partition 2 will run again/);
      assert.equal(await readBlob(out, partSummaryName(job.jobPrefix, 2)), undefined, `${how}: its summary is gone, so the partition runs again`);
      assert.ok(await readBlob(out, partSummaryName(job.jobPrefix, 1)), 'the others stay');
      const composed = await readBlob(out, 'fin/results.jsonl');
      assert.ok(!composed || !composed.data.toString().includes('img/9-9.jpg'), `${how}: the forged line is nowhere`);
      assert.equal(await readBlob(out, 'fin/_manifest.json'), undefined, 'no manifest for a job whose fan-in did not complete');
    }
  });
});
