/**
 * The registered orchestrator through the real durable-functions SDK: history in, actions out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvocationContext } from '@azure/functions';
import { DurableEngine, ORCHESTRATION_BINDING } from '../../lib/local/durable/engine';
import type { RegisteredFunction } from '../../lib/local/functions/functionsHost';
import { parseJobRequest } from '../../lib/job/request';
import { MAX_LISTED_FAILURES, type JobState } from '../../lib/orchestration/orchestrator';
import { registeredFunctions } from '../helpers/host';

process.env['DATA_STORAGE'] = 'UseDevelopmentStorage=true';
const functions = registeredFunctions();
const orchestrator = functions.get('inferenceJob')!;
const job = parseJobRequest({ jobId: 'j1', input: { container: 'images' }, output: { container: 'results' }, model: { name: 'm' }, partitionSize: 10 }, new Date('2026-01-01T00:00:00Z'));
const options = { parallel: 3, perGeneration: 100, retry: { firstRetryMs: 1000, maxAttempts: 3, backoffCoefficient: 2, maxRetryMs: 8000 } };
const T0 = '2026-01-01T00:00:00.000Z';

type Ev = Record<string, unknown>;
const started = (): Ev[] => [
  { EventType: 12, EventId: -1, IsPlayed: false, Timestamp: T0 },
  { EventType: 0, EventId: -1, IsPlayed: false, Timestamp: T0, Name: 'inferenceJob', Input: '' },
];

interface Act {
  actionType: number;
  functionName: string;
  input: unknown;
  retryOptions?: { maxNumberOfAttempts: number; firstRetryIntervalInMilliseconds: number };
  compoundActions?: Act[];
}

interface State {
  isDone: boolean;
  actions: Act[][];
  customStatus?: { phase: string; partitions: { total: number; done: number } };
  output?: unknown;
}

/** V3's one action list with compound actions (WhenAll 12, WhenAny 11) expanded into the calls they hold. */
function calls(s: State): Act[] {
  const out: Act[] = [];
  const walk = (a: Act): void => (a.compoundActions ? a.compoundActions.forEach(walk) : void out.push(a));
  s.actions.flat().forEach(walk);
  return out;
}

async function replay(history: Ev[], input: unknown = { job, options }): Promise<State> {
  // The binding data the Durable extension sends: replay schema V3 negotiated.
  const binding = { ...ORCHESTRATION_BINDING, history, input, instanceId: 'j1' };
  return (await orchestrator.handler(binding, new InvocationContext({ functionName: 'inferenceJob', logHandler: () => undefined }))) as State;
}

const completed = (id: number, result: unknown): Ev[] => [
  { EventType: 12, EventId: -1, IsPlayed: false, Timestamp: T0 },
  { EventType: 5, EventId: -1, IsPlayed: false, Timestamp: T0, TaskScheduledId: id, Result: JSON.stringify(result) },
];
const plan = { ok: true, value: { partitions: 5, total: 45, bytes: 1000, model: { name: 'm', etag: 'e1', jsonEtag: 'j1' } } };
const part = (n: number) => ({ ok: true, value: { n, done: true, images: n === 4 ? 5 : 10, succeeded: n === 4 ? 5 : 10, failed: 0, skipped: 0, detections: 1, wallMs: 100 } });

test('first step: plan the job, with retries', async () => {
  const s = await replay(started());
  assert.equal(s.isDone, false);
  const flat = calls(s);
  assert.equal(flat.length, 1);
  assert.equal(flat[0]!.functionName, 'planJob');
  assert.equal(flat[0]!.actionType, 1, 'CallActivityWithRetry');
  assert.equal(flat[0]!.retryOptions!.maxNumberOfAttempts, 3);
  assert.deepEqual(flat[0]!.input, job);
  assert.equal(s.customStatus!.phase, 'planning');
});

