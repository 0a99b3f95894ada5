/**
 * One activity worker process of the local host: loads the function files as the Functions host
 * would, then runs the activities it is sent, one at a time, and loads a job's model ahead of its
 * first partition when the host says which.
 */
import { readFileSync } from 'node:fs';
import { InvocationContext } from '@azure/functions';
import { defaultActivities } from '../../orchestration/activities';
import type { ModelVersion } from '../../model';
import { defaultFunctionFiles, loadFunctions } from './functionsHost';

const functions = loadFunctions(defaultFunctionFiles());

/**
 * This process's own peak resident memory. Linux: VmHWM of /proc/self/status, which belongs to this
 * process's memory map; getrusage's maxRSS also counts the parent's pages at fork time (a bench
 * parent holding large models made its children look 3x larger than they are).
 */
function peakRss(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    /* not Linux */
  }
  return process.resourceUsage().maxRSS * 1024;
}

process.on('message', async (msg: { type: 'run' | 'stats' | 'preload'; id: number; name: string; input: unknown; model?: { name: string } & Partial<ModelVersion> }) => {
  if (msg.type === 'stats') {
    process.send!({ type: 'stats', maxRss: peakRss() });
    return;
  }
  if (msg.type === 'preload') {
    // The model a job just pinned: loaded now, so that this process's first partition finds it ready.
    await defaultActivities().preload(msg.model!);
    return;
  }
  if (msg.type !== 'run') return;
  const fn = functions.get(msg.name);
  try {
    if (!fn || fn.trigger.type !== 'activityTrigger') throw new Error(`no activity function named '${msg.name}'`);
    const context = new InvocationContext({
      invocationId: `${msg.name}-${msg.id}`,
      functionName: msg.name,
      logHandler: (level, ...args) => {
        if (level === 'error' || level === 'warning') console.error(`[${msg.name}] ${args.join(' ')}`);
      },
    });
    const result = await fn.handler(msg.input, context);
    process.send!({ type: 'done', id: msg.id, ok: true, result });
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    process.send!({ type: 'done', id: msg.id, ok: false, error: { message: e.message, stack: e.stack } });
  }
});

process.on('disconnect', () => process.exit(0));
process.send!({ type: 'ready' });
