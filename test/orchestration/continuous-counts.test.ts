/**
 * Issue 28: a failed partition's images come from the plan's layout, never from arithmetic that
 * assumes every earlier partition full. Through the real engine and the real orchestrator, with
 * stand-in activities that model the plan and the collect as lib/continuous/collect.ts numbers them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DurableEngine } from '../../lib/local/durable/engine';
import type { RegisteredFunction } from '../../lib/local/functions/functionsHost';
import { parseJobRequest } from '../../lib/job/request';
import { addSegment, partitionImages, pruneSegments, type Segment } from '../../lib/job/layout';
import { seeded } from '../../lib/local/durable/random';
import { registeredFunctions } from '../helpers/host';

const orchestrator = registeredFunctions().get('inferenceJob')!;
const fake = (name: string, handler: (input: unknown) => unknown): RegisteredFunction => ({ name, bindings: {}, trigger: { name: 't', type: 'activityTrigger' }, handler: async (i: unknown) => handler(i) });
const retry = { firstRetryMs: 1, maxAttempts: 1, backoffCoefficient: 1, maxRetryMs: 1 };

interface World {
  /** Images of each partition, as the plan records them (the initial plan, then each batch). */
  sizes: number[];
  /** Partitions that fail for good. */
  failing: Set<number>;
  finals: { totals: { images: number; failed: number; succeeded: number; partitionsFailed: number } }[];
}

/**
 * A continuous job: the initial plan holds `initial` images; look k brings looks[k] images, planned
 * in partitions of `size` after the existing ones (the layout lib/continuous/collect.ts writes); then a stop.
 */
function continuousWorld(size: number, initial: number, looks: number[], failing: (n: number) => boolean): { fns: Map<string, RegisteredFunction>; world: World } {
  const world: World = { sizes: [], failing: new Set(), finals: [] };
  const lay = (images: number): void => {
    for (let left = images; left > 0; left -= size) world.sizes.push(Math.min(size, left));
  };
  lay(initial);
  let look = 0;
  const fns = new Map<string, RegisteredFunction>([
    ['inferenceJob', orchestrator],
    ['planJob', fake('planJob', () => ({ ok: true, value: { partitions: world.sizes.length, total: initial, bytes: 0, model: { name: 'm', etag: 'e', jsonEtag: 'j' } } }))],
    ['inferPartition', fake('inferPartition', (i) => {
      const n = (i as { n: number }).n;
      if (failing(n)) {
        world.failing.add(n);
        return { ok: false, error: { code: 'InferenceFailed', message: `partition ${n} broke` } };
      }
      const images = world.sizes[n]!;
      return { ok: true, value: { n, done: true, images, succeeded: images, failed: 0, skipped: 0, detections: 0, wallMs: 1 } };
    })],
    ['collectArrivals', fake('collectArrivals', (i) => {
      const c = i as { partitions: number; total: number; cursor: string };
      if (look >= looks.length) return { ok: true, value: { stopped: true, partitions: c.partitions, total: c.total, cursor: c.cursor, images: 0 } };
      const images = looks[look++]!;
      lay(images);
      return { ok: true, value: { stopped: false, partitions: world.sizes.length, total: c.total + images, cursor: `c${look}`, images } };
    })],
    ['finalizeJob', fake('finalizeJob', (i) => {
      const f = i as { status: string; provisional?: boolean; totals: World['finals'][number]['totals'] };
      if (!f.provisional) world.finals.push({ totals: f.totals });
      return { ok: true, value: { status: f.status, counts: f.totals, files: [] } };
    })],
  ]);
  return { fns, world };
}

async function runContinuous(size: number, initial: number, looks: number[], failing: (n: number) => boolean, engineOpts: ConstructorParameters<typeof DurableEngine>[1] = {}): Promise<World> {
  const job = parseJobRequest({ jobId: 'cc', mode: 'continuous', pollSeconds: 1, input: { container: 'images' }, output: { container: 'results' }, model: { name: 'm' }, partitionSize: size, toleratedFailurePercent: 100 }, new Date('2026-01-01T00:00:00Z'));
  const { fns, world } = continuousWorld(size, initial, looks, failing);
  const e = new DurableEngine(fns, { maxConcurrentActivities: 3, timerScale: 0.001, ...engineOpts });
  try {
    await e.start('inferenceJob', 'cc', { job, options: { parallel: 2, perGeneration: 3, retry } });
    const s = await e.waitFor('cc', 120_000);
    assert.equal(s.runtimeStatus, 'Completed', JSON.stringify(s.output));
  } finally {
    e.close();
  }
  return world;
}

function expected(world: World): { images: number; failed: number; succeeded: number; partitionsFailed: number } {
  const images = world.sizes.reduce((a, b) => a + b, 0);
  const failed = [...world.failing].reduce((a, n) => a + world.sizes[n]!, 0);
  return { images, failed, succeeded: images - failed, partitionsFailed: world.failing.size };
}

