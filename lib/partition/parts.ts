/**
 * A partition's files in the job folder. A partition is processed in pieces: a piece is the images
 * of the partition from index `from` as far as one activity's time budget went (usually all of
 * them: one piece). Each piece writes its fragments; the last piece writes the partition summary,
 * which lists every piece's fragments, so that finalize composes the job's files from them without
 * reading them:
 *
 *   _parts/<n>/<from>.results.jsonl   one result per line
 *   _parts/<n>/<from>.coco.json       ',\n{annotation}' per detection (comma first: composable)
 *   _parts/<n>/<from>.failures.jsonl  one failure per line
 *   _parts/<n>/<from>.json            the piece's summary, when a continuation follows it
 *   _parts/<n>/<from>.attempts        attempts of the piece in this run of the job, and the last error
 *   _parts/<n>.json                   the partition's summary, written last: the partition is complete
 */
import type { ContainerClient } from '@azure/storage-blob';
import { listAllBlobs, readJson, updateJson } from '../storage';
import type { AnalyzedImage } from '../model';

/** Upper bounds (ms) of the per-image latency histogram; the last bucket is open. */
/** One image's result: a line of results.jsonl (and, flattened, rows of the Parquet dataset). */
export interface ImageResult {
  source: { container: string; name: string; etag: string };
  /** A video frame: its index in the video (presentation order) and its time from the first frame. */
  frame?: { index: number; time: number };
  width: number;
  height: number;
  format: string;
  detections: AnalyzedImage['detections'];
  classes?: AnalyzedImage['classes'];
  model: { name: string; etag: string };
  timings: AnalyzedImage['timings'] & { downloadMs: number; writeMs: number };
}

export const LATENCY_BOUNDS_MS = [25, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, Number.POSITIVE_INFINITY];
/** Images a piece keeps as report samples, and failures it keeps for the report's table. */
export const SAMPLES_PER_PIECE = 3;
export const FAILURES_PER_PIECE = 5;

export interface StageTimings {
  downloadMs: number;
  decodeMs: number;
  inferMs: number;
  postMs: number;
  writeMs: number;
}

export type Stage = 'plan' | 'probe' | 'download' | 'decode' | 'infer' | 'write';

export interface FailureRecord {
  blob: string;
  /** A video frame's index, when the failure is one frame's. */
  frame?: number;
  stage: Stage | 'partition';
  code: string;
  message: string;
}

/** An image shown in the job report. */
export interface ImageSample {
  name: string;
  /** Path of the overlay relative to the report (URL-encoded by the report, not the caller). */
  overlay?: string;
  width: number;
  height: number;
  detections: number;
  labels: string[];
}

/**
 * A fragment file: its size, the ETag it was written with, and its name (absent in summaries
 * written before fragments were named per attempt: the piece's plain name).
 */
export interface Fragment {
  bytes: number;
  etag: string;
  name?: string;
  /** Base64 MD5 of its bytes: composition stages it only if storage reads exactly these. */
  md5?: string;
}

export interface PieceFragments {
  from: number;
  to: number;
  results: Fragment;
  coco: Fragment;
  failures: Fragment;
  /** The piece's part of the Parquet dataset (absent when the job's formats leave Parquet out). */
  parquet?: Fragment & { name: string; rows: number };
}

export interface Counts {
  images: number;
  succeeded: number;
  failed: number;
  skipped: number;
  detections: number;
}

/** What a piece and a whole partition both report. */
interface RunSummary extends Counts {
  n: number;
  /** Time waited for the model (0 when the process held it already); a partition's: of its pieces. */
  modelLoadMs?: number;
  /** From the start to the first image done (cold start shows here); a partition's: its first piece's. */
  firstResultMs?: number;
  /** Sum over images of each stage's time (stages overlap across images). */
  stageMs: StageTimings;
  /** A partition's: the sum of its pieces' wall times. */
  wallMs: number;
  startedAt: string;
  endedAt: string;
  /** Per-image end-to-end latency counts, by LATENCY_BOUNDS_MS. */
  latencyCounts: number[];
  samples: ImageSample[];
  failureHead: FailureRecord[];
  /** The videos whose frames it inferred (absent: none). */
  videos?: Record<string, VideoStats>;
}

