/**
 * Activities on a pool of worker processes, like separate Function App instances: each process
 * loads the same function files, keeps its own model sessions, and runs one activity at a time.
 * A process that dies loses its activity (ActivityLostError: the engine delivers it again, as
 * Azure does once the message's visibility timeout expires) and is replaced. An attempt whose
 * signal aborts (functionTimeout) has its process killed, as the Functions host restarts a worker
 * after a timeout.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ActivityLostError } from './activityErrors';

interface Job {
  id: number;
  name: string;
  input: unknown;
  /** Fault injection: kill the process running this job after this many ms. */
  crashAfterMs?: number;
  /** Why the job was aborted (its process is being killed for it). */
  aborted?: Error;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

interface Slot {
  child: ChildProcess;
  job?: Job;
  ready: boolean;
}

export interface ActivityPoolOptions {
  size: number;
  /** Environment of the worker processes (settings). */
  env: NodeJS.ProcessEnv;
  log?: (msg: string) => void;
  /** Where the worker processes' stdout/stderr lines go (default: this process's). */
  output?: (line: string) => void;
}

export class ActivityPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;
  /** Processes started, and how many died with work in hand (for tests and the demo). */
  readonly stats = { started: 0, crashed: 0 };

  constructor(private readonly opts: ActivityPoolOptions) {
    for (let i = 0; i < opts.size; i++) this.spawn();
  }

  run(name: string, input: unknown, opts: { crashAfterMs?: number; signal?: AbortSignal } = {}): Promise<unknown> {
    if (this.closed) return Promise.reject(new Error('activity pool is closed'));
    return new Promise((resolve, reject) => {
      const job: Job = { id: this.nextId++, name, input, resolve, reject, ...(opts.crashAfterMs !== undefined ? { crashAfterMs: opts.crashAfterMs } : {}) };
      opts.signal?.addEventListener('abort', () => this.abort(job, opts.signal!.reason instanceof Error ? opts.signal!.reason : new Error(String(opts.signal!.reason))), { once: true });
      this.queue.push(job);
      this.dispatch();
    });
  }

  /** Gives up a job: dropped if still queued, its process killed if running. */
  private abort(job: Job, reason: Error): void {
    const queued = this.queue.indexOf(job);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      job.reject(reason);
      return;
    }
    const slot = this.slots.find((s) => s.job === job);
    if (!slot) return;
    job.aborted = reason;
    slot.child.kill('SIGKILL');
  }

  /** Asks every worker process to load a model now (a job names it, or its plan just pinned it); best effort. */
  preload(model: { name: string; etag?: string; jsonEtag?: string }): void {
    for (const s of this.slots) if (s.child.connected) s.child.send({ type: 'preload', model });
  }

  /** Resolves once every worker process has loaded the function files and can take work. */
  async ready(timeoutMs = 60_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.slots.length < this.opts.size || this.slots.some((s) => !s.ready)) {
      if (Date.now() > end) throw new Error(`activity processes not ready after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Process ids of the live worker processes. */
  pids(): number[] {
    return this.slots.map((s) => s.child.pid).filter((p): p is number => p !== undefined);
  }

  /** Activities running now (handed to a process). */
  get busy(): number {
    return this.slots.filter((s) => s.job).length;
  }

  /** Peak resident memory of each live worker process, in bytes. */
  async peakMemory(): Promise<number[]> {
    return Promise.all(
      this.slots.map(
        (s) =>
          new Promise<number>((resolve) => {
            const onMsg = (m: { type: string; maxRss?: number }): void => {
              if (m.type !== 'stats') return;
              s.child.off('message', onMsg);
              resolve(m.maxRss ?? 0);
            };
            s.child.on('message', onMsg);
            s.child.send({ type: 'stats' });
            setTimeout(() => resolve(0), 2000).unref();
          }),
      ),
    );
  }

  /**
   * Gives up every activity queued or running (their processes killed, new ones started): the local
   * host does this when its storage emulator died and rolled back to its last save, so that no
   * process carries what it read of the lost state into the restored one.
   */
  abortAll(reason: Error): void {
    for (const j of this.queue.splice(0)) j.reject(reason);
    for (const s of this.slots) {
      if (!s.job) continue;
      s.job.aborted = reason;
      s.child.kill('SIGKILL');
    }
  }

  /** Kills one busy worker process (fault injection for tests and the reliability suite). */
  killOne(): boolean {
    const busy = this.slots.find((s) => s.job);
    if (!busy) return false;
    busy.child.kill('SIGKILL');
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const j of this.queue.splice(0)) j.reject(new Error('activity pool closed'));
    await Promise.all(
      this.slots.splice(0).map(
        (s) =>
          new Promise<void>((r) => {
            if (s.child.exitCode !== null || s.child.signalCode !== null) return r();
            s.child.once('exit', () => r());
            s.child.kill('SIGTERM');
            setTimeout(() => s.child.kill('SIGKILL'), 3000).unref();
          }),
      ),
    );
  }

  private spawn(): void {
    const out = this.opts.output;
    const child = fork(join(__dirname, 'activityWorker.js'), [], { env: this.opts.env, stdio: ['ignore', out ? 'pipe' : 'inherit', out ? 'pipe' : 'inherit', 'ipc'] });
    if (out) {
      for (const stream of [child.stdout, child.stderr]) {
        let buf = '';
        stream?.on('data', (c: Buffer) => {
          buf += c.toString();
          const lines = buf.split('\n');
          buf = lines.pop()!;
          for (const l of lines) out(l);
        });
      }
    }
    const slot: Slot = { child, ready: false };
    this.slots.push(slot);
    this.stats.started++;
    child.on('message', (msg: { type: 'ready' } | { type: 'stats' } | { type: 'done'; id: number; ok: boolean; result?: unknown; error?: { message: string; stack?: string } }) => {
      if (msg.type === 'stats') return;
      if (msg.type === 'ready') {
        slot.ready = true;
        this.dispatch();
        return;
      }
      const job = slot.job;
      if (!job || job.id !== msg.id) return;
      slot.job = undefined;
      if (msg.ok) job.resolve(msg.result);
      else {
        const e = new Error(msg.error?.message ?? 'activity failed');
        if (msg.error?.stack) e.stack = msg.error.stack;
        job.reject(e);
      }
      this.dispatch();
    });
    child.on('exit', (code, signal) => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      if (slot.job) {
        const job = slot.job;
        slot.job = undefined;
        if (job.aborted) job.reject(job.aborted);
        else {
          this.stats.crashed++;
          job.reject(new ActivityLostError(`activity worker process died (${signal ?? `exit code ${code}`}) while running ${job.name}`));
        }
      }
      if (!this.closed) {
        this.opts.log?.(`activity worker exited (${signal ?? code}); starting another`);
        this.spawn();
      }
    });
  }

  private dispatch(): void {
    for (const s of this.slots) {
      if (this.queue.length === 0) return;
      if (!s.ready || s.job) continue;
      const job = this.queue.shift()!;
      s.job = job;
      s.child.send({ type: 'run', id: job.id, name: job.name, input: job.input });
      if (job.crashAfterMs !== undefined) {
        const child = s.child;
        setTimeout(() => {
          if (s.job === job) child.kill('SIGKILL');
        }, job.crashAfterMs).unref();
      }
    }
  }
}
