/**
 * The local Durable engine is as strict as the Durable Functions extension: replay schema V3,
 * the shim's task numbering and non-determinism check, batched delivery, asynchronous terminate,
 * redelivery of lost activities, functionTimeout, at-least-once execution and payload limits.
 * Orchestrators here are real durable-functions SDK orchestrators registered as a function file
 * registers them; the property test drives the real inferenceJob orchestrator.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as df from 'durable-functions';
import type { OrchestrationContext, Task } from 'durable-functions';
import { ActivityLostError } from '../../lib/local/functions/activityErrors';
import { DurableEngine, MAX_BATCH, type ActivityRunner, type EngineOptions, type HistoryEvent, type InstanceRecord } from '../../lib/local/durable/engine';
import { installFunctionsCore, registry, type RegisteredFunction } from '../../lib/local/functions/functionsHost';
import { formatTimeSpan, functionTimeoutMs, parseTimeSpan } from '../../lib/local/functions/hostJson';
import { seeded } from '../../lib/local/durable/random';
import { ACT, EV, replayShim, type Action } from '../../lib/local/durable/replay';
import { parseJobRequest } from '../../lib/job/request';
import { MAX_LISTED_FAILURES, type JobState } from '../../lib/orchestration/orchestrator';
import { registeredFunctions } from '../helpers/host';

process.env['DATA_STORAGE'] ??= 'UseDevelopmentStorage=true';
installFunctionsCore();

/** Registers an orchestrator as `df.app.orchestration` does in a function file. */
function orchestration(name: string, fn: (ctx: OrchestrationContext) => Generator<Task, unknown, unknown>): void {
  df.app.orchestration(name, fn as never);
}

/** Registers an activity whose handler is `fn`. */
function activity(name: string, fn: (input: unknown) => unknown): void {
  df.app.activity(name, { handler: async (input: unknown) => fn(input) });
}

function engine(opts: EngineOptions = {}): DurableEngine {
  return new DurableEngine(registry, { maxConcurrentActivities: 4, ...opts });
}

const ev = (EventType: number, fields: Record<string, unknown> = {}, EventId = -1): HistoryEvent => ({ EventType, EventId, IsPlayed: false, Timestamp: '2026-01-01T00:00:00.000Z', ...fields });
const call = (name: string, input: unknown = null): Action => ({ actionType: ACT.CallActivity, functionName: name, input });
const retry = (name: string, max: number): Action => ({ actionType: ACT.CallActivityWithRetry, functionName: name, input: null, retryOptions: { firstRetryIntervalInMilliseconds: 1000, maxNumberOfAttempts: max, backoffCoefficient: 2 } });