/** A video's frames in a piece or partition: counts, and detections per second of the video. */
export interface VideoStats {
  frames: number;
  failed: number;
  detections: number;
  /** Detections of the frames in each second (index: whole seconds from the first frame). */
  bySecond: Record<string, number>;
  /** Frames in each second (so a timeline can show detections per frame). */
  framesBySecond: Record<string, number>;
}

/** Adds b's video stats into a (the map a report or summary keeps, at most `max` videos). */
export function mergeVideoStats(a: Record<string, VideoStats>, b: Record<string, VideoStats> | undefined, max = 200): Record<string, VideoStats> {
  for (const [name, v] of Object.entries(b ?? {})) {
    const t = a[name] ?? (Object.keys(a).length < max ? (a[name] = { frames: 0, failed: 0, detections: 0, bySecond: {}, framesBySecond: {} }) : undefined);
    if (!t) continue;
    t.frames += v.frames;
    t.failed += v.failed;
    t.detections += v.detections;
    for (const [k, n] of Object.entries(v.bySecond)) t.bySecond[k] = (t.bySecond[k] ?? 0) + n;
    for (const [k, n] of Object.entries(v.framesBySecond)) t.framesBySecond[k] = (t.framesBySecond[k] ?? 0) + n;
  }
  return a;
}

export interface PieceSummary extends RunSummary {
  from: number;
  to: number;
  fragments: PieceFragments;
}

export interface PartitionSummary extends RunSummary {
  pieces: PieceFragments[];
  /** What the partition was computed from: a resumed job skips it only when both still hold. */
  model: { etag: string; jsonEtag: string };
  planEtag: string;
  /** The run of the job that computed it. */
  run: string;
}

export function partsPrefix(jobPrefix: string): string {
  return `${jobPrefix}_parts/`;
}
export function partSummaryName(jobPrefix: string, n: number): string {
  return `${partsPrefix(jobPrefix)}${n}.json`;
}
export type FragmentKind = 'results' | 'coco' | 'failures';
const FRAGMENT_SUFFIX: Record<FragmentKind, string> = { results: '.results.jsonl', coco: '.coco.json', failures: '.failures.jsonl' };
/**
 * A piece's fragment. Each attempt of a piece writes its own (`attempt`), so a duplicate attempt
 * (at-least-once delivery) never rewrites the fragments a completed attempt's summary recorded.
 */
export function pieceFragmentName(jobPrefix: string, n: number, from: number, kind: FragmentKind, attempt?: string): string {
  return `${partsPrefix(jobPrefix)}${n}/${from}${attempt ? `.${attempt}` : ''}${FRAGMENT_SUFFIX[kind]}`;
}

/** The partition a name under `_parts/` belongs to. */
export function partitionOfPartName(jobPrefix: string, name: string): number | undefined {
  const m = /^(\d+)[/.]/.exec(name.startsWith(partsPrefix(jobPrefix)) ? name.slice(partsPrefix(jobPrefix).length) : '');
  return m ? Number(m[1]) : undefined;
}
export function pieceSummaryName(jobPrefix: string, n: number, from: number): string {
  return `${partsPrefix(jobPrefix)}${n}/${from}.json`;
}
export function attemptsName(jobPrefix: string, n: number, from: number): string {
  return `${partsPrefix(jobPrefix)}${n}/${from}.attempts`;
}

export function emptyStages(): StageTimings {
  return { downloadMs: 0, decodeMs: 0, inferMs: 0, postMs: 0, writeMs: 0 };
}

export function addStages(into: StageTimings, from: StageTimings): void {
  for (const k of Object.keys(into) as (keyof StageTimings)[]) into[k] += from[k];
}

export function roundStages(t: StageTimings): void {
  for (const k of Object.keys(t) as (keyof StageTimings)[]) t[k] = Math.round(t[k] * 10) / 10;
}

export function latencyBucket(ms: number): number {
  return LATENCY_BOUNDS_MS.findIndex((b) => ms <= b);
}

/** The summaries of the pieces written before `before` (a partition that needed continuations), in order. */
export async function earlierPieces(output: ContainerClient, jobPrefix: string, n: number, before: number): Promise<PieceSummary[]> {
  const dir = `${partsPrefix(jobPrefix)}${n}/`;
  const names = (await listAllBlobs(output, { prefix: dir })).map((b) => b.name).filter((name) => /^\d+\.json$/.test(name.slice(dir.length)));
  const froms = names.map((name) => Number(name.slice(dir.length, -'.json'.length))).filter((f) => f < before).sort((a, b) => a - b);
  const out: PieceSummary[] = [];
  for (const f of froms) {
    const s = await readJson<PieceSummary>(output, pieceSummaryName(jobPrefix, n, f));
    if (s) out.push(s);
  }
  return out;
}