test('after the plan: a sliding window of `parallel` partitions; a poll timer wakes it for partitions it is not waiting on; replay is deterministic', async () => {
  const h = [...started(), ...completed(0, plan)];
  const s = await replay(h);
  assert.equal(s.actions.length, 1, 'V3: one action list');
  assert.deepEqual(s.actions[0]!.map((a) => a.actionType), [1, 11], 'the plan, then the window as one WhenAny');
  assert.deepEqual(s.actions[0]![1]!.compoundActions!.map((a) => a.actionType), [1, 1, 1], 'three partitions, all new: no timer needed');
  const flat = calls(s);
  assert.deepEqual(flat.map((a) => a.functionName), ['planJob', 'inferPartition', 'inferPartition', 'inferPartition']);
  assert.deepEqual(flat.slice(1).map((a) => a.input), [0, 1, 2].map((n) => ({ job: { jobId: 'j1', jobPrefix: 'j1/', input: job.input, output: job.output, model: plan.value.model, params: {}, skipExisting: true, samples: 24 }, n, run: T0, maxAttempts: 3 })));
  for (const a of flat.slice(1)) assert.ok(JSON.stringify(a.input).length < 1024, 'partition inputs stay small: no blob lists');
  assert.deepEqual(s.customStatus!.partitions, { total: 5, done: 0, failed: 0 });
  assert.deepEqual(await replay(h), s, 'same history, same actions');

  // Tasks: plan 0, partitions 0-2 are 1-3. Partition 1 completes: its slot is refilled with
  // partition 3 (task 4), waited on with a poll timer (5); tasks 1 and 3 go in no new Task.any.
  const h2 = [...h, ...completed(2, part(1))];
  const s2 = await replay(h2);
  assert.deepEqual(s2.actions[0]!.map((a) => a.actionType), [1, 11, 11]);
  assert.deepEqual(s2.actions[0]![2]!.compoundActions!.map((a) => [a.actionType, (a.input as { n?: number } | undefined)?.n]), [[1, 3], [5, undefined]]);
  assert.equal(new Date((s2.actions[0]![2]!.compoundActions![1] as unknown as { fireAt: string }).fireAt).toISOString(), '2026-01-01T00:00:00.020Z', 'the poll follows how long partitions take: a tenth of 0 ms, so the 20 ms floor');
  assert.deepEqual(s2.customStatus!.partitions, { total: 5, done: 1, failed: 0 });

  // Partitions 0 and 2 complete while the window waits on partition 3 and the timer: seen when the timer fires.
  const h3 = [...h2, ...completed(1, part(0)), ...completed(3, part(2))];
  assert.deepEqual((await replay(h3)).customStatus!.partitions, { total: 5, done: 1, failed: 0 }, 'not seen before the poll');
  const h4 = [...h3, { EventType: 12, EventId: -1, IsPlayed: false, Timestamp: '2026-01-01T00:00:02.000Z' }, { EventType: 11, EventId: -1, IsPlayed: false, Timestamp: T0, TimerId: 5 }];
  const s4 = await replay(h4);
  assert.deepEqual(s4.customStatus!.partitions, { total: 5, done: 3, failed: 0 });
  assert.deepEqual(s4.actions[0]![3]!.compoundActions!.map((a) => [a.actionType, (a.input as { n?: number } | undefined)?.n]), [[1, 4], [5, undefined]], 'partition 4 (task 6) and a timer (7)');

  // Partition 3 (older) completes first, unseen; partition 4 (waited on) wakes the window: both settle.
  const h5 = [...h4, ...completed(4, part(3)), ...completed(6, part(4))];
  const s5 = await replay(h5);
  const last = calls(s5).at(-1)!;
  assert.equal(last.functionName, 'finalizeJob');
  const fin = last.input as { status: string; totals: { images: number; succeeded: number }; endedAt: string; startedAt: string };
  assert.equal(fin.status, 'succeeded');
  assert.equal(fin.totals.images, 45);
  assert.equal(fin.startedAt, T0, 'times come from the orchestration clock');
  assert.deepEqual(await replay(h5), s5);

  const s6 = await replay([...h5, ...completed(8, { ok: true, value: { status: 'succeeded', counts: { images: 45 }, files: ['x'] } })]);
  assert.equal(s6.isDone, true);
  assert.deepEqual(s6.output, { jobId: 'j1', status: 'succeeded', counts: { images: 45 }, files: ['x'] });
});

