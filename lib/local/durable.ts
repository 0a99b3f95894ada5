/**
 * A local Durable Task engine for the registered functions: it does what the Durable Functions
 * extension does for an out-of-process JavaScript app. Each orchestration step calls the
 * registered orchestrator handler (the real durable-functions SDK) with the history so far; the
 * SDK replays it and returns the actions; the engine runs them (activities on a bounded pool,
 * retries with RetryOptions' backoff, timers, continueAsNew) and appends their outcomes as history
 * events, one event per step, exactly as the SDK numbers its tasks.
 *
 * Supported actions: CallActivity, CallActivityWithRetry, CreateTimer, ContinueAsNew. Anything
 * else fails the instance with a clear message.
 */
import { InvocationContext } from '@azure/functions';
import type { InstanceStatus, JobClient, RuntimeStatus } from '../api';
import type { RegisteredFunction } from './functionsHost';

// HistoryEventType and ActionType values of the durable-functions SDK (its wire protocol).
const EV = { ExecutionStarted: 0, TaskScheduled: 4, TaskCompleted: 5, TaskFailed: 6, TimerCreated: 10, TimerFired: 11, OrchestratorStarted: 12, OrchestratorCompleted: 13 } as const;
const ACT = { CallActivity: 0, CallActivityWithRetry: 1, ContinueAsNew: 4, CreateTimer: 5 } as const;
const ACTION_NAMES: Record<number, string> = { 2: 'CallSubOrchestrator', 3: 'CallSubOrchestratorWithRetry', 6: 'WaitForExternalEvent', 7: 'CallEntity', 8: 'CallHttp', 9: 'SignalEntity', 13: 'LockEntities', 14: 'ReleaseEntities' };

export interface HistoryEvent {
  EventType: number;
  EventId: number;
  IsPlayed: boolean;
  Timestamp: string;
  [key: string]: unknown;
}

interface Action {
  actionType: number;
  functionName?: string;
  input?: unknown;
  retryOptions?: { firstRetryIntervalInMilliseconds: number; maxNumberOfAttempts: number; backoffCoefficient?: number; maxRetryIntervalInMilliseconds?: number };
  fireAt?: string | Date;
}

interface OrchestratorState {
  isDone: boolean;
  actions: Action[][];
  output?: unknown;
  error?: string;
  customStatus?: unknown;
}

interface RetryState {
  action: Action;
  attempt: number;
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
  history: HistoryEvent[];
  /** The SDK's next task sequence number in this execution. */
  seq: number;
  /** Actions of this execution already acted on. */
  knownActions: number;
  /** Retryable tasks by the id of the task (attempt or timer) that stands for them now. */
  retries: Record<number, RetryState>;
  /** Incremented by continueAsNew, restart and terminate: outcomes of an older execution are dropped. */
  execution: number;
}

/** Wraps each activity attempt: fault injection in tests, a worker pool in the local host. */
export type ActivityRunner = (name: string, input: unknown, attempt: number, run: () => Promise<unknown>) => Promise<unknown>;

export interface EngineOptions {
  /** Activities running at once (like maxConcurrentActivityFunctions across instances). */
  maxConcurrentActivities?: number;
  runActivity?: ActivityRunner;
  /** Called after every change of an instance (the local host persists it). */
  onChange?: (record: InstanceRecord) => void | Promise<void>;
  log?: (message: string) => void;
}

type Waiter = (s: InstanceStatus) => void;