/** The whole partition from its pieces (in order, covering 0..images without gaps). */
export function combinePieces(n: number, pieces: PieceSummary[], model: PartitionSummary['model'], planEtag: string, run: string): PartitionSummary {
  const stageMs = emptyStages();
  const latencyCounts = new Array<number>(LATENCY_BOUNDS_MS.length).fill(0);
  const sum = { images: 0, succeeded: 0, failed: 0, skipped: 0, detections: 0, wallMs: 0 };
  for (const p of pieces) {
    for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += p[k];
    addStages(stageMs, p.stageMs);
    p.latencyCounts.forEach((c, i) => (latencyCounts[i]! += c));
  }
  roundStages(stageMs);
  return {
    n,
    ...sum,
    modelLoadMs: Math.round(pieces.reduce((t, p) => t + (p.modelLoadMs ?? 0), 0) * 10) / 10,
    ...(pieces[0]!.firstResultMs !== undefined ? { firstResultMs: pieces[0]!.firstResultMs } : {}),
    wallMs: Math.round(sum.wallMs * 10) / 10,
    stageMs,
    startedAt: pieces[0]!.startedAt,
    endedAt: pieces[pieces.length - 1]!.endedAt,
    latencyCounts,
    samples: pieces.flatMap((p) => p.samples).slice(0, SAMPLES_PER_PIECE * 2),
    failureHead: pieces.flatMap((p) => p.failureHead).slice(0, FAILURES_PER_PIECE),
    pieces: pieces.map((p) => p.fragments),
    ...(pieces.some((p) => p.videos) ? { videos: pieces.reduce<Record<string, VideoStats>>((acc, p) => mergeVideoStats(acc, p.videos), {}) } : {}),
    model,
    planEtag,
    run,
  };
}

export interface AttemptsRecord {
  /** The run of the job the count belongs to (a resumed job starts counting again). */
  run: string;
  count: number;
  last?: { code: string; message: string; at: string };
}

/** Most characters of an error message kept in an attempts record or in orchestration state. */
export const MESSAGE_CHARS = 200;

export function shortMessage(message: string): string {
  const line = message.split('\n')[0] ?? '';
  return line.length <= MESSAGE_CHARS ? line : `${line.slice(0, MESSAGE_CHARS - 1)}…`;
}

/** Changes a piece's attempts record with optimistic concurrency (see updateJson). */
function updateAttempts(output: ContainerClient, name: string, change: (r: AttemptsRecord | undefined) => AttemptsRecord): Promise<AttemptsRecord> {
  return updateJson(output, name, change, { what: 'attempts' });
}

/**
 * Counts one more attempt of a piece in this run; returns the record with this attempt counted,
 * and whether any attempt (of any run) had started before: only then can results exist.
 */
export async function beginAttempt(output: ContainerClient, jobPrefix: string, n: number, from: number, run: string): Promise<AttemptsRecord & { startedBefore: boolean }> {
  let startedBefore = false;
  const r = await updateAttempts(output, attemptsName(jobPrefix, n, from), (prev) => {
    startedBefore = prev !== undefined;
    return prev && prev.run === run ? { ...prev, count: prev.count + 1 } : { run, count: 1 };
  });
  return { ...r, startedBefore };
}

/** Records why an attempt failed (best effort: the failure itself is what matters). */
export async function recordAttemptError(output: ContainerClient, jobPrefix: string, n: number, from: number, run: string, code: string, message: string): Promise<void> {
  await updateAttempts(output, attemptsName(jobPrefix, n, from), (r) => ({ ...(r && r.run === run ? r : { run, count: 1 }), last: { code, message: shortMessage(message), at: new Date().toISOString() } })).catch(() => undefined);
}

export function readAttempts(output: ContainerClient, jobPrefix: string, n: number, from: number): Promise<AttemptsRecord | undefined> {
  return readJson<AttemptsRecord>(output, attemptsName(jobPrefix, n, from));
}
