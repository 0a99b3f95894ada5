/**
 * CPU accounting for the bench (Linux /proc): the CPU of this process and everything it started
 * (the emulator, activity processes, ffmpeg), split by component, and the CPU the rest of the
 * machine used during the same figure ("foreign"): a figure taken while more than 0.1 foreign
 * cores ran is marked, because the machine is shared and such a figure is not this code's alone.
 */
import { readdirSync, readFileSync } from 'node:fs';

const HZ = 100; // USER_HZ on Linux

function stat(path: string): { ppid: number; cpu: number } | undefined {
  try {
    const raw = readFileSync(path, 'utf8');
    const f = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / HZ };
  } catch {
    return undefined; // gone, or not Linux
  }
}

/** CPU seconds of `pid` and each of its descendants, by pid. */
export function treeCpu(root: number = process.pid): Map<number, number> {
  const all = new Map<number, { ppid: number; cpu: number }>();
  let dirs: string[] = [];
  try {
    dirs = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return new Map();
  }
  for (const d of dirs) {
    const s = stat(`/proc/${d}/stat`);
    if (s) all.set(Number(d), s);
  }
  const out = new Map<number, number>();
  const inTree = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; p = all.get(p)?.ppid ?? 0, hops++) if (p === root) return true;
    return false;
  };
  for (const [pid, s] of all) if (inTree(pid)) out.set(pid, s.cpu);
  return out;
}

/** Busy CPU seconds of the whole machine (every state but idle and iowait). */
export function machineBusy(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
    return (user + nice + system + irq + softirq + steal) / HZ;
  } catch {
    return 0;
  }
}

/** CPU seconds of each thread of `pid`, the main thread as 'main', the others by thread id. */
export function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    const s = stat(`/proc/${pid}/task/${tid}/stat`);
    if (s) out.set(tid === String(pid) ? 'main' : tid, s.cpu);
  }
  return out;
}

export interface Figure<T> {
  value: T;
  wallS: number;
  /** CPU seconds of this process tree during the figure. */
  ownCpuS: number;
  /** Average cores the rest of the machine used meanwhile. */
  foreignCores: number;
  /** More than 0.1 foreign cores: the figure is not this code's alone. */
  contaminated: boolean;
}

/**
 * Runs `fn` and says what CPU this process tree and the rest of the machine used meanwhile.
 * Processes of the tree that end during `fn` have their CPU counted as foreign: end them after.
 */
export async function measured<T>(fn: () => Promise<T>): Promise<Figure<T>> {
  const tree0 = treeCpu();
  const busy0 = machineBusy();
  const t0 = performance.now();
  const value = await fn();
  const wallS = (performance.now() - t0) / 1000;
  const tree1 = treeCpu();
  const busy1 = machineBusy();
  let own = 0;
  for (const [pid, cpu] of tree1) own += cpu - (tree0.get(pid) ?? 0);
  const foreignCores = Math.max(0, (busy1 - busy0 - own) / Math.max(wallS, 1e-3));
  return { value, wallS, ownCpuS: own, foreignCores: Math.round(foreignCores * 100) / 100, contaminated: foreignCores > 0.1 };
}

/** ' (!foreign 0.35 cores)' for a contaminated figure, '' otherwise. */
export function mark(f: { foreignCores: number; contaminated: boolean }): string {
  return f.contaminated ? ` (!foreign ${f.foreignCores} cores)` : '';
}
