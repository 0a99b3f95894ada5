/**
 * A local Durable Task engine for the registered functions, as strict as the Durable Functions
 * extension (Azure Storage provider) is with an out-of-process JavaScript app:
 *
 * - Protocol: the SDK is called with the binding data the extension sends (replay schema V3: one
 *   action list, compound WhenAll/WhenAny actions) and its actions are replayed as the extension's
 *   shim and the Durable Task Framework replay them (./replay): task numbers, the retry
 *   interceptor's timers, and a non-deterministic orchestration error when the replay disagrees
 *   with history.
 * - Delivery: completions wait in the instance's queue (a few ms, as between control-queue polls)
 *   and are handed to the orchestrator in batches of 1..32 in arrival order (seeded random by
 *   default, or a fixed size); a completion delivered twice is dropped, as the Azure Storage
 *   provider drops duplicates.
 * - Terminate only enqueues a message: the status changes when the engine processes it; running
 *   and queued activities still run, and their outcomes are dropped.
 * - Activities: at most maxConcurrentActivities at once; each attempt is cancelled and failed after
 *   host.json's functionTimeout; an attempt whose process died is delivered again after the
 *   work-item visibility timeout, outside the retry count (poison after maxDequeueCount
 *   deliveries); optionally a completed attempt runs once more (at-least-once delivery).
 * - Limits: a custom status over 16 KB (UTF-16) fails the instance with the extension's message;
 *   messages over 45 KB are counted and logged (Azure stores them as large-message blobs).
 *
 * Supported actions: CallActivity, CallActivityWithRetry, CreateTimer, ContinueAsNew, WhenAll,
 * WhenAny, WaitForExternalEvent (raiseEvent). Sub-orchestrations, entities and durable HTTP fail
 * the instance with a clear message.
 *
 * This file is the instance loop (queue, episodes, terminate, timers); records.ts holds what an
 * instance is, attempt.ts runs one activity attempt or orchestrator episode, messages.ts sizes
 * the history messages, replay.ts is the shim's replay, endpoints.ts the HTTP API of the engine.
 */
import type { InstanceFilter, InstanceStatus, JobClient } from '../../api/jobs';
import type { RegisteredFunction } from '../functions/functionsHost';
import { functionTimeoutMs } from '../functions/hostJson';
import { runActivityAttempt, runOrchestratorEpisode, Slots, type AttemptDeps } from './attempt';
import { completedEvent, scheduledEvent, sizer, type Sizer } from './messages';
import { seeded } from './random';
import {
  failed,
  firstCompletions,
  inFlight,
  isActive,
  LARGE_MESSAGE_BYTES,
  MAX_BATCH,
  MAX_CUSTOM_STATUS_KB,
  normalise,
  ORCHESTRATION_BINDING,
  safeParse,
  statusOf,
  listInstances,
  type EngineOptions,
  type EngineStats,
  type InstanceRecord,
  type QueuedMessage,
  type Work,
} from './records';
import { EV, replayShim, type HistoryEvent } from './replay';

export type { HistoryEvent } from './replay';
export { LARGE_MESSAGE_BYTES, MAX_BATCH, MAX_CUSTOM_STATUS_KB, ORCHESTRATION_BINDING, statusOf };
export type { ActivityRunner, EngineOptions, EngineStats, InstanceRecord, QueuedMessage } from './records';
type Waiter = (s: InstanceStatus) => void;

export class DurableEngine implements JobClient {
  readonly stats: EngineStats = { episodes: 0, messages: 0, maxBatch: 0, activityRuns: 0, duplicateRuns: 0, duplicateCompletions: 0, redeliveries: 0, poisoned: 0, timeouts: 0, largeMessages: 0, staleMessages: 0 };
  private readonly instances = new Map<string, InstanceRecord>();
  private readonly busy = new Set<InstanceRecord>();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;
  private suspended = false;
  private readonly rand: () => number;
  private readonly timeoutMs: number;
  private readonly slots: Slots;
  /** Counts and logs a message over 45 KB, which Azure would carry in a large-message blob. */
  private readonly sized: Sizer = sizer(this.stats, (m) => this.opts.log?.(m));

