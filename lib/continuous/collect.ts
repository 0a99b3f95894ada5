/**
 * Continuous jobs: new or changed blobs under the job's input prefix are inferred as they land.
 *
 *   arrivals  ->  collect (a batch)  ->  plan partitions  ->  the job's usual partitions  ->  running totals
 *
 * - Arrivals are records in the job's folder, `_arrivals/<YYYYMMDD>/<HHmmssSSS>-<id>.json`, each a
 *   list of blobs (name, ETag, size). On Azure the Event Grid function writes them (BlobCreated
 *   events on the data account, matched against the registrations continuous jobs leave in
 *   `_lakeinfer/continuous/<jobId>.json` of their output container); locally the host scans the
 *   input prefix by last-modified time. Both feed the same code from here on.
 * - collect (an activity, at most once per poll) takes the arrival records after the job's cursor,
 *   keeps each blob's latest version, drops versions already inferred — the same ETag, or the same
 *   bytes by Content-MD5 (a re-upload of identical content gets a new ETag) — using the seen index
 *   `_continuous/seen/<shard>.json` (duplicate events and rescans cost nothing), and plans the rest
 *   as new partitions numbered after the existing ones. The batch is recorded first, create-only
 *   (`_continuous/batches/<n>.json`): a collect delivered twice plans the same partitions.
 * - The plan index is updated with the new partition count and the cursor, so a resumed job picks
 *   up where it was.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { ContainerClient } from '@azure/storage-blob';
import { isLakeInferError, restStatus } from '../util/errors';
import { nameProblem } from '../storage/names';
import { readOutcome } from '../job/folder';
import { fixedPartitionSize, type JobSpec } from '../job/request';
import { addSegment, type Segment } from '../job/layout';
import { mapLimit, md5Of, normalizeEtag, planBlobName, planIndexName, readJson, updateJson, writeJson, type BlobRef, type PlanIndex, type PlanPartition } from '../storage';

export const ARRIVALS = '_arrivals/';
const SEEN = '_continuous/seen/';
const BATCHES = '_continuous/batches/';
const SCAN = '_continuous/scan.json';
/** Registrations the Event Grid function reads, in the job's output container. */
export const REGISTRATIONS = '_lakeinfer/continuous/';
/** Most arrival records one collect consumes (the rest wait for the next poll). */
export const MAX_RECORDS_PER_COLLECT = 2_000;

export interface Arrival {
  name: string;
  etag: string;
  size: number;
  /** Content-MD5 (base64) when known: the same bytes uploaded again are recognised by it. */
  md5?: string;
  /** When it landed (its last-modified time, or the event's time): the report's upload-to-result latency. */
  landed?: string;
}

/** A landing time as recorded (ISO 8601), or nothing for anything else. */
function landedOf(v: unknown): { landed: string } | Record<string, never> {
  return typeof v === 'string' && v.length <= 40 && Number.isFinite(Date.parse(v)) ? { landed: new Date(v).toISOString() } : {};
}

/** What the seen index keeps of an inferred blob version. */
interface Seen {
  e: string;
  m?: string;
}

/** The same version as one already inferred: the same ETag, or the same bytes (Content-MD5). */
function alreadySeen(b: Arrival, seen: Seen | undefined): boolean {
  return seen !== undefined && (b.etag === seen.e || (b.md5 !== undefined && b.md5 === seen.m));
}

export interface Registration {
  jobId: string;
  jobPrefix: string;
  input: JobSpec['input'];
  output: { container: string };
}

/** Where the job's continuous cursor lives: in the plan index, next to the partition count. */
export type ContinuousIndex = PlanIndex & { continuous?: { cursor: string; seeded: boolean; layout?: Segment[] } };

function pad(n: number, w: number): string {
  return String(n).padStart(w, '0');
}