describe('the shim replay (pure)', () => {
  const start = [ev(EV.OrchestratorStarted), ev(EV.ExecutionStarted, { Name: 'o', Input: 'null' })];

  test('tasks are numbered as issued: top-level actions one at a time, compound children all at once', () => {
    const actions: Action[] = [call('a'), { actionType: ACT.WhenAll, compoundActions: [call('b'), call('c')] }, call('d')];
    // Nothing completed: only `a` is issued (the shim awaits it before the next action).
    assert.deepEqual(replayShim(start, actions).fresh.map((w) => [w.id, w.kind === 'activity' && w.name]), [[0, 'a']]);
    const h = [...start, ev(EV.TaskScheduled, { Name: 'a' }, 0), ev(EV.OrchestratorStarted), ev(EV.TaskCompleted, { TaskScheduledId: 0, Result: '1' })];
    assert.deepEqual(replayShim(h, actions).fresh.map((w) => [w.id, w.kind === 'activity' && w.name]), [[1, 'b'], [2, 'c']]);
    const h2 = [...h, ev(EV.TaskScheduled, { Name: 'b' }, 1), ev(EV.TaskScheduled, { Name: 'c' }, 2), ev(EV.OrchestratorStarted), ev(EV.TaskCompleted, { TaskScheduledId: 2, Result: '1' })];
    assert.deepEqual(replayShim(h2, actions).fresh, [], 'WhenAll waits for every child (as Task.WhenAll does)');
    const h3 = [...h2, ev(EV.OrchestratorStarted), ev(EV.TaskFailed, { TaskScheduledId: 1, Reason: 'x' })];
    assert.deepEqual(replayShim(h3, actions).fresh.map((w) => [w.id, w.kind === 'activity' && w.name]), [[3, 'd']], 'a failed child still completes the WhenAll for the shim');
  });

  test('retries: attempt, timer, attempt, ...; after the last failure an immediate timer; backoff from the failure time', () => {
    const actions = [retry('r', 3)];
    let h = [...start];
    const fresh = () => replayShim(h, actions).fresh;
    assert.deepEqual(fresh(), [{ kind: 'activity', id: 0, name: 'r', input: null, attempt: 1 }]);
    h = [...h, ev(EV.TaskScheduled, { Name: 'r' }, 0), { ...ev(EV.OrchestratorStarted), Timestamp: '2026-01-01T00:00:10.000Z' }, ev(EV.TaskFailed, { TaskScheduledId: 0, Reason: 'x' })];
    assert.deepEqual(fresh(), [{ kind: 'timer', id: 1, fireAt: '2026-01-01T00:00:11.000Z' }], 'first interval');
    h = [...h, ev(EV.TimerCreated, { FireAt: '2026-01-01T00:00:11.000Z' }, 1), ev(EV.OrchestratorStarted), ev(EV.TimerFired, { TimerId: 1 })];
    assert.deepEqual(fresh(), [{ kind: 'activity', id: 2, name: 'r', input: null, attempt: 2 }]);
    h = [...h, ev(EV.TaskScheduled, { Name: 'r' }, 2), { ...ev(EV.OrchestratorStarted), Timestamp: '2026-01-01T00:01:00.000Z' }, ev(EV.TaskFailed, { TaskScheduledId: 2, Reason: 'x' })];
    assert.deepEqual(fresh(), [{ kind: 'timer', id: 3, fireAt: '2026-01-01T00:01:02.000Z' }], 'interval times the backoff coefficient');
    h = [...h, ev(EV.TimerCreated, {}, 3), ev(EV.OrchestratorStarted), ev(EV.TimerFired, { TimerId: 3 }), ev(EV.TaskScheduled, { Name: 'r' }, 4), ev(EV.OrchestratorStarted), ev(EV.TaskFailed, { TaskScheduledId: 4, Reason: 'x' })];
    assert.deepEqual(fresh(), [{ kind: 'timer', id: 5, fireAt: '2026-01-01T00:00:00.000Z' }], 'after the last attempt: a timer due at once, then the task fails');
  });

  test('history that the replay does not reproduce is a non-deterministic orchestration, worded as DTFx words it', () => {
    const h = [...start, ev(EV.TaskScheduled, { Name: 'a' }, 0)];
    assert.equal(replayShim(h, [call('a')]).nondeterminism, undefined);
    assert.match(replayShim(h, [call('b')]).nondeterminism!, /^Non-Deterministic workflow detected: A previous execution of this orchestration scheduled an activity task with sequence ID 0 and name 'a' \(version ''\) but the current orchestration replay instead produced a ScheduleTaskOrchestratorAction named 'b' with this sequence number\./);
    assert.match(replayShim(h, [{ actionType: ACT.CreateTimer, fireAt: '2026-01-01T00:00:00Z' }]).nondeterminism!, /instead produced a CreateTimerOrchestratorAction/);
    assert.match(replayShim(h, []).nondeterminism!, /scheduled an activity task with sequence ID 0 and name 'a' \(version ''\), but the current replay execution hasn't \(yet\?\) scheduled this task/);
    assert.match(replayShim([...start, ev(EV.TimerCreated, {}, 0)], [call('a')]).nondeterminism!, /scheduled a timer task with sequence number 0 but the current orchestration replay instead produced a ScheduleTaskOrchestratorAction named 'a'/);
  });

  test('a completion for a task already completed is ignored; continueAsNew and unsupported actions are reported', () => {
    const h = [...start, ev(EV.TaskScheduled, { Name: 'a' }, 0), ev(EV.OrchestratorStarted), ev(EV.TaskCompleted, { TaskScheduledId: 0, Result: '1' }), ev(EV.TaskCompleted, { TaskScheduledId: 0, Result: '2' })];
    const r = replayShim(h, [call('a'), call('b'), { actionType: ACT.ContinueAsNew, input: { next: 1 } }]);
    assert.deepEqual(r.fresh.map((w) => w.id), [1]);
    assert.equal(r.continueAsNew, undefined, 'continueAsNew comes after b, which is not done');
    const h2 = [...h, ev(EV.TaskScheduled, { Name: 'b' }, 1), ev(EV.OrchestratorStarted), ev(EV.TaskCompleted, { TaskScheduledId: 1, Result: '1' })];
    assert.deepEqual(replayShim(h2, [call('a'), call('b'), { actionType: ACT.ContinueAsNew, input: { next: 1 } }]).continueAsNew, { input: { next: 1 } });
    assert.match(replayShim(start, [{ actionType: ACT.CallSubOrchestrator, functionName: 's' }]).unsupported!, /CallSubOrchestrator/);
  });

  test('external events take no number; the newest wait of a name gets the event (a stack), an early one is buffered for the next wait', () => {
    const wait = (name: string): Action => ({ actionType: ACT.WaitForExternalEvent, externalEventName: name });
    const timer: Action = { actionType: ACT.CreateTimer, fireAt: '2026-01-01T01:00:00Z' };
    const any = (...children: Action[]): Action => ({ actionType: ACT.WhenAny, compoundActions: children });
    // A WhenAny of a timer and a wait, in a loop: the timer takes number 0, the wait none.
    const actions = [any(timer, wait('Stop')), any(timer, wait('stop')), call('after')];
    assert.deepEqual(replayShim(start, actions).fresh, [{ kind: 'timer', id: 0, fireAt: '2026-01-01T01:00:00.000Z' }]);
    // The first timer fires; the second WhenAny issues timer 1 and a second wait; the event (names are
    // case-insensitive, as the extension's) completes the newest wait: 'after' is issued as task 2.
    const h = [...start, ev(EV.TimerCreated, { FireAt: '2026-01-01T01:00:00Z' }, 0), ev(EV.OrchestratorStarted), ev(EV.TimerFired, { TimerId: 0 })];
    assert.deepEqual(replayShim(h, actions).fresh.map((w) => w.id), [1]);
    const h2 = [...h, ev(EV.TimerCreated, {}, 1), ev(EV.OrchestratorStarted), ev(EV.EventRaised, { Name: 'STOP', Input: 'null' })];
    assert.deepEqual(replayShim(h2, actions).fresh.map((w) => [w.id, w.kind === 'activity' && w.name]), [[2, 'after']]);
    // An event that came before anyone waited is buffered: the wait takes it at once.
    const early = [...start, ev(EV.TaskScheduled, { Name: 'a' }, 0), ev(EV.OrchestratorStarted), ev(EV.EventRaised, { Name: 'stop', Input: '1' }), ev(EV.TaskCompleted, { TaskScheduledId: 0, Result: '1' })];
    assert.deepEqual(replayShim(early, [call('a'), any(timer, wait('stop')), call('b')]).fresh.map((w) => [w.id, w.kind]), [[1, 'timer'], [2, 'activity']]);
    // Another name's event leaves the wait open.
    assert.deepEqual(replayShim([...h, ev(EV.TimerCreated, {}, 1), ev(EV.OrchestratorStarted), ev(EV.EventRaised, { Name: 'other', Input: 'null' })], actions).fresh, []);
  });
});

describe('the engine with real SDK orchestrators', () => {
  activity('echo', (i) => i);
  activity('square', (i) => (i as number) ** 2);

  test('V3 fan-out/fan-in with Task.all and Task.any: every result where it belongs, delivered in batches', async () => {
    orchestration('fanOut', function* (ctx) {
      const n = ctx.df.getInput() as number;
      const tasks = Array.from({ length: n }, (_, i) => ctx.df.callActivity('square', i));
      const squares = (yield ctx.df.Task.all(tasks)) as number[];
      const first = ctx.df.callActivity('echo', 'fast');
      const timer = ctx.df.createTimer(new Date(ctx.df.currentUtcDateTime.getTime() + 60_000));
      const winner = (yield ctx.df.Task.any([first, timer])) as Task;
      return { squares, winner: winner === first ? winner.result : 'timer' };
    });
    const e = engine({ seed: 7 });
    await e.start('fanOut', 'f1', 100);
    const s = await e.waitFor('f1', 30_000);
    e.close();
    assert.equal(s.runtimeStatus, 'Completed', String(s.output));
    assert.deepEqual(s.output, { squares: Array.from({ length: 100 }, (_, i) => i * i), winner: 'fast' });
    assert.ok(e.stats.maxBatch > 1 && e.stats.maxBatch <= MAX_BATCH, `batches up to ${e.stats.maxBatch}`);
    assert.ok(e.stats.episodes < 101, `${e.stats.episodes} episodes for 101 completions`);
  });

  test('every batch size from one message to 32 gives the same result', async () => {
    for (const batch of [1, 2, 5, 32]) {
      const e = engine({ batch });
      await e.start('fanOut', `fb${batch}`, 40);
      const s = await e.waitFor(`fb${batch}`, 30_000);
      e.close();
      assert.deepEqual((s.output as { squares: number[] }).squares, Array.from({ length: 40 }, (_, i) => i * i), `batch ${batch}`);
      assert.ok(e.stats.maxBatch <= batch);
    }
    assert.throws(() => engine({ batch: 33 }), /batch must be 'random' or an integer 1\.\.32/);
  });

  test('an orchestrator changed between replays (a redeploy mid-instance) fails with a non-deterministic orchestration error', async () => {
    let version = 1;
    let gate: () => void = () => undefined;
    activity('slow', () => new Promise<string>((r) => (gate = () => r('done'))));
    orchestration('redeployed', function* (ctx) {
      yield ctx.df.callActivity(version === 1 ? 'slow' : 'echo', 'x');
      return 'finished';
    });
    const e = engine();
    await e.start('redeployed', 'nd', null);
    for (let i = 0; i < 100 && e.stats.activityRuns === 0; i++) await new Promise((r) => setTimeout(r, 5));
    version = 2; // the new code calls another activity first
    gate();
    const s = await e.waitFor('nd', 10_000);
    e.close();
    assert.equal(s.runtimeStatus, 'Failed');
    assert.match(String(s.output), /Non-Deterministic workflow detected: .*sequence ID 0 and name 'slow'.*instead produced a ScheduleTaskOrchestratorAction named 'echo'/);
  });

  test('re-yielding a scheduled task inside a new Task.any is scheduled again by the shim, and results shift (durable-js #574): the engine shows it, as Azure would', async () => {
    orchestration('reyield', function* (ctx) {
      const a = ctx.df.callActivity('echo', 'A');
      const b = ctx.df.callActivity('slowEcho', 'B');
      yield ctx.df.Task.any([a, b]);
      const c = ctx.df.callActivity('echo', 'C');
      yield ctx.df.Task.any([b, c]); // b again: its action is part of the new WhenAny
      return c.isCompleted ? c.result : 'c pending';
    });
    activity('slowEcho', (i) => new Promise((r) => setTimeout(() => r(i), 200)));
    const e = engine({ batch: 1 });
    await e.start('reyield', 'ry', null);
    const s = await e.waitFor('ry', 10_000);
    e.close();
    // The SDK numbers c as task 2; the shim issued b a second time as task 2 and c as task 3.
    const scheduled = e.record('ry')!.history.filter((h) => h.EventType === EV.TaskScheduled).map((h) => [h.EventId, h['Name'], h['Input']]);
    assert.deepEqual(scheduled, [[0, 'echo', '"A"'], [1, 'slowEcho', '"B"'], [2, 'slowEcho', '"B"'], [3, 'echo', '"C"']]);
    assert.notEqual(s.output, 'C', 'c never gets its own result');
  });

  test('raiseEvent: a wait in a loop with a long timer ends when the event comes; an event raised before the wait is kept for it; an ended instance refuses it', async () => {
    orchestration('waiter', function* (ctx) {
      const seen: unknown[] = [];
      for (let i = 0; i < 3; i++) {
        const ev1 = ctx.df.waitForExternalEvent('stop');
        const winner = (yield ctx.df.Task.any([ctx.df.createTimer(new Date(ctx.df.currentUtcDateTime.getTime() + 3_600_000)), ev1])) as Task;
        seen.push(winner === ev1 ? ev1.result : 'timer');
        if (i === 1) yield ctx.df.callActivity('echo', 'between');
      }
      return seen;
    });
    const e = engine({ batch: 1 });
    await e.start('waiter', 'w1', null);
    for (let i = 0; i < 200 && !(e.record('w1')!.history.some((h) => h.EventType === EV.TimerCreated)); i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(await e.raiseEvent('w1', 'stop', { n: 1 }), true);
    for (let i = 0; i < 200 && e.record('w1')!.history.filter((h) => h.EventType === EV.TimerCreated).length < 2; i++) await new Promise((r) => setTimeout(r, 5));
    // Two events at once: the second waits in the buffer while 'between' runs, and the third wait takes it.
    await e.raiseEvent('w1', 'stop', { n: 2 });
    await e.raiseEvent('w1', 'stop', { n: 3 });
    const s = await e.waitFor('w1', 10_000);
    e.close();
    assert.equal(s.runtimeStatus, 'Completed', String(s.output));
    assert.deepEqual(s.output, [{ n: 1 }, { n: 2 }, { n: 3 }], 'no hour-long timer was waited out');
    assert.equal(await e.raiseEvent('w1', 'stop', null), false, 'an ended instance takes no event');
    assert.equal(await e.raiseEvent('nobody', 'stop', null), false);
  });

  test('terminate is a message: the instance runs until it is processed; running and queued activities still run, their outcomes dropped', async () => {
    const ran: string[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    activity('gated', async (i) => {
      await gate;
      ran.push(i as string);
      return i;
    });
    orchestration('terminable', function* (ctx) {
      yield ctx.df.Task.all(['p', 'q', 'r'].map((x) => ctx.df.callActivity('gated', x)));
      yield ctx.df.callActivity('echo', 'after');
      return 'completed';
    });
    const e = engine({ maxConcurrentActivities: 2 });
    await e.start('terminable', 't1', null);
    for (let i = 0; i < 100 && e.stats.activityRuns < 2; i++) await new Promise((r) => setTimeout(r, 5));
    await e.terminate('t1', 'stop now');
    assert.equal((await e.status('t1'))!.runtimeStatus, 'Running', 'the terminate request is queued, not yet processed');
    const s = await e.waitFor('t1', 5000);
    assert.equal(s.runtimeStatus, 'Terminated');
    assert.equal(s.output, 'stop now');
    release();
    await e.drain();
    e.close();
    assert.deepEqual(ran.sort(), ['p', 'q', 'r'], 'the two running and the one queued all ran');
    const h = e.record('t1')!.history;
    assert.equal(h.filter((x) => x.EventType === EV.TaskCompleted).length, 0, 'their outcomes were dropped');
    assert.ok(e.stats.staleMessages >= 3);
    assert.equal(h.filter((x) => x.EventType === EV.TaskScheduled && x['Name'] === 'echo').length, 0, 'nothing ran after the terminate');
    await e.terminate('t1', 'again');
    assert.equal((await e.status('t1'))!.output, 'stop now', 'a second terminate of an ended instance changes nothing');
  });

  test('suspended while its storage restarts: an outcome that arrives is neither recorded nor saved, and reload from the saved records runs the activity again', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let runs = 0;
    activity('untilRelease', async (i) => {
      runs++;
      await gate;
      return i;
    });
    orchestration('suspendable', function* (ctx) {
      return yield ctx.df.callActivity('untilRelease', 'plan');
    });
    const saves: string[] = [];
    const e = engine({ onChange: (rec) => void saves.push(JSON.stringify(rec)) });
    await e.start('suspendable', 's1', null);
    for (let i = 0; i < 200 && runs < 1; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(runs, 1);
    e.suspend();
    const saved = saves.length;
    release();
    await e.drain();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(saves.length, saved, 'nothing was saved while suspended');
    assert.equal(e.record('s1')!.history.filter((x) => x.EventType === EV.TaskCompleted).length, 0, 'the outcome was not recorded');
    e.reload([JSON.parse(saves.at(-1)!) as InstanceRecord]);
    const s = await e.waitFor('s1', 5000);
    assert.equal(s.runtimeStatus, 'Completed');
    assert.equal(s.output, 'plan');
    assert.equal(runs, 2, 'the activity ran again from the saved state');
    e.close();
  });

  test('an activity whose process is lost is delivered again after the visibility timeout, without using a retry; poison after maxDequeueCount', async () => {
    orchestration('lossy', function* (ctx) {
      const r = retryOf(1);
      return yield ctx.df.callActivityWithRetry('echo', r, ctx.df.getInput());
    });
    const deliveries: number[] = [];
    const lose = (times: number): ActivityRunner => async (_name, input, _attempt, run) => {
      deliveries.push(Date.now());
      if (deliveries.length <= times) throw new ActivityLostError(`worker died running ${String(input)}`);
      return run();
    };
    const e = engine({ runActivity: lose(2), visibilityTimeoutMs: 60 });
    await e.start('lossy', 'l1', 'hello');
    const s = await e.waitFor('l1', 5000);
    e.close();
    assert.equal(s.runtimeStatus, 'Completed', String(s.output));
    assert.equal(s.output, 'hello');
    assert.equal(deliveries.length, 3);
    assert.ok(deliveries[1]! - deliveries[0]! >= 55 && deliveries[2]! - deliveries[1]! >= 55, 'each redelivery waits for the visibility timeout');
    assert.equal(e.stats.redeliveries, 2);
    assert.equal(e.record('l1')!.history.filter((x) => x.EventType === EV.TaskScheduled).length, 1, 'one attempt: a lost process is not a failure');

    deliveries.length = 0;
    const p = engine({ runActivity: lose(100), visibilityTimeoutMs: 5, maxDequeueCount: 4 });
    await p.start('lossy', 'l2', 'x');
    const s2 = await p.waitFor('l2', 5000);
    p.close();
    assert.equal(s2.runtimeStatus, 'Failed');
    assert.match(String(s2.output), /delivered 4 times and each time its process was lost; it is given up as a poison message/);
    assert.equal(deliveries.length, 4);
    assert.equal(p.stats.poisoned, 1);
  });

  test("an activity running past host.json's functionTimeout is cancelled and failed with the host's message; the retry policy applies", async () => {
    const configured = functionTimeoutMs()!;
    assert.equal(configured, parseTimeSpan('00:30:00'), 'host.json sets 30 minutes');
    orchestration('timed', function* (ctx) {
      return yield ctx.df.callActivityWithRetry('sleepy', retryOf(2), ctx.df.getInput());
    });
    const signals: AbortSignal[] = [];
    activity('sleepy', (ms) => new Promise((r) => setTimeout(() => r(`slept ${String(ms)}`), ms as number)));
    const runner: ActivityRunner = (_n, _i, attempt, run, signal) => {
      signals.push(signal);
      // The first attempt hangs; the retry is quick.
      return attempt === 1 ? new Promise(() => undefined) : run();
    };
    const scale = 100 / configured; // 30 minutes -> 100 ms
    const e = engine({ runActivity: runner, timeoutScale: scale });
    await e.start('timed', 'to', 10);
    const s = await e.waitFor('to', 5000);
    e.close();
    assert.equal(s.runtimeStatus, 'Completed', String(s.output));
    assert.equal(s.output, 'slept 10');
    assert.equal(e.stats.timeouts, 1);
    assert.equal(signals[0]!.aborted, true, 'the runner is told to cancel (a pool kills the process)');
    assert.match(String((signals[0]!.reason as Error).message), /^Timeout value of 00:00:00\.1000000 exceeded by function 'Functions\.sleepy' \(Id: '[0-9a-f-]{36}'\)\. Initiating cancellation\.$/);
    const failedEvent = e.record('to')!.history.find((x) => x.EventType === EV.TaskFailed)!;
    assert.match(String(failedEvent['Reason']), /^Timeout value of 00:00:00\.1000000 exceeded/);
    assert.equal(formatTimeSpan(30 * 60_000), '00:30:00');
    assert.equal(parseTimeSpan('1.02:03:04.5'), ((24 + 2) * 3600 + 3 * 60 + 4) * 1000 + 500);
    assert.equal(parseTimeSpan('-1'), undefined);
  });

  test('payload limits: a custom status over 16 KB fails the instance as the extension does; messages over 45 KB are counted as large messages', async () => {
    orchestration('chatty', function* (ctx) {
      const big = (yield ctx.df.callActivity('blob', 50 * 1024)) as string;
      ctx.df.setCustomStatus({ note: 'x'.repeat((ctx.df.getInput() as number) / 2) });
      yield ctx.df.callActivity('echo', big.length);
      return big.length;
    });
    activity('blob', (n) => 'b'.repeat(n as number));
    const logs: string[] = [];
    const ok = engine({ log: (m) => logs.push(m) });
    await ok.start('chatty', 'c1', 16 * 1024); // 16 KB of UTF-16 and a little more: the extension's KB is truncated
    const s1 = await ok.waitFor('c1', 5000);
    ok.close();
    assert.equal(s1.runtimeStatus, 'Completed', String(s1.output));
    assert.equal(ok.stats.largeMessages, 1, 'the 50 KB result');
    assert.ok(logs.some((l) => /large message: result of blob \(task 0 of c1\) is 50\.\d KB/.test(l)), logs.join('\n'));

    const bad = engine();
    await bad.start('chatty', 'c2', 17 * 1024);
    const s2 = await bad.waitFor('c2', 5000);
    bad.close();
    assert.equal(s2.runtimeStatus, 'Failed');
    assert.equal(s2.output, 'The UTF-16 size of the JSON-serialized payload must not exceed 16 KB. The current payload size is 17 KB.');
  });
});

function retryOf(maxAttempts: number): df.RetryOptions {
  return new df.RetryOptions(5, maxAttempts);
}

describe('property: the real job orchestrator under any delivery schedule', () => {
  // The real inferenceJob orchestrator with stand-in activities: seeded transient failures (that
  // succeed on a later attempt), permanent ones, lost processes, duplicate runs, random batches and
  // continueAsNew every few partitions. Every seed must count every partition exactly once, under
  // its own number.
  const SEEDS = 40;
  const PARTITIONS = 23;
  const real = registeredFunctions().get('inferenceJob')!;
  const seen = { duplicateRuns: 0, duplicateCompletions: 0, redeliveries: 0, maxBatch: 0, staleMessages: 0 };
  const job = parseJobRequest({ jobId: 'p', input: { container: 'images' }, output: { container: 'results' }, model: { name: 'm' }, partitionSize: 10, toleratedFailurePercent: 100 }, new Date('2026-01-01T00:00:00Z'));

  for (let seed = 1; seed <= SEEDS; seed++) {
    test(`seed ${seed}`, async () => {
      const rand = seeded(seed * 7919);
      const permanent = new Set<number>();
      const transient = new Map<number, number>();
      for (let n = 0; n < PARTITIONS; n++) {
        const r = rand();
        if (r < 0.12) permanent.add(n);
        else if (r < 0.4) transient.set(n, 1 + Math.floor(rand() * 2)); // fails 1 or 2 times, then succeeds
      }
      const failuresSeen = new Map<number, number>();
      let finalInput: { failedPartitions: JobState['failedPartitions'] } | undefined;
      const fake = (name: string, handler: (input: unknown) => unknown): RegisteredFunction => ({ name, bindings: {}, trigger: { name: 't', type: 'activityTrigger' }, handler: async (i: unknown) => handler(i) });
      const fns = new Map<string, RegisteredFunction>([
        ['inferenceJob', real],
        ['planJob', fake('planJob', () => ({ ok: true, value: { partitions: PARTITIONS, total: PARTITIONS * 10 - 3, bytes: 0, model: { name: 'm', etag: 'e', jsonEtag: 'j' } } }))],
        ['inferPartition', fake('inferPartition', (i) => {
          const n = (i as { n: number }).n;
          if (permanent.has(n)) {
            if (n % 2 === 0) throw new Error(`partition ${n} is broken`);
            return { ok: false, error: { code: 'Broken', message: `partition ${n} cannot be read` } };
          }
          const seen = failuresSeen.get(n) ?? 0;
          if (seen < (transient.get(n) ?? 0)) {
            failuresSeen.set(n, seen + 1);
            throw new Error(`transient failure ${seen + 1} of partition ${n}`);
          }
          const images = n === PARTITIONS - 1 ? 7 : 10;
          return { ok: true, value: { n, done: true, images, succeeded: images, failed: 0, skipped: 0, detections: n * 1000 + images, wallMs: 1 } };
        })],
        ['finalizeJob', fake('finalizeJob', (i) => {
          finalInput = i as { failedPartitions: JobState['failedPartitions'] };
          return { ok: true, value: { status: (i as { status: string }).status, counts: (i as { totals: unknown }).totals, files: [] } };
        })],
      ]);
      const runner: ActivityRunner = async (_name, _input, _attempt, run) => {
        await new Promise((r) => setTimeout(r, Math.floor(rand() * 4)));
        if (rand() < 0.05) throw new ActivityLostError('process lost');
        return run();
      };
      const e = new DurableEngine(fns, { seed, maxConcurrentActivities: 1 + (seed % 5), runActivity: runner, duplicateRate: 0.2, visibilityTimeoutMs: 2, maxDequeueCount: 50 });
      const options = { parallel: 1 + (seed % 6), perGeneration: 3 + (seed % 5), retry: { firstRetryMs: 1, maxAttempts: 3, backoffCoefficient: 1, maxRetryMs: 2 } };
      await e.start('inferenceJob', `p${seed}`, { job, options });
      const s = await e.waitFor(`p${seed}`, 60_000);
      await e.drain();
      e.close();
      for (const k of Object.keys(seen) as (keyof typeof seen)[]) seen[k] = k === 'maxBatch' ? Math.max(seen[k], e.stats[k]) : seen[k] + e.stats[k];
      assert.equal(s.runtimeStatus, 'Completed', String(s.output));
      const state = (s.input as { state?: JobState }).state;
      assert.equal(state?.generation, Math.ceil(PARTITIONS / options.perGeneration) - 1, 'continued as new every perGeneration partitions');
      const totals = (s.output as { counts: JobState['totals'] }).counts;
      const good = [...Array(PARTITIONS).keys()].filter((n) => !permanent.has(n));
      const imagesOf = (n: number): number => (n === PARTITIONS - 1 ? 7 : 10);
      assert.equal(totals.partitionsDone, good.length);
      assert.equal(totals.partitionsFailed, permanent.size);
      assert.equal(totals.images, PARTITIONS * 10 - 3);
      assert.equal(totals.succeeded, good.reduce((a, n) => a + imagesOf(n), 0));
      assert.equal(totals.detections, good.reduce((a, n) => a + n * 1000 + imagesOf(n), 0), 'each result counted once, under its own partition');
      const listed = finalInput!.failedPartitions;
      assert.deepEqual(listed.map((f) => f.n).sort((a, b) => a - b), [...permanent].sort((a, b) => a - b).slice(0, MAX_LISTED_FAILURES));
      for (const f of listed) assert.match(f.message, new RegExp(`partition ${f.n} `), `failure of ${f.n} carries its own message`);
      for (const [n, times] of transient) assert.equal(failuresSeen.get(n), times, `partition ${n} failed ${times} times, then succeeded`);
    });
  }

  test('the seeds exercised what they are for', () => {
    assert.ok(seen.duplicateRuns > 20 && seen.duplicateCompletions > 20, `duplicate runs ${seen.duplicateRuns}, duplicate completions dropped ${seen.duplicateCompletions}`);
    assert.ok(seen.redeliveries > 10, `redeliveries ${seen.redeliveries}`);
    assert.ok(seen.maxBatch > 1, `largest batch ${seen.maxBatch}`);
    console.log(`property: ${SEEDS} seeds, ${JSON.stringify(seen)}`);
  });
});
