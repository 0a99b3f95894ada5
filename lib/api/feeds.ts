/**
 * Continuous jobs never feed each other: a continuous job whose outputs land where another running
 * continuous job watches (or that watches where another one writes) would infer the other's
 * outputs, which would land where the first watches... without end (1 image became 22 inferences
 * in 25 s in the red-team run; on Azure an unbounded bill). Every such edge is refused at submit,
 * so no chain of continuous jobs can close a loop. Batch jobs list once and end: they may read what
 * a continuous job writes.
 */
import { LakeInferError } from '../util/errors';
import { jobOf, type JobSpec } from '../job/request';
import type { InstanceStatus, JobClient } from './client';

/** What a job may write under its folder, by extension (a watcher that takes none of these is not fed). */
export const OUTPUT_EXTENSIONS = ['.json', '.jsonl', '.png', '.parquet', '.html', '.mp4', '.crc', '.checkpoint'];

type Side = Pick<JobSpec, 'jobId' | 'jobPrefix' | 'input' | 'output' | 'mode'>;

/** Whether `writer`'s folder lies where `watcher` watches, in a form the watcher takes. */
export function feeds(writer: Side, watcher: Side): boolean {
  if (writer.output.container !== watcher.input.container) return false;
  const prefix = watcher.input.prefix;
  const folder = writer.jobPrefix;
  if (!(folder.startsWith(prefix) || prefix.startsWith(folder))) return false;
  return watcher.input.extensions.some((e) => OUTPUT_EXTENSIONS.includes(e.toLowerCase()));
}

const RUNNING: InstanceStatus['runtimeStatus'][] = ['Running', 'Pending', 'ContinuedAsNew', 'Suspended'];

/** The refusal of a continuous job that would feed, or be fed by, a running continuous job; undefined if none. */
export async function continuousFeedIssue(client: JobClient, job: JobSpec): Promise<LakeInferError | undefined> {
  if (job.mode !== 'continuous') return undefined;
  const running = await client.list({ runtimeStatus: RUNNING });
  for (const r of running) {
    if (r.instanceId === job.jobId) continue;
    const other = jobOf((await client.status(r.instanceId))?.input);
    if (!other || other.mode !== 'continuous') continue;
    if (feeds(job, other)) {
      return new LakeInferError('ContinuousLoop', `this continuous job writes '${job.output.container}/${job.jobPrefix}', where the running continuous job '${other.jobId}' watches ('${other.input.container}/${other.input.prefix}'): each would infer the other's outputs without end; choose an output outside it`, { target: 'output.prefix' });
    }
    if (feeds(other, job)) {
      return new LakeInferError('ContinuousLoop', `this continuous job watches '${job.input.container}/${job.input.prefix}', where the running continuous job '${other.jobId}' writes ('${other.output.container}/${other.jobPrefix}'): it would infer that job's outputs as they land; choose an input prefix outside it`, { target: 'input.prefix' });
    }
  }
  return undefined;
}
