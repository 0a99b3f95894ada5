/**
 * Which frames a job takes from a video, and how they are decoded in runs: pure functions over a
 * probe (no I/O), so planning and tests agree on every index.
 */
import type { VideoProbe } from './probe';

export interface VideoOptions {
  /** Take every n-th frame (1: every frame). */
  everyNthFrame?: number;
  /** Sample to this rate: the first frame at or after each 1/fps step of the timeline. */
  fps?: number;
  /** Seconds from the first frame: frames before `start` or at/after `end` are left out. */
  start?: number;
  end?: number;
  /** At most this many frames of each video. */
  maxFrames?: number;
}

/** Each frame's time in seconds from the first frame (presentation timestamps, so VFR is exact). */
export function frameTimes(p: Pick<VideoProbe, 'pts' | 'tb'>): number[] {
  const t0 = p.pts[0] ?? 0;
  return p.pts.map((t) => Math.round((((t - t0) * p.tb.num) / p.tb.den) * 1e6) / 1e6);
}

/** The indices (presentation order) of the frames the options take. */
export function selectFrames(p: Pick<VideoProbe, 'pts' | 'tb'>, o: VideoOptions): number[] {
  const times = frameTimes(p);
  const out: number[] = [];
  const nth = Math.max(1, o.everyNthFrame ?? 1);
  let seen = 0;
  let nextStep = 0;
  for (let i = 0; i < times.length; i++) {
    const t = times[i]!;
    if (o.start !== undefined && t < o.start - 1e-9) continue;
    if (o.end !== undefined && t >= o.end - 1e-9) break;
    if (o.fps !== undefined) {
      const rel = t - (o.start ?? 0);
      if (rel + 1e-9 < nextStep / o.fps) continue;
      // the next step after this frame's time
      nextStep = Math.floor(rel * o.fps + 1e-9) + 1;
    } else if (seen++ % nth !== 0) continue;
    out.push(i);
    if (o.maxFrames !== undefined && out.length >= o.maxFrames) break;
  }
  return out;
}

export interface VideoRun {
  /** Seek target: the keyframe the run's first frame needs, in seconds (stream time). */
  seekS: number;
  /** The run's frames: indices and timestamps. */
  indices: number[];
  pts: number[];
}

/** Splits taken frames into runs of at most `size`, each decoded from its own keyframe. */
export function videoRuns(p: Pick<VideoProbe, 'pts' | 'tb' | 'keyOf'>, indices: readonly number[], size: number): VideoRun[] {
  const runs: VideoRun[] = [];
  for (let a = 0; a < indices.length; a += size) {
    const idx = indices.slice(a, a + size);
    const key = Math.min(...idx.map((i) => p.keyOf[i]!));
    runs.push({ seekS: seekSeconds(p, p.pts[key]!), indices: idx, pts: idx.map((i) => p.pts[i]!) });
  }
  return runs;
}

/** A keyframe's timestamp as the seek target: in seconds, rounded down to the microsecond. */
export function seekSeconds(p: Pick<VideoProbe, 'tb'>, pts: number): number {
  return Math.floor(((pts * p.tb.num) / p.tb.den) * 1e6) / 1e6;
}
