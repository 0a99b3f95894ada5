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
 * WhenAny. Sub-orchestrations, entities, external events and durable HTTP fail the instance with
 * a clear message.
 */
import { randomUUID } from 'node:crypto';
import { InvocationContext } from '@azure/functions';
import type { InstanceFilter, InstanceStatus, JobClient, RuntimeStatus } from '../api';
import { FunctionTimeoutError, isActivityLost } from './activityErrors';
import type { RegisteredFunction } from './functionsHost';
import { formatTimeSpan, functionTimeoutMs } from './hostJson';
import { seeded } from './random';
import { EV, replayShim, type Action, type HistoryEvent, type NewWork } from './replay';

export type { HistoryEvent } from './replay';

/** The binding data the extension sends with an orchestration (V3 negotiated as it negotiates it). */
export const ORCHESTRATION_BINDING = {
  isReplaying: false,
  parentInstanceId: '',
  upperSchemaVersion: 1,
  upperSchemaVersionNew: 2,
  longRunningTimerIntervalDuration: '3.00:00:00',
  maximumShortTimerDuration: '6.00:00:00',
  defaultHttpAsyncRequestSleepTimeMillseconds: 30_000,
} as const;

/** Most messages the extension hands to one orchestration episode (controlQueueBatchSize). */
export const MAX_BATCH = 32;
/** Queue messages larger than this go to large-message blobs on Azure (DurableTask.AzureStorage). */
export const LARGE_MESSAGE_BYTES = 45 * 1024;
/** The extension's limit on an orchestration's custom status, in KB of UTF-16. */
export const MAX_CUSTOM_STATUS_KB = 16;

interface OrchestratorState {
  isDone: boolean;
  actions: Action[][];
  output?: unknown;
  error?: string;
  customStatus?: unknown;
}

/** A message in an instance's control queue: an event for one execution ('any': terminate). */
export interface QueuedMessage {
  execution: number | 'any';
  event: HistoryEvent;
}

export interface InstanceRecord {
  instanceId: string;
  name: string;
  input: unknown;
  runtimeStatus: RuntimeStatus;
  customStatus?: unknown;
  output?: unknown;
  createdTime: string;
  lastUpdatedTime: string;
  /** History of the current execution. */
  history: HistoryEvent[];
  /**
   * Messages not processed yet. Saved with the record (a start or terminate is saved before it is
   * acknowledged); a completion not saved yet is lost with the process, and its activity runs again.
   */
  pending: QueuedMessage[];
  /** Incremented by continueAsNew and by a new start: messages of an older execution are dropped. */
  execution: number;
}

/**
 * Wraps each activity attempt: fault injection in tests, a worker pool in the local host. `signal`
 * aborts when the attempt exceeds functionTimeout (a pool kills the process running it).
 */
export type ActivityRunner = (name: string, input: unknown, attempt: number, run: () => Promise<unknown>, signal: AbortSignal) => Promise<unknown>;

export interface EngineOptions {
  /** Activities running at once (like maxConcurrentActivityFunctions across instances). */
  maxConcurrentActivities?: number;
  runActivity?: ActivityRunner;
  /** Called after every change of an instance (the local host persists it). */
  onChange?: (record: InstanceRecord) => void | Promise<void>;
  /** Called when an instance's history is purged (the local host deletes its saved record). */
  onPurge?: (instanceId: string) => void | Promise<void>;
  log?: (message: string) => void;
  /** Messages per episode: a fixed count (1..32) or 'random' (1..32, seeded; the default). */
  batch?: number | 'random';
  /**
   * Longest wait before a batch is taken (seeded random 0..this ms), as messages gather in the
   * control queue between polls on Azure; default 2.
   */
  dequeueDelayMs?: number;
  /** Seed of the delivery schedule and of at-least-once re-runs (default 1). */
  seed?: number;
  /** functionTimeout in ms (default: host.json's); Infinity for none. */
  functionTimeoutMs?: number;
  /** Multiplies functionTimeout (tests: 0.001 turns 30 minutes into 1.8 s). Default 1. */
  timeoutScale?: number;
  /** Multiplies the wall time before a durable timer fires (tests: 0.01 turns a 1 s poll into 10 ms; FireAt is unchanged). Default 1. */
  timerScale?: number;
  /** Share of completed activity attempts that run once more, their completion delivered twice (0..1; default 0). */
  duplicateRate?: number;
  /** How long the message of an activity whose process died stays invisible before it is delivered again (default 5 min, Azure's). */
  visibilityTimeoutMs?: number;
  /** Deliveries of one activity message before it is failed as a poison message (default 5). */
  maxDequeueCount?: number;
}

