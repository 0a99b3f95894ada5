/**
 * One activity worker process of the local host: loads the function files as the Functions host
 * would, then runs the activities it is sent, one at a time.
 */
import { InvocationContext } from '@azure/functions';
import { defaultFunctionFiles, loadFunctions } from './functionsHost';

const functions = loadFunctions(defaultFunctionFiles());

process.on('message', async (msg: { type: 'run' | 'stats'; id: number; name: string; input: unknown }) => {
  if (msg.type === 'stats') {
    process.send!({ type: 'stats', maxRss: process.resourceUsage().maxRSS * 1024 });
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
