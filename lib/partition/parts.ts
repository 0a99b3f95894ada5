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
import type { Overlays } from '../job/request';

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
/** Upper bounds (s) of a continuous job's landed-to-result histogram; the last bucket is open. */
export const LANDED_BOUNDS_S = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, Number.POSITIVE_INFINITY];
/** Images a job's report shows (its partitions keep their share each: the orchestrator says how many). */
export const MAX_SAMPLES = 120;
/** Samples a partition keeps when it is not told (a partition run alone, by tests or the bench). */
export const DEFAULT_SAMPLES = 3;
/** Failures a piece keeps for the report's table. */
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
  /** A classifier's top class and its score. */
  top?: { label: string; score: number };
}

/** Whether an image's overlay is drawn: every image's, none, or the report's samples' only. */
export function drawsOverlay(overlays: Overlays, sample: boolean): boolean {
  return overlays === true || (overlays === 'samples' && sample);
}

/**
 * What the report says of labels: per label, how many and the sum of their scores (every detection
 * of a detector; the top class of each image for a classifier), and the scores in ten bins of 0.1.
 */
export interface LabelStats {
  labels?: Record<string, [number, number]>;
  scoreBins?: number[];
  /** The labels are a classifier's top classes. */
  classes?: boolean;
}

/** Most labels a summary or manifest keeps by name; the rest are counted under OTHER_LABELS. */
export const MAX_LABELS = 1000;
export const OTHER_LABELS = '(other labels)';

export class LabelTally {
  private readonly labels: Record<string, [number, number]> = {};
  private readonly bins = new Array<number>(10).fill(0);
  private keys = 0;
  private n = 0;
  private classes = false;

  /** One image's detections, or a classifier's top class. */
  add(r: { detections: readonly { label: string; score: number }[]; classes?: readonly { label: string; score: number }[] }): void {
    if (r.classes?.length) this.classes = true;
    for (const d of r.classes?.length ? r.classes.slice(0, 1) : r.detections) {
      this.one(d.label, d.score, 1);
      this.bins[Math.min(9, Math.max(0, Math.floor(d.score * 10)))]!++;
    }
  }

  /** Adds another summary's stats. */
  merge(s: LabelStats): void {
    for (const [label, [count, sum]] of Object.entries(s.labels ?? {})) this.one(label, sum, count);
    s.scoreBins?.forEach((c, i) => (this.bins[i]! += c));
    if (s.classes) this.classes = true;
  }

  private one(label: string, score: number, count: number): void {
    let key = label;
    if (this.labels[key] === undefined) {
      if (this.keys >= MAX_LABELS) key = OTHER_LABELS;
      else this.keys++;
    }
    const t = (this.labels[key] ??= [0, 0]);
    t[0] += count;
    t[1] += score;
    this.n += count;
  }

  summary(): LabelStats {
    if (this.n === 0) return {};
    const labels: Record<string, [number, number]> = {};
    for (const [k, [c, s]] of Object.entries(this.labels)) labels[k] = [c, Math.round(s * 1e4) / 1e4];
    return { labels, scoreBins: [...this.bins], ...(this.classes ? { classes: true } : {}) };
  }

  /** The most frequent labels first (at most `top`), with their mean scores, for a manifest. */
  ranked(top = 200): { label: string; count: number; meanScore: number }[] {
    return Object.entries(this.labels)
      .map(([label, [count, sum]]) => ({ label, count, meanScore: Math.round((sum / count) * 1000) / 1000 }))
      .sort((a, b) => b.count - a.count || (a.label < b.label ? -1 : 1))
      .slice(0, top);
  }
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
  parquet?: Fragment & { name: string; rows: number; /** Delta statistics of its rows (deltaStats). */ stats?: string; /** Written to the job's shared table: `name` is relative to the table. */ table?: boolean };
}

export interface Counts {
  images: number;
  succeeded: number;
  failed: number;
  skipped: number;
  detections: number;
}

/** What a piece and a whole partition both report. */
interface RunSummary extends Counts, LabelStats {
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
  /** A continuous job's arrivals: seconds from landing to result, counts by LANDED_BOUNDS_S. */
  landedCounts?: number[];
  samples: ImageSample[];
  failureHead: FailureRecord[];
  /** The videos whose frames it inferred (absent: none). */
  videos?: Record<string, VideoStats>;
  /** Its segments of annotated videos (overlays on), in the order of their first frames. */
  annotated?: AnnotatedSegment[];
}

/** A segment of an annotated video a piece encoded: its frames of one video, and the file. */
export interface AnnotatedSegment extends Fragment {
  video: string;
  first: number;
  frames: number;
  seconds: number;
  /** Its first frame's time in the video (seconds). */
  time?: number;
  /** Local disk its raw frames took while the piece ran (bytes). */
  scratchBytes?: number;
  name: string;
}

/** Where a piece's segment of an annotated video is kept until finalize joins them. */
export function annotatedSegmentName(jobPrefix: string, n: number, from: number, attempt: string, k: number): string {
  return `${partsPrefix(jobPrefix)}${n}/${from}.${attempt}.video-${k}.mp4`;
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

/** Counts added bucket by bucket (absent lists count nothing). */
export function sumCounts(lists: readonly (readonly number[] | undefined)[], length: number): number[] {
  const out = new Array<number>(length).fill(0);
  for (const l of lists) l?.forEach((c, i) => (out[i]! += c));
  return out;
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
  const labels = new LabelTally();
  for (const p of pieces) labels.merge(p);
  const landed = pieces.some((p) => p.landedCounts) ? sumCounts(pieces.map((p) => p.landedCounts), LANDED_BOUNDS_S.length) : undefined;
  return {
    n,
    ...sum,
    ...labels.summary(),
    modelLoadMs: Math.round(pieces.reduce((t, p) => t + (p.modelLoadMs ?? 0), 0) * 10) / 10,
    ...(pieces[0]!.firstResultMs !== undefined ? { firstResultMs: pieces[0]!.firstResultMs } : {}),
    wallMs: Math.round(sum.wallMs * 10) / 10,
    stageMs,
    startedAt: pieces[0]!.startedAt,
    endedAt: pieces[pieces.length - 1]!.endedAt,
    latencyCounts,
    ...(landed ? { landedCounts: landed } : {}),
    samples: pieces.flatMap((p) => p.samples).slice(0, MAX_SAMPLES),
    failureHead: pieces.flatMap((p) => p.failureHead).slice(0, FAILURES_PER_PIECE),
    pieces: pieces.map((p) => p.fragments),
    ...(pieces.some((p) => p.videos) ? { videos: pieces.reduce<Record<string, VideoStats>>((acc, p) => mergeVideoStats(acc, p.videos), {}) } : {}),
    ...(pieces.some((p) => p.annotated) ? { annotated: pieces.flatMap((p) => p.annotated ?? []) } : {}),
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