/** An arrival record's name: ordered by time, unique. */
export function arrivalName(jobPrefix: string, at: Date, id = randomBytes(6).toString('hex')): string {
  const day = `${at.getUTCFullYear()}${pad(at.getUTCMonth() + 1, 2)}${pad(at.getUTCDate(), 2)}`;
  const time = `${pad(at.getUTCHours(), 2)}${pad(at.getUTCMinutes(), 2)}${pad(at.getUTCSeconds(), 2)}${pad(at.getUTCMilliseconds(), 3)}`;
  return `${jobPrefix}${ARRIVALS}${day}/${time}-${id}.json`;
}

/** Whether a blob belongs to the job's input (prefix, extensions, not the job's own folder). */
export function watches(job: Pick<Registration, 'input' | 'output' | 'jobPrefix'>, container: string, name: string): boolean {
  if (container !== job.input.container || !name.startsWith(job.input.prefix)) return false;
  if (job.output.container === container && name.startsWith(job.jobPrefix)) return false;
  const lower = name.toLowerCase();
  return job.input.extensions.length === 0 || job.input.extensions.some((e) => lower.endsWith(e));
}

/** Records blobs that landed (Event Grid or a scan). Nothing is written for an empty list. */
export async function recordArrivals(output: ContainerClient, job: Pick<Registration, 'input' | 'output' | 'jobPrefix'>, blobs: Arrival[], at: Date = new Date()): Promise<number> {
  const mine = blobs.filter((b) => watches(job, job.input.container, b.name));
  if (mine.length === 0) return 0;
  await writeJson(output, arrivalName(job.jobPrefix, at), { blobs: mine });
  return mine.length;
}

function shardOf(name: string): string {
  return createHash('sha1').update(name).digest('hex').slice(0, 2);
}

/** Records name -> version in the seen index (read-modify-write with ETag conditions per shard). */
async function markSeen(output: ContainerClient, jobPrefix: string, blobs: readonly Pick<Arrival, 'name' | 'etag' | 'md5'>[]): Promise<void> {
  const byShard = new Map<string, Pick<Arrival, 'name' | 'etag' | 'md5'>[]>();
  for (const b of blobs) {
    const s = shardOf(b.name);
    const list = byShard.get(s);
    if (list) list.push(b);
    else byShard.set(s, [b]);
  }
  await mapLimit([...byShard.entries()], 16, ([shard, list]) =>
    updateJson<Record<string, Seen>>(
      output,
      `${jobPrefix}${SEEN}${shard}.json`,
      (current = {}) => {
        for (const b of list) current[b.name] = b.md5 ? { e: b.etag, m: b.md5 } : { e: b.etag };
        return current;
      },
      { what: 'the seen index', maxTries: 11 },
    ),
  );
}

async function seenVersions(output: ContainerClient, jobPrefix: string, names: readonly string[]): Promise<Map<string, Seen>> {
  const shards = [...new Set(names.map(shardOf))];
  const out = new Map<string, Seen>();
  await mapLimit(shards, 16, async (s) => {
    const m = await readJson<Record<string, Seen>>(output, `${jobPrefix}${SEEN}${s}.json`);
    for (const [k, v] of Object.entries(m ?? {})) out.set(k, v);
  });
  return out;
}

/** The arrival record names after `cursor`, oldest first, from the cursor's day on. */
async function arrivalsAfter(output: ContainerClient, jobPrefix: string, cursor: string, limit: number): Promise<string[]> {
  const root = `${jobPrefix}${ARRIVALS}`;
  const days: string[] = [];
  for await (const item of output.listBlobsByHierarchy('/', { prefix: root })) if (item.kind === 'prefix') days.push(item.name);
  days.sort();
  const cursorDay = cursor ? cursor.slice(0, root.length + 9) : '';
  const names: string[] = [];
  for (const day of days) {
    if (day < cursorDay) continue;
    for await (const b of output.listBlobsFlat({ prefix: day })) {
      if (b.name > cursor) names.push(b.name);
      if (names.length >= limit) break;
    }
    if (names.length >= limit) break;
  }
  return names.sort().slice(0, limit);
}

