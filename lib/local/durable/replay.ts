/**
 * What the Durable Functions extension does with an out-of-process orchestrator's actions (replay
 * schema V3), as a pure function of the history and the actions the SDK returned:
 *
 * The extension's shim replays the actions on the Durable Task Framework (DTFx) one top-level
 * action at a time: it issues the action's API calls (a WhenAll/WhenAny issues every child, already
 * scheduled ones included) and awaits it before issuing the next. DTFx gives every scheduled task
 * and timer the next sequence number as it is issued, processes the history in order (completions
 * resume what awaits them at once), and checks every TaskScheduled/TimerCreated event against what
 * the replay issued under that number: another type or name, or nothing, is a non-deterministic
 * orchestration. CallActivityWithRetry runs DTFx's retry interceptor: attempt, on failure a timer
 * (first interval times the backoff coefficient to the attempt index, capped), next attempt, and
 * after the last failure an immediate timer before the task fails. Whatever the replay issued beyond
 * the history is new: the engine appends it and runs it.
 *
 * External events (WaitForExternalEvent, EventRaised) take no sequence number. As the extension's
 * DurableOrchestrationContext does: the waiters of one name (case-insensitive) form a stack, so an
 * EventRaised completes the newest wait (the common case is a WhenAny in a loop); an event nobody
 * waits for is buffered, first in first out, and the next wait for its name takes it at once; what
 * is still buffered when the execution continues as new is dropped.
 */

export const EV = {
  ExecutionStarted: 0,
  ExecutionCompleted: 1,
  ExecutionFailed: 2,
  ExecutionTerminated: 3,
  TaskScheduled: 4,
  TaskCompleted: 5,
  TaskFailed: 6,
  SubOrchestrationInstanceCreated: 7,
  TimerCreated: 10,
  TimerFired: 11,
  OrchestratorStarted: 12,
  OrchestratorCompleted: 13,
  EventRaised: 15,
  ContinueAsNew: 16,
} as const;

export const ACT = { CallActivity: 0, CallActivityWithRetry: 1, CallSubOrchestrator: 2, CallSubOrchestratorWithRetry: 3, ContinueAsNew: 4, CreateTimer: 5, WaitForExternalEvent: 6, CallEntity: 7, CallHttp: 8, SignalEntity: 9, WhenAny: 11, WhenAll: 12 } as const;
const ACTION_NAMES: Record<number, string> = Object.fromEntries(Object.entries(ACT).map(([k, v]) => [v, k]));

export interface HistoryEvent {
  EventType: number;
  EventId: number;
  IsPlayed: boolean;
  Timestamp: string;
  [key: string]: unknown;
}

export interface RetryPolicy {
  firstRetryIntervalInMilliseconds: number;
  maxNumberOfAttempts: number;
  backoffCoefficient?: number;
  maxRetryIntervalInMilliseconds?: number;
  retryTimeoutInMilliseconds?: number;
}

export interface Action {
  actionType: number;
  functionName?: string;
  input?: unknown;
  retryOptions?: RetryPolicy;
  fireAt?: string | Date;
  isCanceled?: boolean;
  externalEventName?: string;
  compoundActions?: Action[];
}

/** A task or timer the replay issued that the history does not hold yet: the engine schedules it. */
export type NewWork = { kind: 'activity'; id: number; name: string; input: unknown; attempt: number } | { kind: 'timer'; id: number; fireAt: string };

export interface ReplayOutcome {
  fresh: NewWork[];
  /** The input of a ContinueAsNew the replay reached. */
  continueAsNew?: { input: unknown };
  /** A non-deterministic orchestration, worded as DTFx words it. */
  nondeterminism?: string;
  /** An action the local engine does not run (sub-orchestrations, entities, events, HTTP). */
  unsupported?: string;
}

/** A pending operation of the replay: completes once, then notifies what awaits it. */
interface Op {
  done: boolean;
  failed: boolean;
  listeners: (() => void)[];
}

function op(): Op {
  return { done: false, failed: false, listeners: [] };
}

function settle(o: Op, failed: boolean): void {
  if (o.done) return;
  o.done = true;
  o.failed = failed;
  for (const l of o.listeners.splice(0)) l();
}

function whenDone(o: Op, fn: () => void): void {
  if (o.done) fn();
  else o.listeners.push(fn);
}

/**
 * An action's input as the function receives it: the SDK sends a string input already encoded as
 * JSON text (Utils.processInput), other values as they are.
 */
function actionInput(a: Action): unknown {
  if (typeof a.input !== 'string') return a.input;
  try {
    return JSON.parse(a.input) as unknown;
  } catch {
    return a.input;
  }
}