  constructor(
    private readonly functions: ReadonlyMap<string, RegisteredFunction>,
    private readonly opts: EngineOptions = {},
  ) {
    this.rand = seeded(opts.seed ?? 1);
    this.slots = new Slots(opts.maxConcurrentActivities ?? 4);
    const batch = opts.batch ?? 'random';
    if (batch !== 'random' && !(Number.isInteger(batch) && batch >= 1 && batch <= MAX_BATCH)) throw new RangeError(`batch must be 'random' or an integer 1..${MAX_BATCH}, got ${batch}`);
    this.timeoutMs = (opts.functionTimeoutMs ?? functionTimeoutMs() ?? Number.POSITIVE_INFINITY) * (opts.timeoutScale ?? 1);
  }

  private attemptDeps(): AttemptDeps {
    return { functions: this.functions, timeoutMs: this.timeoutMs, runActivity: this.opts.runActivity, log: this.opts.log, stats: this.stats };
  }

  // ----- JobClient ------------------------------------------------------------------------------

  /** Whether an orchestrator of this name is registered. */
  hasOrchestrator(name: string): boolean {
    return this.functions.get(name)?.trigger.type === 'orchestrationTrigger';
  }

  async start(name: string, instanceId: string, input: unknown): Promise<void> {
    if (!this.hasOrchestrator(name)) throw new Error(`no orchestrator function named '${name}'`);
    const now = new Date().toISOString();
    const prev = this.instances.get(instanceId);
    const execution = (prev?.execution ?? 0) + 1;
    const rec: InstanceRecord = { instanceId, name, input, runtimeStatus: 'Pending', createdTime: now, lastUpdatedTime: now, history: [], pending: [{ execution, event: this.started(name, input, now) }], execution };
    this.instances.set(instanceId, rec);
    await this.changed(rec);
    void this.pump(rec);
  }

  /** The instances matching a filter, inputs left out (the instance query of the Durable client). */
  async list(filter: InstanceFilter): Promise<InstanceStatus[]> {
    return listInstances(this.instances.values(), filter);
  }

  async status(instanceId: string): Promise<InstanceStatus | undefined> {
    const r = this.instances.get(instanceId);
    return r ? statusOf(r) : undefined;
  }

  /**
   * Enqueues a terminate request, as the extension does: the instance stays Running until the
   * engine processes it; activities running or queued still run, and their outcomes are dropped.
   */
  async terminate(instanceId: string, reason: string): Promise<void> {
    await this.message(instanceId, { EventType: EV.ExecutionTerminated, EventId: -1, IsPlayed: false, Timestamp: new Date().toISOString(), Input: JSON.stringify(reason) });
  }

  /**
   * Raises an event (the client's raiseEvent): a message for the instance, taken by whichever
   * execution is current when it is processed. False when there is no such instance or it ended.
   */
  async raiseEvent(instanceId: string, name: string, data: unknown): Promise<boolean> {
    return this.message(instanceId, { EventType: EV.EventRaised, EventId: -1, IsPlayed: false, Timestamp: new Date().toISOString(), Name: name, Input: JSON.stringify(data ?? null) });
  }

  /** Queues a message for any execution of a running instance (false: none such). */
  private async message(instanceId: string, event: HistoryEvent): Promise<boolean> {
    const r = this.instances.get(instanceId);
    if (!r || !isActive(r.runtimeStatus)) return false;
    r.pending.push({ execution: 'any', event });
    await this.changed(r);
    // Processed from the queue, never within the call: the caller sees the instance still running.
    setImmediate(() => void this.pump(r));
    return true;
  }

  // ----- for the local host and tests ----------------------------------------------------------