export interface CollectInput {
  job: Pick<JobSpec, 'jobId' | 'jobPrefix' | 'input' | 'output' | 'partitionSize' | 'executionId'>;
  /** Partitions planned so far (the batch's partitions are numbered from here) and their images. */
  partitions: number;
  total: number;
  cursor: string;
}

export interface CollectResult {
  /** The job was stopped (DELETE decided its outcome): no batch was taken. */
  stopped: boolean;
  partitions: number;
  total: number;
  cursor: string;
  /** Images in this batch (0: nothing new). */
  images: number;
}

interface BatchRecord {
  n: number;
  first: number;
  cursor: string;
  blobs: BlobRef[];
}

/**
 * One poll of a continuous job: a stop decided by DELETE ends it; else the arrivals after the
 * cursor become a batch of new partitions (nothing new: the same counts back).
 */
export async function collectArrivals(output: ContainerClient, input: CollectInput, source?: ContainerClient): Promise<CollectResult> {
  const p = input.job.jobPrefix;
  const outcome = await readOutcome(output, p);
  if (outcome && outcome.status === 'cancelled') return { stopped: true, partitions: input.partitions, total: input.total, cursor: input.cursor, images: 0 };
  const index = await readJson<ContinuousIndex>(output, planIndexName(p));
  if (!index) throw new Error(`plan index of job '${input.job.jobId}' is missing`);
  // The first collect seeds the seen index with the initial plan, so rescans and late events of
  // those blobs are recognised.
  if (!index.continuous?.seeded) {
    for (let n = 0; n < input.partitions; n += 32) {
      const parts = await mapLimit(Array.from({ length: Math.min(32, input.partitions - n) }, (_, i) => n + i), 16, (k) => readJson<PlanPartition>(output, planBlobName(p, k)));
      await markSeen(output, p, parts.flatMap((x) => x?.blobs ?? []));
    }
    index.continuous = { cursor: index.continuous?.cursor ?? input.cursor, seeded: true };
    await writeJson(output, planIndexName(p), index);
  }
  // A batch already recorded under this number (a collect delivered again): the same batch.
  let batch = await readJson<BatchRecord>(output, `${p}${BATCHES}${input.partitions}.json`);
  if (!batch) {
    const names = await arrivalsAfter(output, p, input.cursor, MAX_RECORDS_PER_COLLECT);
    if (names.length === 0) return { stopped: false, partitions: input.partitions, total: input.total, cursor: input.cursor, images: 0 };
    // Each record on its own: one that is not valid (not JSON, no blobs, an entry without a name
    // under the input prefix or with a name no blob can have) is skipped, never a failure of the job.
    const records = await mapLimit(names, 16, (n) =>
      readJson<{ blobs?: unknown }>(output, n).catch((err: unknown) => {
        if (isLakeInferError(err) && !err.retryable) return undefined;
        throw err;
      }),
    );
    const latest = new Map<string, Arrival>();
    for (const r of records) {
      if (!r || !Array.isArray(r.blobs)) continue;
      for (const b of r.blobs as Partial<Arrival>[]) {
        if (typeof b?.name !== 'string' || typeof b.etag !== 'string' || nameProblem(b.name) !== undefined) continue;
        if (watches(input.job, input.job.input.container, b.name)) latest.set(b.name, { name: b.name, etag: b.etag, size: typeof b.size === 'number' ? b.size : 0, ...(typeof b.md5 === 'string' ? { md5: b.md5 } : {}), ...landedOf(b.landed) });
      }
    }
    // Event Grid says nothing of the content: the blob's current properties (Content-MD5, ETag);
    // a blob gone since it landed is dropped.
    if (source) {
      await mapLimit([...latest.values()].filter((b) => b.md5 === undefined), 16, async (b) => {
        try {
          const props = await source.getBlobClient(b.name).getProperties();
          const md5 = md5Of(props.contentMD5);
          latest.set(b.name, { name: b.name, etag: normalizeEtag(props.etag), size: props.contentLength ?? b.size, ...(md5 ? { md5 } : {}), ...landedOf(b.landed ?? props.lastModified?.toISOString()) });
        } catch (err) {
          if (restStatus(err) === 404) latest.delete(b.name);
          else throw err;
        }
      });
    }
    const seen = await seenVersions(output, p, [...latest.keys()]);
    const fresh = [...latest.values()].filter((b) => !alreadySeen(b, seen.get(b.name))).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const cursor = names[names.length - 1]!;
    if (fresh.length === 0) {
      index.continuous = { ...index.continuous, cursor, seeded: true };
      await writeJson(output, planIndexName(p), index);
      return { stopped: false, partitions: input.partitions, total: input.total, cursor, images: 0 };
    }
    batch = { n: input.partitions, first: input.total, cursor, blobs: fresh.map((b) => ({ name: b.name, etag: b.etag, size: b.size, ...(b.md5 ? { md5: b.md5 } : {}), ...(b.landed ? { landed: b.landed } : {}) })) };
    // Create-only: a concurrent delivery of the same collect that recorded it first wins.
    if ((await writeJson(output, `${p}${BATCHES}${batch.n}.json`, batch, { ifNotExists: true })) === false) batch = (await readJson<BatchRecord>(output, `${p}${BATCHES}${input.partitions}.json`))!;
  }
  // Plan files for the batch (the same content on a repeat), then the index, then the seen index.
  const size = fixedPartitionSize(input.job);
  const count = Math.ceil(batch.blobs.length / size);
  await mapLimit(Array.from({ length: count }, (_, i) => i), 8, (i) => {
    const part: PlanPartition = { jobId: input.job.jobId, n: batch.n + i, first: batch.first + i * size, blobs: batch.blobs.slice(i * size, (i + 1) * size) };
    return writeJson(output, planBlobName(p, part.n), part);
  });
  const partitions = batch.n + count;
  const total = batch.first + batch.blobs.length;
  // The batch's run of partitions, as the orchestrator lays it out too (a resumed job reads it from here).
  const layout = addSegment(index.continuous?.layout, batch.n, batch.first, size);
  await writeJson(output, planIndexName(p), { ...index, partitions, total, bytes: index.bytes + batch.blobs.reduce((s, b) => s + b.size, 0), continuous: { cursor: batch.cursor, seeded: true, ...(layout.length > 1 ? { layout } : {}) } } satisfies ContinuousIndex);
  await markSeen(output, p, batch.blobs);
  return { stopped: false, partitions, total, cursor: batch.cursor, images: batch.blobs.length };
}