export function replayShim(history: readonly HistoryEvent[], actions: readonly Action[]): ReplayOutcome {
  let nextId = 0;
  let now = new Date(history.find((e) => e.EventType === EV.OrchestratorStarted)?.Timestamp ?? 0);
  /** What the replay issued, by sequence number, not yet matched with a history event. */
  const issued = new Map<number, { kind: 'activity' | 'timer'; name?: string; input?: unknown; attempt?: number; fireAt?: string }>();
  /** Completion of each issued task or timer, by sequence number. */
  const completions = new Map<number, Op>();
  const outcome: ReplayOutcome = { fresh: [] };
  /** External events: waits by name (newest last) and events nobody waited for yet (oldest first). */
  const waiting = new Map<string, Op[]>();
  const buffered = new Map<string, number>();
  const eventKey = (name: unknown): string => String(name ?? '').toLowerCase();

  const schedule = (kind: 'activity' | 'timer', details: { name?: string; input?: unknown; attempt?: number; fireAt?: string }): Op => {
    const id = nextId++;
    issued.set(id, { kind, ...details });
    const o = op();
    completions.set(id, o);
    return o;
  };

  /** Issues an action's API calls now; returns what completes when the shim's await would. */
  const invoke = (a: Action): Op => {
    switch (a.actionType) {
      case ACT.CallActivity:
        return schedule('activity', { name: a.functionName ?? '', input: actionInput(a), attempt: 1 });
      case ACT.CreateTimer: {
        // A timer the orchestrator cancelled is still created (its number is taken), but awaiting it
        // ends at once, as awaiting a cancelled token does.
        const t = schedule('timer', { fireAt: new Date(a.fireAt as string | Date).toISOString() });
        if (!a.isCanceled) return t;
        const o = op();
        settle(o, false);
        return o;
      }
      case ACT.CallActivityWithRetry:
        return retrying(a);
      case ACT.WaitForExternalEvent: {
        const o = op();
        const key = eventKey(a.externalEventName);
        const early = buffered.get(key) ?? 0;
        if (early > 0) {
          buffered.set(key, early - 1);
          settle(o, false);
        } else {
          waiting.set(key, [...(waiting.get(key) ?? []), o]);
        }
        return o;
      }
      case ACT.ContinueAsNew: {
        outcome.continueAsNew ??= { input: actionInput(a) };
        const o = op();
        settle(o, false);
        return o;
      }
      case ACT.WhenAll:
      case ACT.WhenAny: {
        const children = (a.compoundActions ?? []).map(invoke);
        const o = op();
        const check = (): void => {
          if (a.actionType === ACT.WhenAny ? children.some((c) => c.done) : children.every((c) => c.done)) settle(o, false);
        };
        if (children.length === 0) settle(o, false);
        for (const c of children) whenDone(c, check);
        return o;
      }
      default: {
        outcome.unsupported ??= `the local host does not run ${ACTION_NAMES[a.actionType] ?? `action type ${a.actionType}`} actions`;
        return op();
      }
    }
  };

  /** DTFx's retry interceptor: attempts and the timers between them, each issued when due. */
  const retrying = (a: Action): Op => {
    const policy = a.retryOptions!;
    const result = op();
    const attempt = (index: number): void => {
      const t = schedule('activity', { name: a.functionName ?? '', input: actionInput(a), attempt: index + 1 });
      whenDone(t, () => {
        if (!t.failed) return settle(result, false);
        const last = index + 1 >= policy.maxNumberOfAttempts;
        const delay = last ? 0 : Math.min(policy.firstRetryIntervalInMilliseconds * (policy.backoffCoefficient ?? 1) ** index, policy.maxRetryIntervalInMilliseconds || Number.POSITIVE_INFINITY);
        const timer = schedule('timer', { fireAt: new Date(now.getTime() + delay).toISOString() });
        whenDone(timer, () => (last ? settle(result, true) : attempt(index + 1)));
      });
    };
    attempt(0);
    return result;
  };

  // The shim: each top-level action issued, then awaited (its failure ignored), then the next.
  let next = 0;
  const advance = (): void => {
    while (next < actions.length && !outcome.unsupported) {
      const o = invoke(actions[next++]!);
      if (!o.done) {
        whenDone(o, advance);
        return;
      }
    }
  };

  const describe = (e: { kind: 'activity' | 'timer'; name?: string }): string => (e.kind === 'activity' ? `a ScheduleTaskOrchestratorAction named '${e.name}'` : 'a CreateTimerOrchestratorAction');
  for (const e of history) {
    switch (e.EventType) {
      case EV.OrchestratorStarted:
        now = new Date(e.Timestamp);
        break;
      case EV.ExecutionStarted:
        advance();
        break;
      case EV.TaskScheduled:
      case EV.TimerCreated: {
        const kind = e.EventType === EV.TaskScheduled ? 'activity' : 'timer';
        const what = kind === 'activity' ? `an activity task with sequence ID ${e.EventId} and name '${String(e['Name'])}' (version '')` : `a timer task with sequence number ${e.EventId}`;
        const mine = issued.get(e.EventId);
        if (!mine) {
          outcome.nondeterminism ??= `Non-Deterministic workflow detected: A previous execution of this orchestration scheduled ${what}, but the current replay execution hasn't (yet?) scheduled this task. Was a change made to the orchestrator code after this instance had already started running?`;
        } else if (mine.kind !== kind || (kind === 'activity' && mine.name !== e['Name'])) {
          outcome.nondeterminism ??= `Non-Deterministic workflow detected: A previous execution of this orchestration scheduled ${what} but the current orchestration replay instead produced ${describe(mine)} with this sequence number. Was a change made to the orchestrator code after this instance had already started running?`;
        }
        issued.delete(e.EventId);
        break;
      }
      case EV.TaskCompleted:
      case EV.TaskFailed: {
        // A completion for a task not open (a duplicate delivery) is ignored, as DTFx ignores it.
        const o = completions.get(Number(e['TaskScheduledId']));
        if (o && !o.done) settle(o, e.EventType === EV.TaskFailed);
        break;
      }
      case EV.TimerFired: {
        const o = completions.get(Number(e['TimerId']));
        if (o && !o.done) settle(o, false);
        break;
      }
      case EV.EventRaised: {
        const key = eventKey(e['Name']);
        const o = waiting.get(key)?.pop();
        if (o) settle(o, false);
        else buffered.set(key, (buffered.get(key) ?? 0) + 1);
        break;
      }
      default:
        break;
    }
    if (outcome.nondeterminism) break;
  }
  for (const [id, w] of [...issued].sort((x, y) => x[0] - y[0])) {
    outcome.fresh.push(w.kind === 'activity' ? { kind: 'activity', id, name: w.name!, input: w.input, attempt: w.attempt ?? 1 } : { kind: 'timer', id, fireAt: w.fireAt! });
  }
  return outcome;
}
