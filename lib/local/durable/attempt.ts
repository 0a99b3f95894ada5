/**
 * One activity attempt as the extension runs it: the registered function called with a fresh
 * invocation context, through the engine's runner (a worker pool locally, fault injection in
 * tests), cancelled and failed after host.json's functionTimeout with the host's message. A lost
 * process is reported as such (the engine redelivers the message); no retry happens here. Also
 * one orchestrator episode, and the slots that bound the activities running at once.
 */
import { randomUUID } from 'node:crypto';
import { InvocationContext } from '@azure/functions';
import { FunctionTimeoutError, isActivityLost } from '../functions/activityErrors';
import type { RegisteredFunction } from '../functions/functionsHost';
import { formatTimeSpan } from '../functions/hostJson';
import { ORCHESTRATION_BINDING, type ActivityRunner, type EngineStats, type InstanceRecord, type OrchestratorState, type Work } from './records';

export type AttemptOutcome = { ok: true; result: unknown; lost?: undefined } | { ok: false; error: Error; lost: boolean };

export interface AttemptDeps {
  functions: ReadonlyMap<string, RegisteredFunction>;
  /** functionTimeout in ms (Infinity for none). */
  timeoutMs: number;
  runActivity?: ActivityRunner;
  log?: (message: string) => void;
  stats: EngineStats;
}

/** Runs one attempt under functionTimeout. */
export async function runActivityAttempt(d: AttemptDeps, w: Work): Promise<AttemptOutcome> {
  const fn = d.functions.get(w.name);
  const invocationId = randomUUID();
  const run = async (): Promise<unknown> => {
    if (!fn || fn.trigger.type !== 'activityTrigger') throw new Error(`no activity function named '${w.name}'`);
    const context = new InvocationContext({ invocationId, functionName: w.name, logHandler: (level, ...args) => d.log?.(`[${w.name}] ${level}: ${args.join(' ')}`) });
    return fn.handler(w.input, context);
  };
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    if (!Number.isFinite(d.timeoutMs)) return;
    timer = setTimeout(() => {
      const err = new FunctionTimeoutError(`Timeout value of ${formatTimeSpan(d.timeoutMs)} exceeded by function 'Functions.${w.name}' (Id: '${invocationId}'). Initiating cancellation.`);
      controller.abort(err);
      reject(err);
    }, d.timeoutMs);
  });
  d.stats.activityRuns++;
  try {
    const runner = d.runActivity ?? ((_n, _i, _a, go) => go());
    const result = await Promise.race([runner(w.name, w.input, w.attempt, run, controller.signal), timeout]);
    return { ok: true, result };
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    if (error instanceof FunctionTimeoutError) {
      d.stats.timeouts++;
      d.log?.(error.message);
    } else if (!isActivityLost(error)) {
      d.log?.(`activity ${w.name} (task ${w.id}, attempt ${w.attempt}) failed: ${error.message}`);
    }
    return { ok: false, error, lost: isActivityLost(error) };
  } finally {
    clearTimeout(timer);
  }
}

/** One orchestrator episode: the SDK called with the binding data the extension sends. */
export async function runOrchestratorEpisode(fn: RegisteredFunction, rec: InstanceRecord): Promise<OrchestratorState> {
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

/** At most `limit` jobs at once (maxConcurrentActivityFunctions); the others wait in order. */
export class Slots {
  private running = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  /** Jobs running or waiting. */
  get busy(): boolean {
    return this.running > 0 || this.queue.length > 0;
  }

  /** Drops the waiting jobs (running ones finish). */
  clear(): void {
    this.queue.splice(0);
  }

  run(job: () => Promise<void>): void {
    const go = (): void => {
      this.running++;
      void job().finally(() => {
        this.running--;
        const next = this.queue.shift();
        if (next) next();
      });
    };
    if (this.running < this.limit) go();
    else this.queue.push(go);
  }
}