export interface EngineStats {
  /** Orchestrator episodes run, messages they consumed, the largest batch. */
  episodes: number;
  messages: number;
  maxBatch: number;
  /** Activity attempts started (re-runs and redeliveries included). */
  activityRuns: number;
  /** Completed attempts run once more (at-least-once), and completions dropped as duplicates. */
  duplicateRuns: number;
  duplicateCompletions: number;
  /** Activity messages delivered again after their process died, and those given up as poison. */
  redeliveries: number;
  poisoned: number;
  /** Attempts failed for exceeding functionTimeout. */
  timeouts: number;
  /** Messages over 45 KB (large-message blobs on Azure). */
  largeMessages: number;
  /** Messages for an execution that had ended (after continueAsNew, terminate or a restart). */
  staleMessages: number;
}

type Waiter = (s: InstanceStatus) => void;

interface Work {
  id: number;
  name: string;
  input: unknown;
  attempt: number;
}

export class DurableEngine implements JobClient {
  readonly stats: EngineStats = { episodes: 0, messages: 0, maxBatch: 0, activityRuns: 0, duplicateRuns: 0, duplicateCompletions: 0, redeliveries: 0, poisoned: 0, timeouts: 0, largeMessages: 0, staleMessages: 0 };
  private readonly instances = new Map<string, InstanceRecord>();
  private readonly busy = new Set<InstanceRecord>();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private running = 0;
  private readonly queue: (() => void)[] = [];
  private closed = false;
  private readonly rand: () => number;
  private readonly timeoutMs: number;

  constructor(
    private readonly functions: ReadonlyMap<string, RegisteredFunction>,
    private readonly opts: EngineOptions = {},
  ) {
    this.rand = seeded(opts.seed ?? 1);
    const batch = opts.batch ?? 'random';
    if (batch !== 'random' && !(Number.isInteger(batch) && batch >= 1 && batch <= MAX_BATCH)) throw new RangeError(`batch must be 'random' or an integer 1..${MAX_BATCH}, got ${batch}`);
    this.timeoutMs = (opts.functionTimeoutMs ?? functionTimeoutMs() ?? Number.POSITIVE_INFINITY) * (opts.timeoutScale ?? 1);
  }

  // ----- JobClient ------------------------------------------------------------------------------

  async start(name: string, instanceId: string, input: unknown): Promise<void> {
    const fn = this.functions.get(name);
    if (!fn || fn.trigger.type !== 'orchestrationTrigger') throw new Error(`no orchestrator function named '${name}'`);
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
    const out: InstanceStatus[] = [];
    for (const r of this.instances.values()) {
      const s = statusOf(r);
      if (filter.runtimeStatus?.length && !filter.runtimeStatus.includes(s.runtimeStatus)) continue;
      if (filter.createdTimeFrom && (s.createdTime ?? '') < filter.createdTimeFrom.toISOString()) continue;
      if (filter.createdTimeTo && (s.createdTime ?? '') > filter.createdTimeTo.toISOString()) continue;
      delete s.input;
      out.push(s);
    }
    return out;
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
    const r = this.instances.get(instanceId);
    if (!r || !isActive(r.runtimeStatus)) return;
    r.pending.push({ execution: 'any', event: { EventType: EV.ExecutionTerminated, EventId: -1, IsPlayed: false, Timestamp: new Date().toISOString(), Input: JSON.stringify(reason) } });
    await this.changed(r);
    // Processed from the queue, never within the call: the caller sees the instance still running.
    setImmediate(() => void this.pump(r));
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
    const closed = new Set<string>();
    for (const e of [...rec.history, ...rec.pending.map((m) => m.event)]) {
      const key = completionKey(e);
      if (key) closed.add(key);
    }
    const tries = new Map<string, number>();
    for (const e of rec.history) {
      if (e.EventType === EV.TaskScheduled) {
        const attemptKey = `${String(e['Name'])}\u0000${String(e['Input'] ?? '')}`;
        const attempt = (tries.get(attemptKey) ?? 0) + 1;
        tries.set(attemptKey, attempt);
        if (!closed.has(`task:${e.EventId}`)) this.runAttempt(rec, execution, { id: e.EventId, name: String(e['Name']), input: safeParse(String(e['Input'] ?? 'null')), attempt });
      } else if (e.EventType === EV.TimerCreated && !closed.has(`timer:${e.EventId}`)) {
        this.fireTimer(rec, execution, e.EventId, new Date(String(e['FireAt'])));
      }
    }
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
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.queue.splice(0);
    this.instances.clear();
    for (const rec of records) this.resume(rec);
  }

  /** Resolves once no activity is running or waiting for a slot (at-least-once re-runs included). */
  async drain(pollMs = 10): Promise<void> {
    while (this.running > 0 || this.queue.length > 0) await new Promise((r) => setTimeout(r, pollMs));
  }

