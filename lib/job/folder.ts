/**
 * The records a job keeps in its folder (`<output prefix><jobId>/`), which make "a job is its
 * request" and "the outcome never disagrees with the job" checkable by anyone with storage access:
 *
 * - `_job.json`: the request (its result-deciding fields) and the execution that own the folder.
 *   Written by planJob; a request for the same jobId with other fields is refused, a restart
 *   empties the folder first, and no job may place its folder inside another job's.
 * - `_outcome.json`: created once, atomically (If-None-Match: *), by whoever decides how the job
 *   ends: finalizeJob ("succeeded"/"failed", then it writes the manifest) or a cancel
 *   ("cancelled"). The loser follows the winner: a cancel that comes after the outcome is decided
 *   is refused, and a finalize that comes after a cancel writes a cancelled manifest.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { mapLimit } from '../util/concurrency';
import { LakeInferError, restStatus } from '../util/errors';
import { specDifferences, specDigest, type JobSpec } from './request';
import { listBlobPages, readBlob, readJson, storageError, writeJson } from '../storage';

export interface JobRecord {
  jobId: string;
  executionId: string;
  digest: string;
  spec: JobSpec;
  writtenAt: string;
}

export type JobStatus = 'succeeded' | 'failed' | 'cancelled';

export interface JobOutcome {
  status: JobStatus;
  executionId: string;
  by: 'finalize' | 'cancel';
  at: string;
}

export const jobRecordName = (prefix: string): string => `${prefix}_job.json`;
export const outcomeName = (prefix: string): string => `${prefix}_outcome.json`;

/** The job folder that encloses this one (an ancestor folder holding a _job.json), if any. */
export async function enclosingJob(output: ContainerClient, prefix: string): Promise<string | undefined> {
  const segs = prefix.split('/').filter((s) => s !== '');
  for (let i = 1; i < segs.length; i++) {
    const folder = `${segs.slice(0, i).join('/')}/`;
    if (await readBlob(output, jobRecordName(folder))) return folder;
  }
  return undefined;
}

/**
 * Every job folder a container holds is registered under `_lakeinfer/folders/<job prefix>.folder`,
 * so "does this folder contain another job's?" is one short listing, however many files the folders hold.
 */
export const FOLDER_REGISTRY = '_lakeinfer/folders/';
export const folderRegistryName = (prefix: string): string => `${FOLDER_REGISTRY}${prefix}.folder`;

/** A job folder inside this one (registered, or met while listing), if any. */
export async function enclosedJob(output: ContainerClient, prefix: string): Promise<string | undefined> {
  const own = folderRegistryName(prefix);
  for await (const page of listBlobPages(output, { prefix: `${FOLDER_REGISTRY}${prefix}`, pageSize: 5 })) {
    for (const b of page.items) if (b.name !== own && b.name.endsWith('/.folder')) return b.name.slice(FOLDER_REGISTRY.length, -'.folder'.length);
  }
  return undefined;
}

/** The registration of a job folder (written when the job takes it). */
export async function registerFolder(output: ContainerClient, job: Pick<JobSpec, 'jobId' | 'jobPrefix'>): Promise<void> {
  await writeJson(output, folderRegistryName(job.jobPrefix), { jobId: job.jobId, jobPrefix: job.jobPrefix });
}

/**
 * Deletes everything under the prefix (a restart's clean slate), 32 deletes at a time, page by
 * page. Another job's folder met on the way (a `_job.json` below this folder's own) stops it with an
 * OutputConflict before anything of that page is deleted.
 */
export async function emptyFolder(output: ContainerClient, prefix: string): Promise<number> {
  let n = 0;
  const own = jobRecordName(prefix);
  for await (const page of listBlobPages(output, { prefix, pageSize: 1000 })) {
    const inner = page.items.find((b) => b.name !== own && (b.name.endsWith('/_job.json') || b.name === '_job.json'));
    if (inner) throw new LakeInferError('OutputConflict', `the folder '${prefix}' holds the folder of another job ('${inner.name.slice(0, -'_job.json'.length)}'); it is not emptied`, { target: 'output.prefix' });
    await mapLimit(page.items, 32, async (b) => {
      try {
        await output.deleteBlob(b.name);
      } catch (err) {
        if (restStatus(err) !== 404) throw storageError(err, 'deleting blob', `${output.containerName}/${b.name}`);
      }
    });
    n += page.items.length;
  }
  return n;
}