test('layout: partial batches start runs; counts per partition equal the plan records; pruning keeps what unsettled partitions need', () => {
  // 2 images at size 4 (partition 0), then a batch of 4 (partition 1), then 6 (partitions 2, 3), then 3 (4).
  let layout: Segment[] | undefined;
  layout = addSegment(layout, 1, 2, 4);
  layout = addSegment(layout, 2, 6, 4);
  layout = addSegment(layout, 4, 12, 4);
  // The batch at partition 2 follows a full partition 1: the same run goes on.
  assert.deepEqual(layout, [{ n: 0, first: 0 }, { n: 1, first: 2 }, { n: 4, first: 12 }]);
  assert.deepEqual([0, 1, 2, 3, 4].map((n) => partitionImages(n, { total: 15, layout }, 4)), [2, 4, 4, 2, 3]);
  // A batch that ends on a full partition adds no run.
  assert.deepEqual(addSegment(undefined, 2, 8, 4), [{ n: 0, first: 0 }]);
  assert.deepEqual(pruneSegments(layout, 3), [{ n: 1, first: 2 }, { n: 4, first: 12 }]);
  assert.equal(pruneSegments([{ n: 0, first: 0 }], 5), undefined);
  // A batch job: every partition full but the last, as before.
  assert.deepEqual([0, 1, 2].map((n) => partitionImages(n, { total: 10 }, 4)), [4, 4, 2]);
});

test('the reproduction: 1 partition of 2 images at size 4; a look brings 4 (partition 1), which fails: images 6, failed 4', async () => {
  const world = await runContinuous(4, 2, [4], (n) => n === 1);
  assert.deepEqual(world.sizes, [2, 4]);
  const t = world.finals[0]!.totals;
  assert.deepEqual({ images: t.images, failed: t.failed, succeeded: t.succeeded, partitionsFailed: t.partitionsFailed }, { images: 6, failed: 4, succeeded: 2, partitionsFailed: 1 });
});

test('several partial batches with failures in each: the manifest counts are the sums of the plan records', async () => {
  const world = await runContinuous(5, 7, [3, 11, 1, 9, 5], (n) => n % 3 === 1);
  assert.ok(world.failing.size >= 3, `failures in several batches: ${[...world.failing].join(', ')}`);
  const t = world.finals[0]!.totals;
  assert.deepEqual({ images: t.images, failed: t.failed, succeeded: t.succeeded, partitionsFailed: t.partitionsFailed }, expected(world));
});

test('property: random continuous jobs (partial looks, random failures, batches of deliveries) count exactly the plan records', async () => {
  for (let seed = 1; seed <= 12; seed++) {
    const rand = seeded(seed);
    const size = 1 + Math.floor(rand() * 6);
    const initial = Math.floor(rand() * 14);
    const looks = Array.from({ length: 1 + Math.floor(rand() * 5) }, () => Math.floor(rand() * 13));
    const bad = new Set(Array.from({ length: 40 }, (_, n) => n).filter(() => rand() < 0.25));
    const world = await runContinuous(size, initial, looks, (n) => bad.has(n), { seed, batch: 'random' });
    const t = world.finals[0]!.totals;
    assert.deepEqual({ images: t.images, failed: t.failed, succeeded: t.succeeded, partitionsFailed: t.partitionsFailed }, expected(world), `seed ${seed}: size ${size}, initial ${initial}, looks ${looks.join(',')}`);
  }
});

test('a result that is no outcome at all (a timer value where a partition result was expected) fails with the replay-mismatch message', async () => {
  const job = parseJobRequest({ jobId: 'bad', input: { container: 'images' }, output: { container: 'results' }, model: { name: 'm' }, partitionSize: 10 }, new Date('2026-01-01T00:00:00Z'));
  const fns = new Map<string, RegisteredFunction>([
    ['inferenceJob', orchestrator],
    ['planJob', fake('planJob', () => ({ ok: true, value: { partitions: 1, total: 10, bytes: 0, model: { name: 'm', etag: 'e', jsonEtag: 'j' } } }))],
    ['inferPartition', fake('inferPartition', () => '2026-01-01T00:00:01.000Z')],
    ['finalizeJob', fake('finalizeJob', () => ({ ok: true, value: { status: 'succeeded', counts: {}, files: [] } }))],
  ]);
  const e = new DurableEngine(fns, { maxConcurrentActivities: 1 });
  try {
    await e.start('inferenceJob', 'bad', { job, options: { parallel: 1, perGeneration: 10, retry } });
    const s = await e.waitFor('bad', 30_000);
    assert.equal(s.runtimeStatus, 'Failed');
    assert.match(String(s.output), /ReplayMismatch: partition 0 received string "2026-01-01T00:00:01\.000Z", which is not the outcome of a partition/);
    assert.doesNotMatch(String(s.output), /TypeError/);
  } finally {
    e.close();
  }
});
