/**
 * The registered orchestrator through the real durable-functions SDK: history in, actions out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvocationContext } from '@azure/functions';
import { DurableEngine, ORCHESTRATION_BINDING } from '../lib/local/durable';
import type { RegisteredFunction } from '../lib/local/functionsHost';
import { parseJobRequest } from '../lib/jobs';
import { MAX_LISTED_FAILURES, type JobState } from '../lib/orchestrator';
import { registeredFunctions } from './helpers/host';

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
const part = (n: number) => ({ ok: true, value: { n, images: n === 4 ? 5 : 10, succeeded: n === 4 ? 5 : 10, failed: 0, skipped: 0, detections: 1, wallMs: 100 } });

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

test('after the plan: a wave of `parallel` partitions with small inputs; then the next wave; replay is deterministic', async () => {
  const h = [...started(), ...completed(0, plan)];
  const s = await replay(h);
  assert.equal(s.actions.length, 1, 'V3: one action list');
  assert.deepEqual(s.actions[0]!.map((a) => a.actionType), [1, 12], 'the plan, then the wave as one WhenAll');
  const flat = calls(s);
  assert.deepEqual(flat.map((a) => a.functionName), ['planJob', 'inferPartition', 'inferPartition', 'inferPartition']);
  assert.deepEqual(flat.slice(1).map((a) => (a.input as { n: number }).n), [0, 1, 2]);
  for (const a of flat.slice(1)) assert.ok(JSON.stringify(a.input).length < 1024, 'partition inputs stay small: no blob lists');
  assert.deepEqual(s.customStatus!.partitions, { total: 5, done: 0, failed: 0 });
  assert.deepEqual(await replay(h), s, 'same history, same actions');

  const h2 = [...h, ...completed(1, part(0)), ...completed(3, part(2)), ...completed(2, part(1))];
  const s2 = await replay(h2);
  const flat2 = calls(s2);
  assert.deepEqual(flat2.slice(4).map((a) => (a.input as { n: number }).n), [3, 4]);
  assert.deepEqual(s2.customStatus!.partitions, { total: 5, done: 3, failed: 0 });

  const h3 = [...h2, ...completed(4, part(3)), ...completed(5, part(4))];
  const s3 = await replay(h3);
  const last = calls(s3).at(-1)!;
  assert.equal(last.functionName, 'finalizeJob');
  const fin = last.input as { status: string; totals: { images: number; succeeded: number }; endedAt: string; startedAt: string };
  assert.equal(fin.status, 'succeeded');
  assert.equal(fin.totals.images, 45);
  assert.equal(fin.startedAt, T0, 'times come from the orchestration clock');
  assert.deepEqual(await replay(h3), s3);

  const s4 = await replay([...h3, ...completed(6, { ok: true, value: { status: 'succeeded', counts: { images: 45 }, files: ['x'] } })]);
  assert.equal(s4.isDone, true);
  assert.deepEqual(s4.output, { jobId: 'j1', status: 'succeeded', counts: { images: 45 }, files: ['x'] });
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
      return n % 97 === 0 ? { ok: false, error: { code: 'X', message: `bad ${n}` } } : { ok: true, value: { n, images: 10, succeeded: 10, failed: 0, skipped: 0, detections: 0, wallMs: 1 } };
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