export class DurableEngine implements JobClient {
  private readonly instances = new Map<string, InstanceRecord>();
  private readonly inbox = new Map<string, HistoryEvent[]>();
  private readonly busy = new Set<string>();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private running = 0;
  private readonly queue: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly functions: ReadonlyMap<string, RegisteredFunction>,
    private readonly opts: EngineOptions = {},
  ) {}

  // ----- JobClient ------------------------------------------------------------------------------

  async start(name: string, instanceId: string, input: unknown): Promise<void> {
    const fn = this.functions.get(name);
    if (!fn || fn.trigger.type !== 'orchestrationTrigger') throw new Error(`no orchestrator function named '${name}'`);
    const now = new Date().toISOString();
    const prev = this.instances.get(instanceId);
    const rec: InstanceRecord = {
      instanceId,
      name,
      input,
      runtimeStatus: 'Pending',
      createdTime: now,
      lastUpdatedTime: now,
      history: [],
      seq: 0,
      knownActions: 0,
      retries: {},
      execution: (prev?.execution ?? 0) + 1,
    };
    this.instances.set(instanceId, rec);
    this.inbox.set(instanceId, []);
    await this.changed(rec);
    this.deliver(rec, { EventType: EV.ExecutionStarted, EventId: -1, IsPlayed: false, Timestamp: now, Name: name, Input: JSON.stringify(input) });
  }

  async status(instanceId: string): Promise<InstanceStatus | undefined> {
    const r = this.instances.get(instanceId);
    return r ? statusOf(r) : undefined;
  }

  async terminate(instanceId: string, reason: string): Promise<void> {
    const r = this.instances.get(instanceId);
    if (!r || !isActive(r.runtimeStatus)) return;
    r.runtimeStatus = 'Terminated';
    r.output = reason;
    r.execution++;
    this.inbox.set(instanceId, []);
    await this.changed(r);
    this.settle(r);
  }

  // ----- for the local host and tests ----------------------------------------------------------

  /**
   * Takes back an instance saved before a restart: whatever was in flight (activities scheduled
   * without an outcome, timers not fired) is started again. Activities must be idempotent: one
   * that finished but whose outcome was not saved yet runs a second time.
   */
  resume(rec: InstanceRecord): void {
    this.instances.set(rec.instanceId, rec);
    this.inbox.set(rec.instanceId, []);
    if (!isActive(rec.runtimeStatus)) return;
    const execution = rec.execution;
    if (rec.history.length === 0) {
      this.deliver(rec, { EventType: EV.ExecutionStarted, EventId: -1, IsPlayed: false, Timestamp: new Date().toISOString(), Name: rec.name, Input: JSON.stringify(rec.input) }, execution);
      return;
    }
    const done = new Set<number>();
    const fired = new Set<number>();
    for (const e of rec.history) {
      if (e.EventType === EV.TaskCompleted || e.EventType === EV.TaskFailed) done.add(Number(e['TaskScheduledId']));
      if (e.EventType === EV.TimerFired) fired.add(Number(e['TimerId']));
    }
    for (const e of rec.history) {
      if (e.EventType === EV.TaskScheduled && !done.has(e.EventId)) {
        const action = rec.retries[e.EventId]?.action ?? { actionType: ACT.CallActivity, functionName: String(e['Name']), input: safeParse(String(e['Input'] ?? 'null')) };
        this.runActivity(rec, execution, e.EventId, action);
      } else if (e.EventType === EV.TimerCreated && !fired.has(e.EventId)) {
        this.fireTimer(rec, execution, e.EventId, new Date(String(e['FireAt'])));
      }
    }
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
    this.inbox.clear();
    for (const rec of records) this.resume(rec);
  }

  /** Whether rec is the record this engine holds for its instance (not one replaced by reload). */
  private current(rec: InstanceRecord): boolean {
    return this.instances.get(rec.instanceId) === rec;
  }

  /** Stops timers and new work; activities already running finish but are not recorded. */
  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.queue.splice(0);
  }

  // ----- the loop ------------------------------------------------------------------------------

  private deliver(rec: InstanceRecord, ev: HistoryEvent, execution = rec.execution): void {
    if (this.closed || execution !== rec.execution || !isActive(rec.runtimeStatus) || !this.current(rec)) return;
    this.inbox.get(rec.instanceId)!.push(ev);
    void this.pump(rec);
  }

  private async pump(rec: InstanceRecord): Promise<void> {
    if (this.busy.has(rec.instanceId)) return;
    this.busy.add(rec.instanceId);
    try {
      // The inbox is replaced on continueAsNew: read it afresh each time.
      for (let box = this.inbox.get(rec.instanceId)!; box.length > 0 && isActive(rec.runtimeStatus) && !this.closed; box = this.inbox.get(rec.instanceId)!) {
        // Everything waiting goes into one step, up to and including the first event that makes
        // the SDK number a retry task (see step), which must come last.
        const batch: HistoryEvent[] = [];
        while (box.length > 0) {
          const ev = box.shift()!;
          batch.push(ev);
          if (this.retryEvent(rec, ev)) break;
        }
        await this.step(rec, batch);
      }
    } catch (err) {
      this.opts.log?.(`engine error on ${rec.instanceId}: ${(err as Error).stack}`);
      rec.runtimeStatus = 'Failed';
      rec.output = `local host error: ${(err as Error).message}`;
      await this.changed(rec);
      this.settle(rec);
    } finally {
      this.busy.delete(rec.instanceId);
    }
  }

  /** A failed attempt of a retryable task, or the firing of its retry timer. */
  private retryEvent(rec: InstanceRecord, ev: HistoryEvent): boolean {
    return (ev.EventType === EV.TaskFailed && rec.retries[Number(ev['TaskScheduledId'])] !== undefined) || (ev.EventType === EV.TimerFired && rec.retries[Number(ev['TimerId'])] !== undefined);
  }

  /**
   * Appends events, runs the orchestrator over the history, acts on its new actions. Task ids are
   * handed out here only, in the order the SDK numbers its tasks on replay: each new action takes
   * the next id; then, for a batch ending with a failed retryable attempt, its retry timer takes
   * one; for a batch ending with a fired retry timer, the next attempt takes one (none after the
   * last attempt: the SDK then fails the task).
   */
  private async step(rec: InstanceRecord, events: HistoryEvent[]): Promise<void> {
    const now = new Date().toISOString();
    for (const e of rec.history) e.IsPlayed = true;
    rec.history.push({ EventType: EV.OrchestratorStarted, EventId: -1, IsPlayed: false, Timestamp: now });
    rec.history.push(...events);
    const execution = rec.execution;
    if (rec.runtimeStatus === 'Pending') rec.runtimeStatus = 'Running';
    const state = await this.runOrchestrator(rec);
    rec.lastUpdatedTime = now;
    if (state.customStatus !== undefined) rec.customStatus = state.customStatus;

    const actions = state.actions.flat();
    const fresh = actions.slice(rec.knownActions);
    rec.knownActions = actions.length;
    for (const a of fresh) {
      switch (a.actionType) {
        case ACT.CallActivity:
        case ACT.CallActivityWithRetry: {
          const id = rec.seq++;
          if (a.actionType === ACT.CallActivityWithRetry) rec.retries[id] = { action: a, attempt: 1 };
          rec.history.push({ EventType: EV.TaskScheduled, EventId: id, IsPlayed: false, Timestamp: now, Name: a.functionName, Input: JSON.stringify(a.input ?? null) });
          this.runActivity(rec, execution, id, a);
          break;
        }
        case ACT.CreateTimer: {
          const id = rec.seq++;
          const fireAt = new Date(a.fireAt as string | Date);
          rec.history.push({ EventType: EV.TimerCreated, EventId: id, IsPlayed: false, Timestamp: now, FireAt: fireAt.toISOString() });
          this.fireTimer(rec, execution, id, fireAt);
          break;
        }
        case ACT.ContinueAsNew:
          break; // handled below with isDone
        default:
          state.isDone = true;
          state.error = `the local host does not support ${ACTION_NAMES[a.actionType] ?? `action type ${a.actionType}`} actions`;
      }
    }

    const cont = fresh.find((a) => a.actionType === ACT.ContinueAsNew) ?? (state.isDone ? actions.find((a) => a.actionType === ACT.ContinueAsNew) : undefined);
    const last = events[events.length - 1]!;
    if (this.retryEvent(rec, last)) {
      if (last.EventType === EV.TaskFailed) this.onAttemptFailed(rec, execution, Number(last['TaskScheduledId']), now);
      else this.onTimerFired(rec, execution, Number(last['TimerId']), now);
    }
    if (state.error !== undefined) {
      rec.runtimeStatus = 'Failed';
      rec.output = state.error;
    } else if (cont) {
      // A new execution of the same instance, with the new input and an empty history.
      rec.input = cont.input;
      rec.history = [];
      rec.seq = 0;
      rec.knownActions = 0;
      rec.retries = {};
      rec.execution++;
      this.inbox.set(rec.instanceId, []);
      await this.changed(rec);
      this.deliver(rec, { EventType: EV.ExecutionStarted, EventId: -1, IsPlayed: false, Timestamp: new Date().toISOString(), Name: rec.name, Input: JSON.stringify(cont.input) });
      return;
    } else if (state.isDone) {
      rec.runtimeStatus = 'Completed';
      rec.output = state.output;
    }
    rec.history.push({ EventType: EV.OrchestratorCompleted, EventId: -1, IsPlayed: false, Timestamp: now });
    await this.changed(rec);
    if (!isActive(rec.runtimeStatus)) this.settle(rec);
  }

  private async runOrchestrator(rec: InstanceRecord): Promise<OrchestratorState> {
    const fn = this.functions.get(rec.name)!;
    const context = new InvocationContext({ invocationId: `${rec.instanceId}:${rec.history.length}`, functionName: rec.name, logHandler: () => undefined });
    const binding = { history: rec.history.map((e) => ({ ...e })), input: rec.input, instanceId: rec.instanceId, isReplaying: false, parentInstanceId: '', upperSchemaVersion: 0 };
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

  private runActivity(rec: InstanceRecord, execution: number, id: number, action: Action): void {
    const name = action.functionName ?? '';
    const fn = this.functions.get(name);
    const input = typeof action.input === 'string' ? safeParse(action.input) : action.input;
    const attempt = rec.retries[id]?.attempt ?? 1;
    const run = async (): Promise<unknown> => {
      if (!fn || fn.trigger.type !== 'activityTrigger') throw new Error(`no activity function named '${name}'`);
      const context = new InvocationContext({ invocationId: `${rec.instanceId}:${id}:${attempt}`, functionName: name, logHandler: (level, ...args) => this.opts.log?.(`[${name}] ${level}: ${args.join(' ')}`) });
      return fn.handler(input, context);
    };
    this.schedule(async () => {
      let result: unknown;
      let error: Error | undefined;
      try {
        result = await (this.opts.runActivity ? this.opts.runActivity(name, input, attempt, run) : run());
      } catch (err) {
        error = err instanceof Error ? err : new Error(String(err));
      }
      if (execution !== rec.execution || this.closed || !this.current(rec)) return;
      const now = new Date().toISOString();
      if (!error) {
        delete rec.retries[id];
        this.deliver(rec, { EventType: EV.TaskCompleted, EventId: -1, IsPlayed: false, Timestamp: now, TaskScheduledId: id, Result: JSON.stringify(result ?? null) }, execution);
      } else {
        this.opts.log?.(`activity ${name} (task ${id}, attempt ${attempt}) failed: ${error.message}`);
        this.deliver(rec, { EventType: EV.TaskFailed, EventId: -1, IsPlayed: false, Timestamp: now, TaskScheduledId: id, Reason: error.message, Details: error.stack ?? '' }, execution);
      }
    });
  }

  /** A retryable attempt failed: the SDK now waits on a timer (its next id) before deciding. */
  private onAttemptFailed(rec: InstanceRecord, execution: number, id: number, now: string): void {
    const retry = rec.retries[id];
    if (!retry) return;
    delete rec.retries[id];
    const o = retry.action.retryOptions!;
    const delay = Math.min(o.firstRetryIntervalInMilliseconds * (o.backoffCoefficient ?? 1) ** (retry.attempt - 1), o.maxRetryIntervalInMilliseconds || Number.POSITIVE_INFINITY);
    const timerId = rec.seq++;
    rec.retries[timerId] = retry;
    const fireAt = new Date(Date.now() + delay);
    rec.history.push({ EventType: EV.TimerCreated, EventId: timerId, IsPlayed: false, Timestamp: now, FireAt: fireAt.toISOString() });
    this.fireTimer(rec, execution, timerId, fireAt);
  }

  /** A retry timer fired: schedule the next attempt (its own id), unless that was the last. */
  private onTimerFired(rec: InstanceRecord, execution: number, timerId: number, now: string): void {
    const retry = rec.retries[timerId];
    if (!retry) return;
    delete rec.retries[timerId];
    if (retry.attempt >= retry.action.retryOptions!.maxNumberOfAttempts) return;
    const nextId = rec.seq++;
    rec.retries[nextId] = { action: retry.action, attempt: retry.attempt + 1 };
    rec.history.push({ EventType: EV.TaskScheduled, EventId: nextId, IsPlayed: false, Timestamp: now, Name: retry.action.functionName, Input: JSON.stringify(retry.action.input ?? null) });
    this.runActivity(rec, execution, nextId, retry.action);
  }

  private fireTimer(rec: InstanceRecord, execution: number, id: number, fireAt: Date): void {
    this.after(Math.max(0, fireAt.getTime() - Date.now()), () => {
      this.deliver(rec, { EventType: EV.TimerFired, EventId: -1, IsPlayed: false, Timestamp: new Date().toISOString(), TimerId: id, FireAt: fireAt.toISOString() }, execution);
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
