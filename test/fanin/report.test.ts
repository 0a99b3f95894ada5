/**
 * report.html: rendered for a real job, opened from disk in a real headless Chromium; and its size
 * for a job of 10,000 images.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { estimateCost, LATENCY_BOUNDS_MS, type Manifest } from '../../lib/fanin/finalize';
import { runDemo } from '../../lib/cli/demo';
import { MAX_THUMBNAILS, renderReport, throughput, type ReportSample } from '../../lib/fanin/report';
import { busySeconds } from '../../lib/fanin/finalize';
import { startLocalHost } from '../../lib/local/host/host';
import { BlobServiceClient } from '@azure/storage-blob';
import { listAllBlobs, readBlob, readJson, writeBlob, writeJson } from '../../lib/storage';
import { Canvas } from '../helpers/images';
import { classifierFixture, classifierSpec } from '../helpers/models';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
// CI installs Debian's chromium (.ci/run); elsewhere, say clearly why the browser test did not run.
const browserSkip = haveChromium ? false : process.env['CI'] ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`;

test('the demo job report opens in Chromium: no failed requests, no console errors, right counts, thumbnails render', { skip: browserSkip }, async () => {
  const outDir = await mkdtemp(join(tmpdir(), 'lakeinfer-report-'));
  const { manifest, outDir: jobDir } = await runDemo({ images: 9, quiet: true, outDir });
  // 9 pages, 3 broken files, 10 frames of the demo clip.
  assert.equal(manifest.counts.images, 22);
  assert.ok(manifest.cost.gbSeconds > 0);
  assert.equal(manifest.cost.gbSeconds, Math.round(manifest.instanceSeconds * 2 * 1000) / 1000, '2048 MB instances by default');
  const reportFile = join(jobDir, 'report.html');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const failed: string[] = [];
    const errors: string[] = [];
    const external: string[] = [];
    page.on('requestfailed', (r) => failed.push(`${r.url()}: ${r.failure()?.errorText}`));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('request', (r) => {
      if (!r.url().startsWith('file://')) external.push(r.url());
    });
    await page.goto(pathToFileURL(reportFile).href, { waitUntil: 'load' });
    // Lazy thumbnails: scroll them into view, then wait until every one has loaded.
    await page.evaluate("document.getElementById('thumbnails').scrollIntoView()");
    await page.waitForFunction("[...document.querySelectorAll('#thumbnails img')].every((i) => i.complete)", undefined, { timeout: 15_000 });
    assert.deepEqual(failed, []);
    assert.deepEqual(errors, []);
    assert.deepEqual(external, [], 'a self-contained page fetches nothing from the network');
    assert.equal(await page.textContent('#count-images'), '22');
    assert.equal(await page.textContent('#count-succeeded'), '19');
    assert.equal(await page.textContent('#count-failed'), '3');
    const sizes = await page.$$eval('#thumbnails img', (imgs) => imgs.map((i) => (i as unknown as { naturalWidth: number }).naturalWidth));
    assert.equal(sizes.length, 19, 'a thumbnail per page and per frame (overlays/<clip>.frame-<i>.png)');
    assert.ok(sizes.every((w) => w > 0), `every thumbnail rendered: ${sizes.join(', ')}`);
    assert.equal(await page.$$eval('#failures tbody tr', (r) => r.length), 3);
    assert.equal(await page.textContent('#videos h3'), 'demo/clip.mp4', "the report's video view");
    assert.equal(await page.$$eval('#videos svg rect', (r) => r.length), 3, 'a timeline bar per second of the 3-second clip');
    const shot = join(jobDir, 'report.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok((await stat(shot)).size > 20_000, 'a real screenshot');
  } finally {
    await browser.close();
  }
  const html = await readFile(reportFile, 'utf8');
  assert.doesNotMatch(html, /<script|https?:\/\//i, 'no scripts and no remote references');
});

test('a job of 10,000 images keeps report.html small', () => {
  const images = 10_000;
  const manifest: Manifest = {
    jobId: 'big',
    status: 'succeeded',
    counts: { images, succeeded: images - 40, failed: 40, skipped: 0, detections: 31_000, partitions: 157, partitionsFailed: 0 },
    failedPercent: 0.4,
    toleratedFailurePercent: 1,
    model: { name: 'yolact-resnet50', etag: 'e' },
    params: {},
    input: { container: 'images', prefix: '2026/', extensions: ['.jpg'] },
    output: { container: 'results', prefix: 'runs/', overlays: true, perImageResults: true, formats: ['jsonl', 'coco', 'parquet'], jobPrefix: 'runs/big/' },
    stageMs: { downloadMs: 1e6, decodeMs: 2e6, inferMs: 8e6, postMs: 5e5, writeMs: 7e5 },
    latencyHistogram: { boundsMs: LATENCY_BOUNDS_MS.map((b) => (Number.isFinite(b) ? b : -1)), counts: [0, 0, 10, 200, 3000, 5000, 1500, 250, 40, 0, 0] },
    submittedAt: '2026-01-01T00:00:00Z',
    startedAt: '2026-01-01T00:00:00Z',
    endedAt: '2026-01-01T00:20:00Z',
    wallSeconds: 1200,
    instanceSeconds: 12_300,
    coldStart: { modelLoads: 40, modelLoadMsTotal: 52_000, modelLoadMsMax: 2_100, firstResultMsMean: 1_400, firstResultMsMax: 2_600 },
    cost: estimateCost(12_300, { instanceMemoryMB: 4096, pricePerGbSecond: 0.000026 }),
    files: [],
  };
  const samples: ReportSample[] = Array.from({ length: MAX_THUMBNAILS }, (_, i) => ({ name: `2026/${String(i * 83).padStart(5, '0')} photo ümlaut.jpg`, overlay: `overlays/2026/${i * 83}.jpg.png`, width: 1920, height: 1080, detections: 3, labels: ['person', 'car', 'dog'] }));
  const failures = Array.from({ length: 40 }, (_, i) => ({ blob: `2026/bad-${i}.jpg`, stage: 'decode', code: 'ImageDecodeFailed', message: 'could not decode image: VipsJpeg: premature end of JPEG file <script>alert(1)</script>' }));
  const ends: [number, number][] = Array.from({ length: 157 }, (_, i) => [(i + 1) * 7.6, 64]);
  const html = renderReport({ manifest, samples, failures, failuresTotal: 40, partitionEnds: ends });
  assert.ok(html.length < 300_000, `report is ${html.length} bytes`);
  assert.equal((html.match(/<img /g) ?? []).length, MAX_THUMBNAILS);
  assert.doesNotMatch(html, /<script>alert/, 'messages are escaped');
  assert.match(html, /overlays\/2026\/0\.jpg\.png/);
  assert.match(html, /\$1\.2792/, '12,300 instance-seconds x 4 GB x $0.000026 per GB-second');
  const tp = throughput(ends);
  assert.ok(tp.length <= 40);
  const total = tp.reduce((a, [, r], i) => a + r * (tp[i]![0] - (i === 0 ? 0 : tp[i - 1]![0])), 0);
  assert.ok(Math.abs(total - 157 * 64) < 1e-6, 'the chart accounts for every image');
});

test("a first job's report with the defaults: every image of a small job shown with its overlay (overlays 'samples'), a classifier's top classes and scores, the label table", async () => {
  const host = await startLocalHost({ activityProcesses: 1, settings: { MODELS_CONTAINER: 'models' }, log: () => undefined, activityOutput: () => undefined });
  try {
    const svc = BlobServiceClient.fromConnectionString(host.connectionString);
    const models = svc.getContainerClient('models');
    await models.create();
    await writeBlob(models, 'colours/model.onnx', Buffer.from(classifierFixture()));
    await writeJson(models, 'colours/model.json', classifierSpec());
    const images = svc.getContainerClient('images');
    await images.create();
    const colours: [number, number, number][] = [[250, 10, 10], [10, 250, 10], [250, 20, 20], [10, 10, 250], [240, 5, 5], [20, 240, 20]];
    for (const [i, c] of colours.entries()) await writeBlob(images, `pics/${i}.png`, await new Canvas(16, 12, c).png());
    // No output.overlays: the default draws the report's samples.
    const r = await fetch(`${host.url}/api/jobs`, { method: 'POST', body: JSON.stringify({ jobId: 'first-report', input: { container: 'images', prefix: 'pics/' }, output: { container: 'results' }, model: { name: 'colours' }, partitionSize: 3 }) });
    assert.equal(r.status, 202);
    assert.equal((await host.engine.waitFor('first-report', 60_000)).runtimeStatus, 'Completed');
    const out = svc.getContainerClient('results');
    const m = (await readJson<Manifest>(out, 'first-report/_manifest.json'))!;
    assert.equal(m.output.overlays, 'samples');
    assert.deepEqual(m.labels, {
      kind: 'classes',
      top: [
        { label: 'red', count: 3, meanScore: m.labels!.top[0]!.meanScore },
        { label: 'green', count: 2, meanScore: m.labels!.top[1]!.meanScore },
        { label: 'blue', count: 1, meanScore: m.labels!.top[2]!.meanScore },
      ],
      scoreHistogram: m.labels!.scoreHistogram,
    });
    assert.equal(m.labels!.scoreHistogram.reduce((a, b) => a + b, 0), 6, 'one top-class score per image');
    const overlays = (await listAllBlobs(out, { prefix: 'first-report/overlays/' })).length;
    assert.equal(overlays, 6, 'a small job: every image is a sample, each with its overlay');
    const html = (await readBlob(out, 'first-report/report.html'))!.data.toString();
    assert.equal((html.match(/<img /g) ?? []).length, 6, 'all six images shown (two partitions, not three per piece)');
    assert.match(html, /Top classes \(the top class of each image\)/);
    assert.match(html, /<td>red<\/td><td>3<\/td>/);
    assert.match(html, /<b>red<\/b> 0\.\d{3}/, "a classifier's thumbnail says its top class and score");
    assert.match(html, /id="count-top-class">red</);
  } finally {
    await host.stop();
  }
});

test('busy time is the union of the partitions\' times: a continuous job\'s idle time is left out of its rate', () => {
  assert.equal(busySeconds([[0, 1000], [500, 1500], [10_000, 11_000], [10_200, 10_300]]), 2.5);
  assert.equal(busySeconds([]), 0);
});
