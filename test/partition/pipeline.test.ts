import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { ContainerClient } from '@azure/storage-blob';
import { ModelCache } from '../../lib/model';
import { bundledTextDetectorPath, CATALOG } from '../../lib/model/catalog';
import { inferPartition, type FailureRecord, type ImageResult, type PartitionDeps, type PartitionSummary, type PartitionTask } from '../../lib/partition/pipeline';
import { partSummaryName, pieceFragmentName } from '../../lib/partition/parts';
import { jobPrefix, listAllBlobs, outputBlobName, readBlob, readJson, writeBlob, writeJson, writePlan } from '../../lib/storage';
import { renderTextScene } from '../../lib/cli/textImages';
import { Canvas } from '../helpers/images';
import { uniqueContainer, useAzurite } from '../helpers/azurite';

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
  /** Runs a whole partition (one piece: no time budget here). */
  const whole = async (t: PartitionTask): Promise<PartitionSummary & { resumed: boolean }> => {
    const r = await inferPartition(deps, t);
    assert.equal(r.done, true);
    return { ...(r as { summary: PartitionSummary }).summary, resumed: (r as { resumed: boolean }).resumed };
  };
  /** A partition's fragment, by the name its summary recorded (each attempt writes its own). */
  const fragmentName = async (p: string, n: number, kind: 'results' | 'failures'): Promise<string> => {
    const s = (await readJson<PartitionSummary>(output, partSummaryName(p, n)))!;
    const name = s.pieces[0]![kind].name!;
    assert.ok(name.startsWith(pieceFragmentName(p, n, 0, kind).replace(/\.[a-z]+\.jsonl$/, '.')), name);
    return name;
  };
  const partFailuresName = (p: string, n: number) => fragmentName(p, n, 'failures');
  const partResultsName = (p: string, n: number) => fragmentName(p, n, 'results');

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
    const s0 = await whole(task(0));
    const s1 = await whole(task(1));
    assert.equal(s0.images + s1.images, 8);
    assert.equal(s0.succeeded + s1.succeeded, good.length);
    assert.equal(s0.failed + s1.failed, Object.keys(bad).length);
    assert.equal(s0.skipped + s1.skipped, 0);
    const failures: FailureRecord[] = [];
    for (const n of [0, 1]) {
      const text = (await readBlob(output, await partFailuresName(prefix, n)))!.data.toString();
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
    const jsonl = [0, 1].map(async (n) => (await readBlob(output, await partResultsName(prefix, n)))!.data.toString());
    const names = (await Promise.all(jsonl)).flatMap((t) => t.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as ImageResult).source.name));
    assert.deepEqual(names.sort(), [...good].sort());
  });

  test('overlays "samples" (the default): only the report\'s samples get overlays, at evenly spaced places; labels and scores are tallied for the report', async () => {
    const p = jobPrefix('runs/', 'job-s');
    await writePlan(input, output, { jobId: 'job-s', jobPrefix: p, partitionSize: 8, extensions: ['.jpg', '.png'], model: pinned });
    const s = await whole(task(0, { jobId: 'job-s', jobPrefix: p, overlays: 'samples', samples: 4 }));
    // Places 0, 2, 4, 6 of the partition (in name order): a.jpg, corrupt.jpg, huge.png, sub dir/c.jpg; two of them failed.
    assert.deepEqual(s.samples.map((x) => x.name), ['docs/a.jpg', 'docs/sub dir/c.jpg']);
    assert.ok(s.samples.every((x) => x.overlay && x.detections > 0));
    const overlays = (await listAllBlobs(output, { prefix: `${p}overlays/` })).map((b) => b.name.slice(p.length)).sort();
    assert.deepEqual(overlays, ['overlays/docs/a.jpg.png', 'overlays/docs/sub dir/c.jpg.png'], 'overlays for the samples only');
    assert.deepEqual(Object.keys(s.labels!), ['text']);
    assert.equal(s.labels!['text']![0], s.detections);
    assert.equal(s.scoreBins!.reduce((a, b) => a + b, 0), s.detections);
    const none = await whole(task(0, { jobId: 'job-s', jobPrefix: p, overlays: false, samples: 4, run: 'again' }));
    assert.ok(none.samples.length > 0 && none.samples.every((x) => x.overlay === undefined), 'overlays false: samples without overlays');
  });

  test('a rerun (activity retry) overwrites the same outputs: nothing duplicated or lost', async () => {
    const before = (await listAllBlobs(output, { prefix })).map((b) => b.name).sort();
    const results0 = (await readBlob(output, await partResultsName(prefix, 0)))!.data.toString();
    const again = await whole(task(0));
    const after = (await listAllBlobs(output, { prefix })).map((b) => b.name).sort();
    assert.deepEqual(after, before);
    const rerun = (await readBlob(output, await partResultsName(prefix, 0)))!.data.toString();
    const sources = (t: string) => t.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as ImageResult).source.name);
    assert.deepEqual(sources(rerun), sources(results0));
    assert.equal(new Set(sources(rerun)).size, sources(rerun).length);
    const summary = await readJson(output, partSummaryName(prefix, 0));
    assert.deepEqual({ ...(summary as object), resumed: false }, again);
  });

  test('skipExisting: a complete partition (same model, same plan) is not run again, without touching its images', async () => {
    const stored = (await readJson<PartitionSummary>(output, partSummaryName(prefix, 0)))!;
    // Its results gone: a partition-level resume does not even look at them.
    const plan0 = (await readJson<{ blobs: { name: string; etag: string }[] }>(output, `${prefix}_plan/0.json`))!;
    const [g1] = plan0.blobs.map((b) => b.name).filter((n) => good.includes(n));
    const kept = (await readBlob(output, outputBlobName(prefix, 'results', g1!, '.json')))!;
    await output.getBlobClient(outputBlobName(prefix, 'results', g1!, '.json')).delete();
    // This run delivered again (the same run): its own summary, not recomputed, not counted as skipped.
    const same = await whole(task(0, { skipExisting: false }));
    assert.equal(same.resumed, false);
    assert.deepEqual({ ...same, resumed: undefined }, { ...stored, resumed: undefined });
    // A later run of the job with skipExisting: resumed.
    const r = await whole(task(0, { skipExisting: true, run: 'a-later-run' }));
    assert.equal(r.resumed, true);
    assert.deepEqual({ ...r, resumed: undefined }, { ...stored, resumed: undefined });
    assert.equal(await readBlob(output, outputBlobName(prefix, 'results', g1!, '.json')), undefined, 'not recomputed');
    await writeBlob(output, outputBlobName(prefix, 'results', g1!, '.json'), kept.data);
    // A summary made with another model version (or plan) is not this partition's: it runs again.
    await writeJson(output, partSummaryName(prefix, 0), { ...stored, model: { ...stored.model, etag: '0xOTHER' } });
    const again = await whole(task(0, { skipExisting: true }));
    assert.equal(again.resumed, false);
    assert.equal(again.model.etag, pinned.etag);
  });

  test('skipExisting: a partial partition (no summary) skips images whose result carries the same source ETag, and redoes the others', async () => {
    await output.getBlobClient(partSummaryName(prefix, 0)).delete();
    const first = await whole(task(0, { skipExisting: true }));
    assert.equal(first.resumed, false);
    assert.equal(first.succeeded, 0);
    const done = first.skipped;
    assert.ok(done >= 2, `skipped ${done}`);
    const plan0 = (await readJson<{ blobs: { name: string; etag: string }[] }>(output, `${prefix}_plan/0.json`))!;
    const [g1, g2] = plan0.blobs.map((b) => b.name).filter((n) => good.includes(n));
    // One result lost, one written from another version of its source: both are redone.
    await output.getBlobClient(outputBlobName(prefix, 'results', g1!, '.json')).delete();
    const stale = (await readJson<ImageResult>(output, outputBlobName(prefix, 'results', g2!, '.json')))!;
    await writeJson(output, outputBlobName(prefix, 'results', g2!, '.json'), { ...stale, source: { ...stale.source, etag: '"0xOLD"' } });
    await output.getBlobClient(partSummaryName(prefix, 0)).delete();
    const second = await whole(task(0, { skipExisting: true }));
    assert.equal(second.succeeded, 2);
    assert.equal(second.skipped, done - 2);
    for (const g of [g1!, g2!]) {
      const r = await readJson<ImageResult>(output, outputBlobName(prefix, 'results', g, '.json'));
      assert.equal(r!.source.etag, plan0.blobs.find((b) => b.name === g)!.etag);
    }
  });

  test('a time budget ends a piece early; continuations finish the partition; the summary covers every image once', async () => {
    const slow = { ...deps, budgetMs: 1, ioConcurrency: 1 };
    const t = task(0, { jobPrefix: jobPrefix('runs/', 'job-budget'), run: 'r1' });
    await writePlan(input, output, { jobId: 'job-budget', jobPrefix: t.jobPrefix, partitionSize: 5, extensions: ['.jpg', '.png'], model: pinned });
    const froms: number[] = [];
    let r = await inferPartition(slow, t);
    for (let guard = 0; !r.done && guard < 10; guard++) {
      froms.push(r.next);
      assert.equal(r.piece.images, 1, 'one image per piece at a 1 ms budget');
      r = await inferPartition(slow, { ...t, from: r.next });
    }
    assert.equal(r.done, true);
    assert.deepEqual(froms, [1, 2, 3, 4]);
    const s = (r as { summary: PartitionSummary }).summary;
    assert.equal(s.images, 5);
    assert.deepEqual(s.pieces.map((p) => [p.from, p.to]), [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]]);
    const lines = (await Promise.all(s.pieces.map(async (p) => (p.results.bytes ? (await readBlob(output, p.results.name!))!.data.toString() : '')))).join('').split('\n').filter(Boolean);
    assert.equal(lines.length, s.succeeded);
  });

  test('attempts are counted in storage: past maxAttempts a piece fails for good (AttemptsExhausted) instead of running again', async () => {
    const t = task(1, { run: 'run-attempts', maxAttempts: 2 });
    // Attempts that never completed (their process died before the summary, written last).
    const incomplete = async () => {
      await whole(t);
      await output.getBlobClient(partSummaryName(prefix, 1)).delete();
    };
    await incomplete();
    await incomplete();
    await assert.rejects(inferPartition(deps, t), (err: unknown) => (err as { code?: string }).code === 'AttemptsExhausted' && /attempted 3 times, more than its 2 attempts/.test((err as Error).message));
    // A complete partition delivered again is returned, whatever its count.
    await whole({ ...t, run: 'run-complete' });
    assert.equal((await whole({ ...t, run: 'run-complete', maxAttempts: 0 })).images, 3);
    // A new run of the job counts from one again.
    assert.equal((await whole({ ...t, run: 'run-2' })).images, 3);
  });
});
