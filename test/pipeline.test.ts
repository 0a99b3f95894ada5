import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { ContainerClient } from '@azure/storage-blob';
import { ModelCache } from '../lib/model';
import { bundledTextDetectorPath, CATALOG } from '../lib/model/catalog';
import { inferPartition, partFailuresName, partResultsName, partSummaryName, type FailureRecord, type ImageResult, type PartitionDeps, type PartitionTask } from '../lib/pipeline';
import { jobPrefix, listAllBlobs, outputBlobName, readBlob, readJson, writeBlob, writeJson, writePlan } from '../lib/storage';
import { renderTextScene } from '../lib/local/textImages';
import { Canvas } from './helpers/images';
import { uniqueContainer, useAzurite } from './helpers/azurite';

const az = useAzurite();

describe('inferPartition on Azurite with the real text detector', () => {
  let input: ContainerClient;
  let output: ContainerClient;
  let models: ContainerClient;
  let deps: PartitionDeps;
  const cache = new ModelCache({ workers: 1, intraOpThreads: 2, batchSize: 2 });
  const prefix = jobPrefix('runs/', 'job-p');
  const good = ['docs/a.jpg', 'docs/b.png', 'docs/sub dir/c.jpg', 'docs/ünï.jpg'];
  const bad: Record<string, string> = { 'docs/empty.jpg': 'ImageEmpty', 'docs/corrupt.jpg': 'ImageDecodeFailed', 'docs/notes.png': 'ImageDecodeFailed', 'docs/huge.png': 'ImageTooLarge' };
  let pinned: PartitionTask['model'];
  const task = (n: number, over: Partial<PartitionTask> = {}): PartitionTask => ({ jobId: 'job-p', jobPrefix: prefix, n, model: pinned, params: {}, overlays: true, skipExisting: false, ...over });

  before(async () => {
    input = az.service.getContainerClient(uniqueContainer('in'));
    output = az.service.getContainerClient(uniqueContainer('out'));
    models = az.service.getContainerClient(uniqueContainer('models'));
    await Promise.all([input.create(), output.create(), models.create()]);
    await writeBlob(models, 'ppocr/model.onnx', await readFile(bundledTextDetectorPath()));
    await writeJson(models, 'ppocr/model.json', CATALOG['ppocr-v4-det']);
    for (const [i, name] of good.entries()) {
      const scene = { width: 480, height: 320, background: ['#ffffff', '#e8f0ff', '#fff4d6', '#202830'][i]!, lines: [{ text: `Page ${i + 1} of lakeinfer`, x: 30, y: 120, size: 36, color: i === 3 ? '#ffffff' : '#101010' }] };
      await writeBlob(input, name, await renderTextScene(scene, name.endsWith('.png') ? 'png' : 'jpeg'));
    }
    await writeBlob(input, 'docs/empty.jpg', Buffer.alloc(0));
    await writeBlob(input, 'docs/corrupt.jpg', (await new Canvas(200, 200, [40, 80, 120]).sharp().jpeg().toBuffer()).subarray(0, 300));
    await writeBlob(input, 'docs/notes.png', 'plain text pretending to be a png');
    await writeBlob(input, 'docs/huge.png', await new Canvas(300, 300, [1, 2, 3]).png());
    deps = { input, output, models, cache, ioConcurrency: 4, maxImageBytes: 20_000, maxImagePixels: 10_000_000 };
    // huge.png is over 20 kB? make sure, so the size guard is what fails it.
    const huge = await readBlob(input, 'docs/huge.png');
    assert.ok(huge!.data.length > 0);
    deps.maxImageBytes = Math.max(...(await listAllBlobs(input)).filter((b) => b.name !== 'docs/huge.png').map((b) => b.size)) + 1;
    await writeBlob(input, 'docs/huge.png', Buffer.concat([huge!.data, Buffer.alloc(deps.maxImageBytes)]));
    pinned = { name: 'ppocr', ...(await cache.current(models, 'ppocr')) };
    await writePlan(input, output, { jobId: 'job-p', jobPrefix: prefix, partitionSize: 5, extensions: ['.jpg', '.png'], model: pinned });
  });
  after(() => cache.close());

  test('every image gets a result or a failure, never both, never neither', async () => {
    const s0 = await inferPartition(deps, task(0));
    const s1 = await inferPartition(deps, task(1));
    assert.equal(s0.images + s1.images, 8);
    assert.equal(s0.succeeded + s1.succeeded, good.length);
    assert.equal(s0.failed + s1.failed, Object.keys(bad).length);
    assert.equal(s0.skipped + s1.skipped, 0);
    const failures: FailureRecord[] = [];
    for (const n of [0, 1]) {
      const text = (await readBlob(output, partFailuresName(prefix, n)))!.data.toString();
      failures.push(...text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as FailureRecord));
    }
    assert.deepEqual(Object.fromEntries(failures.map((f) => [f.blob, f.code])), bad);
    assert.equal(failures.find((f) => f.blob === 'docs/huge.png')!.stage, 'download');
    assert.equal(failures.find((f) => f.blob === 'docs/corrupt.jpg')!.stage, 'decode');
    for (const name of good) {
      const r = await readJson<ImageResult>(output, outputBlobName(prefix, 'results', name, '.json'));
      assert.ok(r, `result for ${name}`);
      assert.equal(r.source.name, name);
      assert.equal(r.width, 480);
      assert.ok(r.detections.length >= 1, `${name}: text found`);
      assert.ok(r.detections.every((d) => d.label === 'text' && d.segmentation));
      const overlay = await readBlob(output, outputBlobName(prefix, 'overlays', name, '.png'));
      assert.ok(overlay && overlay.data.subarray(1, 4).toString() === 'PNG', `overlay for ${name}`);
    }
    for (const name of Object.keys(bad)) assert.equal(await readBlob(output, outputBlobName(prefix, 'results', name, '.json')), undefined, `no result for ${name}`);
    const jsonl = [0, 1].map(async (n) => (await readBlob(output, partResultsName(prefix, n)))!.data.toString());
    const names = (await Promise.all(jsonl)).flatMap((t) => t.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as ImageResult).source.name));
    assert.deepEqual(names.sort(), [...good].sort());
  });

  test('a rerun (activity retry) overwrites the same outputs: nothing duplicated or lost', async () => {
    const before = (await listAllBlobs(output, { prefix })).map((b) => b.name).sort();
    const results0 = (await readBlob(output, partResultsName(prefix, 0)))!.data.toString();
    const again = await inferPartition(deps, task(0));
    const after = (await listAllBlobs(output, { prefix })).map((b) => b.name).sort();
    assert.deepEqual(after, before);
    const rerun = (await readBlob(output, partResultsName(prefix, 0)))!.data.toString();
    const sources = (t: string) => t.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as ImageResult).source.name);
    assert.deepEqual(sources(rerun), sources(results0));
    assert.equal(new Set(sources(rerun)).size, sources(rerun).length);
    const summary = await readJson(output, partSummaryName(prefix, 0));
    assert.deepEqual(summary, again);
  });

  test('skipExisting skips images whose result carries the same source ETag, and redoes the others', async () => {
    const first = await inferPartition(deps, task(0, { skipExisting: true }));
    assert.equal(first.succeeded, 0);
    const done = first.skipped;
    assert.ok(done >= 2, `skipped ${done}`);
    const plan0 = (await readJson<{ blobs: { name: string; etag: string }[] }>(output, `${prefix}_plan/0.json`))!;
    const [g1, g2] = plan0.blobs.map((b) => b.name).filter((n) => good.includes(n));
    // One result lost, one written from another version of its source: both are redone.
    await output.getBlobClient(outputBlobName(prefix, 'results', g1!, '.json')).delete();
    const stale = (await readJson<ImageResult>(output, outputBlobName(prefix, 'results', g2!, '.json')))!;
    await writeJson(output, outputBlobName(prefix, 'results', g2!, '.json'), { ...stale, source: { ...stale.source, etag: '"0xOLD"' } });
    const second = await inferPartition(deps, task(0, { skipExisting: true }));
    assert.equal(second.succeeded, 2);
    assert.equal(second.skipped, done - 2);
    for (const g of [g1!, g2!]) {
      const r = await readJson<ImageResult>(output, outputBlobName(prefix, 'results', g, '.json'));
      assert.equal(r!.source.etag, plan0.blobs.find((b) => b.name === g)!.etag);
    }
  });
});