/**
 * The local host's stand-in for Event Grid: lists the input prefix and records as arrivals the
 * blobs modified at or after the last scan's newest time (ties and rescans are dropped by collect's
 * seen index, as duplicate events are). The scan position is kept in the job's folder.
 */
export async function scanForArrivals(input: ContainerClient, output: ContainerClient, job: Pick<Registration, 'input' | 'output' | 'jobPrefix'>, now: Date = new Date()): Promise<number> {
  // Last-modified has a resolution of one second: the blobs of the newest second seen are
  // remembered by version, so a look records each version once and an idle look writes nothing.
  const state = await readJson<ScanState>(output, `${job.jobPrefix}${SCAN}`);
  const since = state ? Date.parse(state.since) : 0;
  const atSince = new Set(state?.atSince ?? []);
  let newest = since;
  let atNewest = new Set(atSince);
  const found: Arrival[] = [];
  for await (const b of input.listBlobsFlat({ prefix: job.input.prefix })) {
    const t = b.properties.lastModified?.getTime() ?? 0;
    if (t < since || !watches(job, input.containerName, b.name)) continue;
    const etag = normalizeEtag(b.properties.etag);
    const version = `${etag} ${b.name}`;
    if (t === since && atSince.has(version)) continue;
    const md5 = md5Of(b.properties.contentMD5);
    found.push({ name: b.name, etag, size: b.properties.contentLength ?? 0, ...(md5 ? { md5 } : {}), ...landedOf(b.properties.lastModified?.toISOString()) });
    if (t > newest) {
      newest = t;
      atNewest = new Set();
    }
    if (t === newest) atNewest.add(version);
  }
  if (found.length === 0 && state) return 0;
  const n = await recordArrivals(output, job, found, now);
  await writeJson(output, `${job.jobPrefix}${SCAN}`, { since: new Date(newest).toISOString(), atSince: [...atNewest] } satisfies ScanState);
  return n;
}

