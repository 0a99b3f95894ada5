/**
 * The cores this instance may use: the smaller of what the OS schedules the process on and the
 * container's CPU quota (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), so a
 * container limited to 1 CPU on a larger machine counts 1, as a Flex Consumption instance of
 * 2,048 MB does.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** CPUs allowed by a cgroup quota, or undefined when there is none or it cannot be read. */
export function cgroupCpuLimit(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): number | undefined {
  const ratio = (quota: number, period: number): number | undefined => (quota > 0 && period > 0 ? quota / period : undefined);
  try {
    const [quota, period] = read('/sys/fs/cgroup/cpu.max').trim().split(/\s+/);
    if (quota === 'max') return undefined;
    return ratio(Number(quota), Number(period ?? '100000'));
  } catch {
    /* not cgroup v2 */
  }
  try {
    return ratio(Number(read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').trim()), Number(read('/sys/fs/cgroup/cpu/cpu.cfs_period_us').trim()));
  } catch {
    return undefined;
  }
}

/** Whole cores available to this process (at least 1). */
export function instanceCores(limit: number | undefined = cgroupCpuLimit(), scheduled: number = availableParallelism()): number {
  return Math.max(1, Math.min(scheduled, limit === undefined ? scheduled : Math.floor(limit + 1e-9) || 1));
}