/**
 * Takes the job folder for this execution: new (writes _job.json), already ours (a retried plan),
 * the same request again (a resume), or, with restart, emptied and taken. Another request under
 * the same jobId is a JobSpecConflict naming the fields; a folder inside another job's is an
 * OutputConflict.
 */
export async function claimJobFolder(output: ContainerClient, job: JobSpec): Promise<'new' | 'ours' | 'resume' | 'restarted'> {
  const other = await enclosingJob(output, job.jobPrefix);
  if (other) {
    throw new LakeInferError('OutputConflict', `the job folder '${job.jobPrefix}' lies inside the folder of job '${other}' in container '${output.containerName}'; choose another output.prefix`, { target: 'output.prefix' });
  }
  const inner = await enclosedJob(output, job.jobPrefix);
  if (inner) {
    throw new LakeInferError('OutputConflict', `the job folder '${job.jobPrefix}' would contain the folder of another job ('${inner}') in container '${output.containerName}'; choose another output.prefix or jobId`, { target: 'output.prefix' });
  }
  const record: JobRecord = { jobId: job.jobId, executionId: job.executionId, digest: specDigest(job), spec: job, writtenAt: job.submittedAt };
  const existing = await readJson<JobRecord>(output, jobRecordName(job.jobPrefix));
  if (!existing) {
    await registerFolder(output, job);
    await writeJson(output, jobRecordName(job.jobPrefix), record);
    return 'new';
  }
  if (existing.executionId === job.executionId) return 'ours';
  await registerFolder(output, job); // folders taken before the registry existed get registered on their next run
  if (job.restart) {
    await emptyFolder(output, job.jobPrefix);
    await writeJson(output, jobRecordName(job.jobPrefix), record);
    return 'restarted';
  }
  if (existing.digest === record.digest) return 'resume';
  const fields = specDifferences(existing.spec, job);
  throw new LakeInferError(
    'JobSpecConflict',
    `job '${job.jobId}' already exists in '${job.jobPrefix}' with another request (${fields.join(', ')} differ); submit it with "restart": true to replace it, or use another jobId`,
    { target: fields[0] ?? 'jobId' },
  );
}

export async function readOutcome(output: ContainerClient, prefix: string): Promise<(JobOutcome & { etag: string }) | undefined> {
  const got = await readBlob(output, outcomeName(prefix));
  return got ? { ...(JSON.parse(got.data.toString('utf8')) as JobOutcome), etag: got.etag } : undefined;
}

/**
 * Decides how the job ends, once: creates _outcome.json unless it exists, and returns the outcome
 * that stands (this one, or the one decided first).
 */
export async function decideOutcome(output: ContainerClient, prefix: string, want: Omit<JobOutcome, 'at'>, at: string): Promise<JobOutcome> {
  const outcome: JobOutcome = { ...want, at };
  if (await writeJson(output, outcomeName(prefix), outcome, { ifNotExists: true })) return outcome;
  const standing = await readOutcome(output, prefix);
  if (!standing) return decideOutcome(output, prefix, want, at); // deleted in between: try again
  const { etag: _etag, ...rest } = standing;
  return rest;
}

/** Forgets an outcome that is not a success (before a failed or cancelled job is resumed). */
export async function clearOutcome(output: ContainerClient, prefix: string): Promise<void> {
  const standing = await readOutcome(output, prefix);
  if (!standing || standing.status === 'succeeded') return;
  try {
    await output.getBlobClient(outcomeName(prefix)).delete({ conditions: { ifMatch: `"${standing.etag}"` } });
  } catch (err) {
    if (restStatus(err) !== 404 && restStatus(err) !== 412) throw storageError(err, 'deleting outcome', `${output.containerName}/${outcomeName(prefix)}`);
  }
}

/**
 * Watches for a cancel while a partition runs: checks _outcome.json now and every `everyMs`, so the
 * partition stops taking new images soon after a cancel (a terminated orchestration no longer
 * waits for it, but it would go on spending the instance).
 */
export async function watchForCancel(output: ContainerClient, prefix: string, everyMs = 2000): Promise<{ readonly cancelled: boolean; stop(): void }> {
  const isCancelled = async (): Promise<boolean> => (await readOutcome(output, prefix).catch(() => undefined))?.status === 'cancelled';
  const state = { cancelled: await isCancelled(), stopped: false };
  const timer = setInterval(() => {
    void isCancelled().then((c) => {
      if (c) state.cancelled = true;
    });
  }, everyMs);
  timer.unref();
  return {
    get cancelled() {
      return state.cancelled;
    },
    stop: () => clearInterval(timer),
  };
}