/** Where the local scanner stands: the newest last-modified seen and the versions seen at it. */
interface ScanState {
  since: string;
  atSince?: string[];
}

/** Registration of a continuous job for the Event Grid function (written at plan, removed at stop). */
export function registrationName(jobId: string): string {
  return `${REGISTRATIONS}${jobId}.json`;
}

/** Parses an Event Grid BlobCreated subject: /blobServices/default/containers/<c>/blobs/<name>. */
export function blobOfSubject(subject: string): { container: string; name: string } | undefined {
  const m = /^\/blobServices\/default\/containers\/([^/]+)\/blobs\/(.+)$/.exec(subject);
  return m ? { container: m[1]!, name: m[2]! } : undefined;
}

export interface BlobEvent {
  subject: string;
  eventType: string;
  eventTime?: string;
  data: { eTag?: string; contentLength?: number };
}

/**
 * Event Grid: BlobCreated events become arrival records of every continuous job registered in the
 * given output containers whose input they fall in. Other events are ignored.
 */
/** Why a blob under _lakeinfer/continuous/ is not a registration (undefined: it is one). */
export function registrationProblem(r: unknown): string | undefined {
  if (typeof r !== 'object' || r === null) return 'not a JSON object';
  const x = r as Partial<Registration>;
  if (typeof x.jobId !== 'string' || typeof x.jobPrefix !== 'string' || !x.jobPrefix.endsWith('/')) return 'no jobId / jobPrefix';
  if (typeof x.input?.container !== 'string' || typeof x.input.prefix !== 'string' || !Array.isArray(x.input.extensions)) return 'no input container, prefix and extensions';
  if (typeof x.output?.container !== 'string') return 'no output container';
  return undefined;
}

export async function recordBlobEvents(outputs: ContainerClient[], events: BlobEvent[], at: Date = new Date(), onSkip?: (blob: string, why: string) => void): Promise<number> {
  const blobs = events
    .filter((e) => e.eventType === 'Microsoft.Storage.BlobCreated')
    .map((e) => ({ at: blobOfSubject(e.subject), etag: normalizeEtag(e.data.eTag), size: e.data.contentLength ?? 0, ...landedOf(e.eventTime) }))
    .filter((b): b is { at: { container: string; name: string }; etag: string; size: number; landed?: string } => b.at !== undefined);
  if (blobs.length === 0) return 0;
  let recorded = 0;
  for (const output of outputs) {
    const regs: Registration[] = [];
    for await (const b of output.listBlobsFlat({ prefix: REGISTRATIONS })) {
      // Each registration on its own: a blob that is not one (any job may write under this prefix
      // of its output container) is skipped and reported, never a failure of the whole delivery.
      const r = await readJson<unknown>(output, b.name).catch((err: unknown) => {
        if (isLakeInferError(err) && !err.retryable) return undefined;
        throw err;
      });
      const problem = registrationProblem(r);
      if (problem) {
        onSkip?.(`${output.containerName}/${b.name}`, problem);
        continue;
      }
      regs.push(r as Registration);
    }
    for (const r of regs) {
      const mine = blobs.filter((b) => watches(r, b.at.container, b.at.name)).map((b) => ({ name: b.at.name, etag: b.etag, size: b.size, ...(b.landed ? { landed: b.landed } : {}) }));
      recorded += await recordArrivals(output, r, mine, at);
    }
  }
  return recorded;
}