test('a plan that cannot be made fails the orchestration with its reason, without retrying', async () => {
  const h = [...started(), ...completed(0, { ok: false, error: { code: 'ContainerNotFound', message: "input container 'images' does not exist" } })];
  await assert.rejects(replay(h), /ContainerNotFound: input container 'images' does not exist/);
});

test('100,000 partitions: history stays bounded per generation, payloads small', async () => {
  // The real orchestrator with stand-in activities (no I/O): what grows is history, not work.
  const fake = (name: string, handler: (input: unknown) => unknown): RegisteredFunction => ({ name, bindings: {}, trigger: { name: 't', type: 'activityTrigger' }, handler: async (i: unknown) => handler(i) });
  const total = 100_000;
  const fns = new Map<string, RegisteredFunction>([
    ['inferenceJob', orchestrator],
    ['planJob', fake('planJob', () => ({ ok: true, value: { partitions: total, total: total * 10, bytes: 0, model: { name: 'm', etag: 'e', jsonEtag: 'j' } } }))],
    ['inferPartition', fake('inferPartition', (i) => {
      const n = (i as { n: number }).n;
      // Every 97th partition fails for good: more than MAX_LISTED_FAILURES of them, all counted.
      return n % 97 === 0 ? { ok: false, error: { code: 'X', message: `bad ${n}` } } : { ok: true, value: { n, done: true, images: 10, succeeded: 10, failed: 0, skipped: 0, detections: 0, wallMs: 1 } };
    })],
    ['finalizeJob', fake('finalizeJob', (i) => ({ ok: true, value: { status: (i as { status: string }).status, counts: (i as { totals: unknown }).totals, files: [] } }))],
  ]);
  let maxHistory = 0;
  let maxInput = 0;
  let maxStatus = 0;
  const e = new DurableEngine(fns, {
    maxConcurrentActivities: 64,
    onChange: (r) => {
      maxHistory = Math.max(maxHistory, r.history.length);
      maxInput = Math.max(maxInput, JSON.stringify(r.input).length);
      maxStatus = Math.max(maxStatus, JSON.stringify(r.customStatus ?? '').length);
    },
  });
  const perGeneration = 256;
  await e.start('inferenceJob', 'big', { job: { ...job, toleratedFailurePercent: 5 }, options: { parallel: 64, perGeneration, retry: options.retry } });
  const s = await e.waitFor('big', 600_000);
  e.close();
  assert.equal(s.runtimeStatus, 'Completed', String(s.output));
  const state = (s.input as { state: JobState }).state;
  assert.equal(state.generation, Math.ceil(total / perGeneration) - 1);
  const totals = (s.output as { counts: JobState['totals'] }).counts;
  assert.equal(totals.partitionsDone + totals.partitionsFailed, total);
  assert.equal(totals.partitionsFailed, Math.ceil(total / 97));
  assert.equal(totals.images, total * 10);
  assert.equal(state.failedPartitions.length, MAX_LISTED_FAILURES);
  // Per generation: each partition adds TaskScheduled + OrchestratorStarted + TaskCompleted + OrchestratorCompleted.
  assert.ok(maxHistory <= perGeneration * 4 + 20, `history reached ${maxHistory} events`);
  assert.ok(maxInput < 64 * 1024, `orchestration input reached ${maxInput} bytes`);
  assert.ok(maxStatus < 16 * 1024, `custom status reached ${maxStatus} bytes`);
  console.log(`100,000 partitions: ${state.generation + 1} generations, max history ${maxHistory} events, max input ${maxInput} B, max custom status ${maxStatus} B`);
});