  /**
   * Takes back an instance saved before a restart: its saved messages are processed, and whatever
   * was in flight (activities scheduled without an outcome, timers not fired) starts again.
   * Activities must be idempotent: one that finished but whose outcome was not saved runs again.
   */
  resume(saved: InstanceRecord): void {
    const rec = normalise(saved);
    this.instances.set(rec.instanceId, rec);
    if (!isActive(rec.runtimeStatus)) return;
    const execution = rec.execution;
    const open = inFlight(rec);
    for (const w of open.attempts) this.runAttempt(rec, execution, w);
    for (const t of open.timers) this.fireTimer(rec, execution, t.id, t.fireAt);
    if (rec.history.length === 0 && !rec.pending.some((m) => m.event.EventType === EV.ExecutionStarted)) {
      rec.pending.unshift({ execution, event: this.started(rec.name, rec.input, new Date().toISOString()) });
    }
    if (rec.pending.length > 0) void this.pump(rec);
  }

  waitFor(instanceId: string, timeoutMs = 600_000): Promise<InstanceStatus> {
    const r = this.instances.get(instanceId);
    if (!r) return Promise.reject(new Error(`no instance '${instanceId}'`));
    if (!isActive(r.runtimeStatus)) return Promise.resolve(statusOf(r));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`instance ${instanceId} still ${r.runtimeStatus} after ${timeoutMs} ms`)), timeoutMs);
      const list = this.waiters.get(instanceId) ?? [];
      list.push((s) => {
        clearTimeout(t);
        resolve(s);
      });
      this.waiters.set(instanceId, list);
    });
  }

  /**
   * Deletes a finished instance's history (purgeInstanceHistory): false when there is no such
   * instance or it is still running.
   */
  async purge(instanceId: string): Promise<boolean> {
    const r = this.instances.get(instanceId);
    if (!r || isActive(r.runtimeStatus)) return false;
    this.instances.delete(instanceId);
    await this.opts.onPurge?.(instanceId);
    return true;
  }

  record(instanceId: string): InstanceRecord | undefined {
    return this.instances.get(instanceId);
  }

  /** Every instance this engine holds. */
  records(): InstanceRecord[] {
    return [...this.instances.values()];
  }

  /**
   * Replaces every instance with the given records (what storage holds after the storage emulator
   * came back from a crash, older than memory): work in flight for the replaced records is dropped
   * and each instance goes on from its saved state, so orchestration state and data agree again.
   */
  reload(records: InstanceRecord[]): void {
    this.halt();
    this.instances.clear();
    this.suspended = false;
    for (const rec of records) this.resume(rec);
  }

  /** Resolves once no activity is running or waiting for a slot (at-least-once re-runs included). */
  async drain(pollMs = 10): Promise<void> {
    while (this.slots.busy) await new Promise((r) => setTimeout(r, pollMs));
  }

  /** Storage gone (reload follows): nothing is recorded, saved or started until then. */
  suspend(): void {
    this.suspended = true;
    this.halt();
  }

  /** Stops timers and new work; activities already running finish but are not recorded. */
  close(): void {
    this.closed = true;
    this.halt();
  }

  private halt(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.slots.clear();
  }

  // ----- the orchestration loop ----------------------------------------------------------------

  private started(name: string, input: unknown, now: string): HistoryEvent {
    return this.sized({ EventType: EV.ExecutionStarted, EventId: -1, IsPlayed: false, Timestamp: now, Name: name, Input: JSON.stringify(input ?? null) }, 'Input', `orchestration input of ${name}`);
  }

  /** Whether rec is the record this engine holds for its instance (not one replaced by reload or a new start). */
  private current(rec: InstanceRecord): boolean {
    return !this.suspended && this.instances.get(rec.instanceId) === rec;
  }

  private batchSize(): number {
    const b = this.opts.batch ?? 'random';
    return b === 'random' ? 1 + Math.floor(this.rand() * MAX_BATCH) : b;
  }

  private async pump(rec: InstanceRecord): Promise<void> {
    if (this.busy.has(rec)) return;
    this.busy.add(rec);
    try {
      const delay = this.opts.dequeueDelayMs ?? 2;
      while (!this.closed && this.current(rec) && isActive(rec.runtimeStatus) && rec.pending.length > 0) {
        if (delay > 0) await new Promise((r) => setTimeout(r, Math.floor(this.rand() * (delay + 1))));
        if (this.closed || !this.current(rec)) break;
        await this.episode(rec, rec.pending.splice(0, this.batchSize()));
      }
    } catch (err) {
      // A closing engine (the host stopping, its storage gone) leaves the instance as saved.
      if (this.closed || !this.current(rec)) return;
      this.opts.log?.(`engine error on ${rec.instanceId}: ${(err as Error).stack}`);
      rec.runtimeStatus = 'Failed';
      rec.output = `local host error: ${(err as Error).message}`;
      await this.changed(rec).catch((e: unknown) => this.opts.log?.(`engine: could not save ${rec.instanceId}: ${(e as Error).message}`));
      this.settle(rec);
    } finally {
      this.busy.delete(rec);
    }
  }

  /** One batch of messages: terminate, or the orchestrator replayed over the history they extend. */
  private async episode(rec: InstanceRecord, messages: QueuedMessage[]): Promise<void> {
    const now = new Date().toISOString();
    const fresh = messages.filter((m) => m.execution === 'any' || m.execution === rec.execution).map((m) => m.event);
    this.stats.staleMessages += messages.length - fresh.length;
    const terminated = fresh.find((e) => e.EventType === EV.ExecutionTerminated);
    if (terminated) {
      for (const e of rec.history) e.IsPlayed = true;
      rec.history.push({ EventType: EV.OrchestratorStarted, EventId: -1, IsPlayed: false, Timestamp: now }, terminated, { EventType: EV.OrchestratorCompleted, EventId: -1, IsPlayed: false, Timestamp: now });
      rec.runtimeStatus = 'Terminated';
      rec.output = safeParse(String(terminated['Input'] ?? '""'));
      rec.pending = [];
      rec.lastUpdatedTime = now;
      await this.changed(rec);
      this.settle(rec);
      return;
    }
    // A task or timer completes once: a second completion (an activity that ran twice) is dropped.
    const events = firstCompletions(rec.history, fresh, (key) => {
      this.stats.duplicateCompletions++;
      this.opts.log?.(`${rec.instanceId}: duplicate completion of ${key.replace(':', ' ')} dropped`);
    });
    if (events.length === 0) return;
    this.stats.episodes++;
    this.stats.messages += events.length;
    this.stats.maxBatch = Math.max(this.stats.maxBatch, events.length);

    for (const e of rec.history) e.IsPlayed = true;
    rec.history.push({ EventType: EV.OrchestratorStarted, EventId: -1, IsPlayed: false, Timestamp: now }, ...events);
    if (rec.runtimeStatus === 'Pending') rec.runtimeStatus = 'Running';
    const execution = rec.execution;
    const state = await runOrchestratorEpisode(this.functions.get(rec.name)!, rec);
    if (this.closed || !this.current(rec) || execution !== rec.execution) return;
    rec.lastUpdatedTime = now;

    const replay = replayShim(rec.history, state.actions.flat());
    let failure = replay.nondeterminism ?? replay.unsupported;
    if (!failure && state.customStatus !== undefined) {
      const kb = Math.floor(Buffer.byteLength(JSON.stringify(state.customStatus), 'utf16le') / 1024);
      if (kb > MAX_CUSTOM_STATUS_KB) failure = `The UTF-16 size of the JSON-serialized payload must not exceed ${MAX_CUSTOM_STATUS_KB} KB. The current payload size is ${kb} KB.`;
      else rec.customStatus = state.customStatus;
    }
    failure ??= state.error;
    if (failure !== undefined) {
      rec.runtimeStatus = 'Failed';
      rec.output = failure;
    } else {
      for (const w of replay.fresh) rec.history.push(scheduledEvent(this.sized, rec, w, now));
      if (replay.continueAsNew) {
        // A new execution of the same instance: the new input, an empty history; messages of the
        // old execution are dropped when they come (a terminate still applies).
        const input = replay.continueAsNew.input;
        rec.input = input;
        rec.history = [];
        rec.execution++;
        rec.pending = [...rec.pending.filter((m) => m.execution === 'any'), { execution: rec.execution, event: this.started(rec.name, input, new Date().toISOString()) }];
        await this.changed(rec);
        return;
      }
      if (state.isDone) {
        rec.runtimeStatus = 'Completed';
        rec.output = state.output;
        if (state.output !== undefined) this.sized({ Result: JSON.stringify(state.output) }, 'Result', `output of ${rec.name} ${rec.instanceId}`);
      }
    }
    rec.history.push({ EventType: EV.OrchestratorCompleted, EventId: -1, IsPlayed: false, Timestamp: now });
    await this.changed(rec);
    if (!this.current(rec)) return;
    if (failure === undefined && !state.isDone) {
      for (const w of replay.fresh) {
        if (w.kind === 'activity') this.runAttempt(rec, execution, w);
        else this.fireTimer(rec, execution, w.id, new Date(w.fireAt));
      }
    }
    if (!isActive(rec.runtimeStatus)) this.settle(rec);
  }

  // ----- messages back to the orchestration -----------------------------------------------------

  private enqueue(rec: InstanceRecord, execution: number, event: HistoryEvent): void {
    if (this.closed || !this.current(rec)) return;
    if (execution !== rec.execution || !isActive(rec.runtimeStatus)) {
      this.stats.staleMessages++;
      return;
    }
    rec.pending.push({ execution, event });
    void this.pump(rec);
  }

  /** One delivery of an activity message: runs it and sends its outcome back. */
  private runAttempt(rec: InstanceRecord, execution: number, w: Work, dequeue = 1): void {
    this.slots.run(async () => {
      // Queued work still runs after a terminate; only a replaced record or a closed engine drops it.
      if (this.closed || !this.current(rec)) return;
      const outcome = await runActivityAttempt(this.attemptDeps(), w);
      if (this.closed || !this.current(rec)) return;
      if (outcome.lost) {
        const max = this.opts.maxDequeueCount ?? 5;
        if (dequeue >= max) {
          this.stats.poisoned++;
          this.enqueue(rec, execution, failed(w.id, `the message of activity ${w.name} (task ${w.id}) was delivered ${dequeue} times and each time its process was lost; it is given up as a poison message`, outcome.error));
          return;
        }
        const wait = this.opts.visibilityTimeoutMs ?? 300_000;
        this.stats.redeliveries++;
        this.opts.log?.(`activity ${w.name} (task ${w.id}, attempt ${w.attempt}) was lost with its process (${outcome.error.message}); its message becomes visible again in ${wait} ms (delivery ${dequeue + 1})`);
        this.after(wait, () => this.runAttempt(rec, execution, w, dequeue + 1));
        return;
      }
      this.enqueue(rec, execution, outcome.ok ? completedEvent(this.sized, rec, w, outcome.result) : failed(w.id, outcome.error.message, outcome.error));
      if (outcome.ok && (this.opts.duplicateRate ?? 0) > 0 && this.rand() < this.opts.duplicateRate!) {
        // At-least-once: the same message processed once more (its visibility timeout ran out, or
        // the instance died before deleting it); the second completion is a duplicate.
        this.stats.duplicateRuns++;
        this.slots.run(async () => {
          if (this.closed || !this.current(rec)) return;
          const again = await runActivityAttempt(this.attemptDeps(), w);
          if (!again.lost) this.enqueue(rec, execution, again.ok ? completedEvent(this.sized, rec, w, again.result) : failed(w.id, again.error.message, again.error));
        });
      }
    });
  }

  private fireTimer(rec: InstanceRecord, execution: number, id: number, fireAt: Date): void {
    this.after(Math.max(0, (fireAt.getTime() - Date.now()) * (this.opts.timerScale ?? 1)), () => {
      this.enqueue(rec, execution, { EventType: EV.TimerFired, EventId: -1, IsPlayed: false, Timestamp: new Date().toISOString(), TimerId: id, FireAt: fireAt.toISOString() });
    });
  }

  private after(ms: number, fn: () => void): void {
    if (this.closed) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private async changed(rec: InstanceRecord): Promise<void> {
    // A record replaced by reload must not overwrite the state it was replaced with.
    if (!this.current(rec)) return;
    await this.opts.onChange?.(rec);
  }

  private settle(rec: InstanceRecord): void {
    const list = this.waiters.get(rec.instanceId) ?? [];
    this.waiters.delete(rec.instanceId);
    for (const w of list) w(statusOf(rec));
  }
}
