/**
 * What the local Durable engine keeps and answers with: an instance's record (history, pending
 * messages, execution), the options and statistics of the engine, the extension's constants, and
 * the pure helpers over them. No I/O.
 */
import type { InstanceFilter, InstanceStatus, RuntimeStatus } from '../../api/jobs';
import { EV, type Action, type HistoryEvent } from './replay';

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

export interface OrchestratorState {
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

/** One activity message: its task id, the function, its input, and the retry attempt it is. */
export interface Work {
  id: number;
  name: string;
  input: unknown;
  attempt: number;
}

export function failed(id: number, reason: string, error: Error): HistoryEvent {
  return { EventType: EV.TaskFailed, EventId: -1, IsPlayed: false, Timestamp: new Date().toISOString(), TaskScheduledId: id, Reason: reason, Details: error.stack ?? '' };
}

/** 'task:<id>' or 'timer:<id>' for an event that completes a task or timer. */
export function completionKey(e: HistoryEvent): string | undefined {
  if (e.EventType === EV.TaskCompleted || e.EventType === EV.TaskFailed) return `task:${Number(e['TaskScheduledId'])}`;
  if (e.EventType === EV.TimerFired) return `timer:${Number(e['TimerId'])}`;
  return undefined;
}

/** A saved record as this engine keeps it (records saved by older versions lack `pending`). */
export function normalise(saved: InstanceRecord): InstanceRecord {
  const { instanceId, name, input, runtimeStatus, customStatus, output, createdTime, lastUpdatedTime, history, pending, execution } = saved;
  return { instanceId, name, input, runtimeStatus, customStatus, output, createdTime, lastUpdatedTime, history: history ?? [], pending: pending ?? [], execution: execution ?? 1 };
}

export function isActive(s: RuntimeStatus): boolean {
  return s === 'Pending' || s === 'Running' || s === 'ContinuedAsNew' || s === 'Suspended';
}

export function safeParse(s: string): unknown {
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


/** The instances matching a filter, inputs left out (the instance query of the Durable client). */
export function listInstances(records: Iterable<InstanceRecord>, filter: InstanceFilter): InstanceStatus[] {
  const out: InstanceStatus[] = [];
  for (const r of records) {
    const s = statusOf(r);
    if (filter.runtimeStatus?.length && !filter.runtimeStatus.includes(s.runtimeStatus)) continue;
    if (filter.createdTimeFrom && (s.createdTime ?? '') < filter.createdTimeFrom.toISOString()) continue;
    if (filter.createdTimeTo && (s.createdTime ?? '') > filter.createdTimeTo.toISOString()) continue;
    delete s.input;
    out.push(s);
  }
  return out;
}

/**
 * What a saved instance had in flight: activities scheduled without an outcome (with their attempt
 * number, counted as the retry interceptor counts them) and timers not fired.
 */
export function inFlight(rec: InstanceRecord): { attempts: Work[]; timers: { id: number; fireAt: Date }[] } {
  const closed = new Set<string>();
  for (const e of [...rec.history, ...rec.pending.map((m) => m.event)]) {
    const key = completionKey(e);
    if (key) closed.add(key);
  }
  const tries = new Map<string, number>();
  const attempts: Work[] = [];
  const timers: { id: number; fireAt: Date }[] = [];
  for (const e of rec.history) {
    if (e.EventType === EV.TaskScheduled) {
      const attemptKey = `${String(e['Name'])}\u0000${String(e['Input'] ?? '')}`;
      const attempt = (tries.get(attemptKey) ?? 0) + 1;
      tries.set(attemptKey, attempt);
      if (!closed.has(`task:${e.EventId}`)) attempts.push({ id: e.EventId, name: String(e['Name']), input: safeParse(String(e['Input'] ?? 'null')), attempt });
    } else if (e.EventType === EV.TimerCreated && !closed.has(`timer:${e.EventId}`)) {
      timers.push({ id: e.EventId, fireAt: new Date(String(e['FireAt'])) });
    }
  }
  return { attempts, timers };
}

/** The events of `fresh` that history has not completed yet (each completion once); `dropped` hears of the others. */
export function firstCompletions(history: HistoryEvent[], fresh: HistoryEvent[], dropped: (key: string) => void): HistoryEvent[] {
  const closed = new Set<string>();
  for (const e of history) {
    const key = completionKey(e);
    if (key) closed.add(key);
  }
  return fresh.filter((e) => {
    const key = completionKey(e);
    if (!key) return true;
    if (closed.has(key)) {
      dropped(key);
      return false;
    }
    closed.add(key);
    return true;
  });
}