/** The real orchestrator over stand-in activities (no I/O). */
function standIns(partitions: number, infer: (input: { n: number; from?: number }) => unknown | Promise<unknown>, onFinalize: (input: unknown) => void = () => undefined): Map<string, RegisteredFunction> {
  const fake = (name: string, handler: (input: unknown) => unknown): RegisteredFunction => ({ name, bindings: {}, trigger: { name: 't', type: 'activityTrigger' }, handler: async (i: unknown) => handler(i) });
  return new Map<string, RegisteredFunction>([
    ['inferenceJob', orchestrator],
    ['planJob', fake('planJob', () => ({ ok: true, value: { partitions, total: partitions * 10, bytes: 0, model: { name: 'm', etag: 'e', jsonEtag: 'j' } } }))],
    ['inferPartition', fake('inferPartition', (i) => infer(i as { n: number; from?: number }))],
    ['finalizeJob', fake('finalizeJob', (i) => {
      onFinalize(i);
      return { ok: true, value: { status: (i as { status: string }).status, counts: (i as { totals: unknown }).totals, files: [] } };
    })],
  ]);
}
const ok = (n: number) => ({ ok: true, value: { n, done: true, images: 10, succeeded: 10, failed: 0, skipped: 0, detections: n, wallMs: 1 } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('sliding window: a partition ten times slower than the rest holds one slot, not the window', async () => {
  const d = 100;
  const run = async (straggler: boolean) => {
    const ends: number[] = [];
    let slow = { start: 0, end: 0 };
    const e = new DurableEngine(standIns(40, async ({ n }) => {
      const t = Date.now();
      await sleep(straggler && n === 0 ? 10 * d : d);
      if (straggler && n === 0) slow = { start: t, end: Date.now() };
      else ends.push(Date.now());
      return ok(n);
    }), { maxConcurrentActivities: 8 });
    const t0 = Date.now();
    await e.start('inferenceJob', 'win', { job, options: { parallel: 4, perGeneration: 100, pollMs: 1000, retry: options.retry } });
    const s = await e.waitFor('win', 60_000);
    e.close();
    assert.equal(s.runtimeStatus, 'Completed', String(s.output));
    return { ms: Date.now() - t0, during: ends.filter((t) => t > slow.start && t < slow.end).length };
  };
  const base = await run(false);
  const withStraggler = await run(true);
  // Waves would finish only the straggler's 3 wave-mates while it runs; a window keeps 3 slots busy: ~27.
  assert.ok(withStraggler.during >= 20, `${withStraggler.during} partitions completed while the straggler ran`);
  console.log(`straggler (10x): ${withStraggler.during} partitions completed while it ran; job ${withStraggler.ms} ms vs ${base.ms} ms without it (x${(withStraggler.ms / base.ms).toFixed(2)}; ideal (39+10)/40 = x1.23 for 40 partitions in 4 slots)`);
});

test('a partition out of its time budget is continued from where it stopped: no retry used, counted once', async () => {
  const calls: string[] = [];
  const e = new DurableEngine(standIns(12, ({ n, from }) => {
    calls.push(`${n}@${from ?? 0}`);
    // Every third partition needs two continuations: pieces 0-4, 4-7, 7-10.
    if (n % 3 === 0 && (from ?? 0) < 7) return { ok: true, value: { n, done: false, next: (from ?? 0) === 0 ? 4 : 7, images: 4, wallMs: 1 } };
    return ok(n);
  }), { maxConcurrentActivities: 4 });
  await e.start('inferenceJob', 'cont', { job, options: { parallel: 3, perGeneration: 5, pollMs: 1000, retry: { ...options.retry, maxAttempts: 1 } } });
  const s = await e.waitFor('cont', 30_000);
  e.close();
  assert.equal(s.runtimeStatus, 'Completed', String(s.output));
  const totals = (s.output as { counts: JobState['totals'] }).counts;
  assert.deepEqual([totals.partitionsDone, totals.partitionsFailed, totals.images, totals.detections], [12, 0, 120, 66]);
  assert.deepEqual(calls.filter((c) => c.startsWith('0@') || c.startsWith('3@')).sort(), ['0@0', '0@4', '0@7', '3@0', '3@4', '3@7']);
  assert.equal(calls.length, 12 + 4 * 2, 'each piece once');
  // A continuation that makes no progress is a bug, not a loop.
  const stuck = new DurableEngine(standIns(1, ({ n }) => ({ ok: true, value: { n, done: false, next: 0, images: 0, wallMs: 1 } })));
  await stuck.start('inferenceJob', 'stuck', { job, options: { parallel: 1, perGeneration: 5, pollMs: 1000, retry: options.retry } });
  const s2 = await stuck.waitFor('stuck', 10_000);
  stuck.close();
  assert.equal(s2.runtimeStatus, 'Failed');
  assert.match(String(s2.output), /partition 0: a continuation from 0 makes no progress/);
});

test('orchestration state stays small with long real failure messages: at most 50 listed, 200 characters each, inputs under 16 KB', async () => {
  const long = (n: number) => `storage unreachable for partition ${n}: ${'ünïcödé ✓ '.repeat(400)}`;
  let finalInput = '';
  let maxInput = 0;
  const e = new DurableEngine(
    standIns(
      120,
      ({ n }) => {
        if (n % 2 === 0) throw new Error(long(n)); // thrown: the SDK adds the stack to the failure
        return { ok: false, error: { code: 'ModelOutputInvalid', message: long(n) } };
      },
      (i) => (finalInput = JSON.stringify(i)),
    ),
    { maxConcurrentActivities: 8, onChange: (r) => void (maxInput = Math.max(maxInput, Buffer.byteLength(JSON.stringify(r.input)))) },
  );
  // The largest job request there can be: longest id, prefixes, model name, 32 extensions.
  const ext = Array.from({ length: 32 }, (_, i) => `.e${String(i).padStart(9, '0')}`);
  const longJob = parseJobRequest({ jobId: 'j'.repeat(100), input: { container: 'images', prefix: 'i/'.repeat(256), extensions: ext }, output: { container: 'results', prefix: 'p/'.repeat(256) }, model: { name: 'm'.repeat(100) }, partitionSize: 10, toleratedFailurePercent: 100, params: { scoreThreshold: 0.123456789, topK: 10_000, masks: true } }, new Date('2026-01-01T00:00:00Z'));
  await e.start('inferenceJob', longJob.jobId, { job: longJob, options: { parallel: 8, perGeneration: 30, pollMs: 1000, retry: { ...options.retry, maxAttempts: 1 } } });
  const s = await e.waitFor(longJob.jobId, 30_000);
  e.close();
  assert.equal(s.runtimeStatus, 'Completed', String(s.output));
  const fin = JSON.parse(finalInput) as { failedPartitions: { n: number; message: string }[] };
  assert.ok(fin.failedPartitions.length <= 50 && fin.failedPartitions.length >= 20, `${fin.failedPartitions.length} listed`);
  for (const f of fin.failedPartitions) {
    assert.ok(f.message.length <= 200, `${f.message.length} characters`);
    assert.match(f.message, new RegExp(`partition ${f.n}:`), 'the reason, first line, its own partition');
  }
  assert.ok(Buffer.byteLength(finalInput) < 16 * 1024, `finalize input ${Buffer.byteLength(finalInput)} bytes`);
  assert.ok(maxInput < 16 * 1024, `continueAsNew input up to ${maxInput} bytes`);
  assert.equal(e.stats.largeMessages, 0);
  console.log(`state with 120 long failures: finalize input ${Buffer.byteLength(finalInput)} B, continueAsNew input up to ${maxInput} B, ${fin.failedPartitions.length} listed`);
});