  /** Stops timers and new work; activities already running finish but are not recorded. */
  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.queue.splice(0);
  }

  // ----- the orchestration loop ----------------------------------------------------------------

  private started(name: string, input: unknown, now: string): HistoryEvent {
    return this.sized({ EventType: EV.ExecutionStarted, EventId: -1, IsPlayed: false, Timestamp: now, Name: name, Input: JSON.stringify(input ?? null) }, 'Input', `orchestration input of ${name}`);
  }

  /** Whether rec is the record this engine holds for its instance (not one replaced by reload or a new start). */
  private current(rec: InstanceRecord): boolean {
    return this.instances.get(rec.instanceId) === rec;
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
      this.opts.log?.(`engine error on ${rec.instanceId}: ${(err as Error).stack}`);
      rec.runtimeStatus = 'Failed';
      rec.output = `local host error: ${(err as Error).message}`;
      await this.changed(rec);
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
    const closed = new Set<string>();
    for (const e of rec.history) {
      const key = completionKey(e);
      if (key) closed.add(key);
    }
    const events = fresh.filter((e) => {
      const key = completionKey(e);
      if (!key) return true;
      if (closed.has(key)) {
        this.stats.duplicateCompletions++;
        this.opts.log?.(`${rec.instanceId}: duplicate completion of ${key.replace(':', ' ')} dropped`);
        return false;
      }
      closed.add(key);
      return true;
    });
    if (events.length === 0) return;
    this.stats.episodes++;
    this.stats.messages += events.length;
    this.stats.maxBatch = Math.max(this.stats.maxBatch, events.length);

    for (const e of rec.history) e.IsPlayed = true;
    rec.history.push({ EventType: EV.OrchestratorStarted, EventId: -1, IsPlayed: false, Timestamp: now }, ...events);
    if (rec.runtimeStatus === 'Pending') rec.runtimeStatus = 'Running';
    const execution = rec.execution;
    const state = await this.runOrchestrator(rec);
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
      for (const w of replay.fresh) rec.history.push(this.scheduledEvent(rec, w, now));
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

  private scheduledEvent(rec: InstanceRecord, w: NewWork, now: string): HistoryEvent {
    if (w.kind === 'timer') return { EventType: EV.TimerCreated, EventId: w.id, IsPlayed: false, Timestamp: now, FireAt: w.fireAt };
    return this.sized({ EventType: EV.TaskScheduled, EventId: w.id, IsPlayed: false, Timestamp: now, Name: w.name, Input: JSON.stringify(w.input ?? null) }, 'Input', `input of ${w.name} (task ${w.id} of ${rec.instanceId})`);
  }

  /** Counts and logs a message over 45 KB, which Azure would carry in a large-message blob. */
  private sized<T extends Record<string, unknown>>(message: T, field: string, what: string): T {
    const bytes = Buffer.byteLength(JSON.stringify(message), 'utf8');
    if (bytes > LARGE_MESSAGE_BYTES) {
      this.stats.largeMessages++;
      this.opts.log?.(`large message: ${what} is ${(bytes / 1024).toFixed(1)} KB (over 45 KB: stored as a blob on Azure, one more storage round trip each way); keep ${field} small`);
    }
    return message;
  }

  private async runOrchestrator(rec: InstanceRecord): Promise<OrchestratorState> {
    const fn = this.functions.get(rec.name)!;
    const context = new InvocationContext({ invocationId: randomUUID(), functionName: rec.name, logHandler: () => undefined });
    const binding = { ...ORCHESTRATION_BINDING, history: rec.history.map((e) => ({ ...e })), input: rec.input, instanceId: rec.instanceId };
    try {
      return (await fn.handler(binding, context)) as OrchestratorState;
    } catch (err) {
      // The SDK reports an orchestrator that threw as an error carrying its state after a marker.
      const msg = (err as Error).message ?? String(err);
      const at = msg.indexOf('\n\n$OutOfProcData$:');
      if (at < 0) throw err;
      const state = JSON.parse(msg.slice(at + '\n\n$OutOfProcData$:'.length)) as OrchestratorState;
      return { ...state, isDone: true, error: state.error ?? msg.slice(0, at) };
    }
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
    this.schedule(async () => {
      // Queued work still runs after a terminate; only a replaced record or a closed engine drops it.
      if (this.closed || !this.current(rec)) return;
      const outcome = await this.execute(w);
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
      this.enqueue(rec, execution, outcome.ok ? this.completed(rec, w, outcome.result) : failed(w.id, outcome.error.message, outcome.error));
      if (outcome.ok && (this.opts.duplicateRate ?? 0) > 0 && this.rand() < this.opts.duplicateRate!) {
        // At-least-once: the same message processed once more (its visibility timeout ran out, or
        // the instance died before deleting it); the second completion is a duplicate.
        this.stats.duplicateRuns++;
        this.schedule(async () => {
          if (this.closed || !this.current(rec)) return;
          const again = await this.execute(w);
          if (!again.lost) this.enqueue(rec, execution, again.ok ? this.completed(rec, w, again.result) : failed(w.id, again.error.message, again.error));
        });
      }
    });
  }

  private completed(rec: InstanceRecord, w: Work, result: unknown): HistoryEvent {
    return this.sized({ EventType: EV.TaskCompleted, EventId: -1, IsPlayed: false, Timestamp: new Date().toISOString(), TaskScheduledId: w.id, Result: JSON.stringify(result ?? null) }, 'Result', `result of ${w.name} (task ${w.id} of ${rec.instanceId})`);
  }

  /** Runs one attempt under functionTimeout. */
  private async execute(w: Work): Promise<{ ok: true; result: unknown; lost?: undefined } | { ok: false; error: Error; lost: boolean }> {
    const fn = this.functions.get(w.name);
    const invocationId = randomUUID();
    const run = async (): Promise<unknown> => {
      if (!fn || fn.trigger.type !== 'activityTrigger') throw new Error(`no activity function named '${w.name}'`);
      const context = new InvocationContext({ invocationId, functionName: w.name, logHandler: (level, ...args) => this.opts.log?.(`[${w.name}] ${level}: ${args.join(' ')}`) });
      return fn.handler(w.input, context);
    };
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      if (!Number.isFinite(this.timeoutMs)) return;
      timer = setTimeout(() => {
        const err = new FunctionTimeoutError(`Timeout value of ${formatTimeSpan(this.timeoutMs)} exceeded by function 'Functions.${w.name}' (Id: '${invocationId}'). Initiating cancellation.`);
        controller.abort(err);
        reject(err);
      }, this.timeoutMs);
    });
    this.stats.activityRuns++;
    try {
      const runner = this.opts.runActivity ?? ((_n, _i, _a, go) => go());
      const result = await Promise.race([runner(w.name, w.input, w.attempt, run, controller.signal), timeout]);
      return { ok: true, result };
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      if (error instanceof FunctionTimeoutError) {
        this.stats.timeouts++;
        this.opts.log?.(error.message);
      } else if (!isActivityLost(error)) {
        this.opts.log?.(`activity ${w.name} (task ${w.id}, attempt ${w.attempt}) failed: ${error.message}`);
      }
      return { ok: false, error, lost: isActivityLost(error) };
    } finally {
      clearTimeout(timer);
    }
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

  private schedule(job: () => Promise<void>): void {
    const limit = this.opts.maxConcurrentActivities ?? 4;
    const go = (): void => {
      this.running++;
      void job().finally(() => {
        this.running--;
        const next = this.queue.shift();
        if (next) next();
      });
    };
    if (this.running < limit) go();
    else this.queue.push(go);
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

function failed(id: number, reason: string, error: Error): HistoryEvent {
  return { EventType: EV.TaskFailed, EventId: -1, IsPlayed: false, Timestamp: new Date().toISOString(), TaskScheduledId: id, Reason: reason, Details: error.stack ?? '' };
}

/** 'task:<id>' or 'timer:<id>' for an event that completes a task or timer. */
function completionKey(e: HistoryEvent): string | undefined {
  if (e.EventType === EV.TaskCompleted || e.EventType === EV.TaskFailed) return `task:${Number(e['TaskScheduledId'])}`;
  if (e.EventType === EV.TimerFired) return `timer:${Number(e['TimerId'])}`;
  return undefined;
}

/** A saved record as this engine keeps it (records saved by older versions lack `pending`). */
function normalise(saved: InstanceRecord): InstanceRecord {
  const { instanceId, name, input, runtimeStatus, customStatus, output, createdTime, lastUpdatedTime, history, pending, execution } = saved;
  return { instanceId, name, input, runtimeStatus, customStatus, output, createdTime, lastUpdatedTime, history: history ?? [], pending: pending ?? [], execution: execution ?? 1 };
}

function isActive(s: RuntimeStatus): boolean {
  return s === 'Pending' || s === 'Running' || s === 'ContinuedAsNew' || s === 'Suspended';
}

function safeParse(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

export function statusOf(r: InstanceRecord): InstanceStatus {
  return {
    instanceId: r.instanceId,
    runtimeStatus: r.runtimeStatus,
    input: r.input,
    output: r.output,
    customStatus: r.customStatus,
    createdTime: r.createdTime,
    lastUpdatedTime: r.lastUpdatedTime,
  };
}
