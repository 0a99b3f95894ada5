/**
 * Annotated videos, as YOLACT's `eval.py --video` writes one: every frame a job takes, with its
 * masks, boxes and labels drawn, encoded again as a video (H.264 in MP4, with the shipped ffmpeg).
 *
 * A video fans out over partitions, so each piece encodes a segment of its own: its frames of the
 * video, in order, at the rate they were taken (their timestamps' mean spacing), from frames kept
 * on the local disk meanwhile (raw RGB, one file each: memory stays flat whatever the piece holds).
 * Finalize joins the segments of each video in frame order with ffmpeg's concat demuxer (stream
 * copy: no second encode) into `overlays/<video>.mp4`. ffmpeg reads only files this process wrote.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { LakeInferError } from '../util/errors';
import { requireFfmpeg } from './ffmpeg';

/** One frame of an annotated video: its index in the source and its time (seconds). */
interface Kept {
  index: number;
  time: number;
  file: string;
  width: number;
  height: number;
}

/** A piece's encoded segment of one video. */
export interface Segment {
  video: string;
  /** Index (in the source) of its first frame, and how many frames it holds. */
  first: number;
  frames: number;
  /** Seconds of video it covers (its frames at their rate), and its first frame's time. */
  seconds: number;
  time: number;
  /** Local disk its raw frames took while the piece ran. */
  scratchBytes: number;
  data: Buffer;
}

/** Frames per second of frames taken at these times (at least 1/60, at most 240; 1 frame: 1). */
export function segmentRate(times: readonly number[]): number {
  if (times.length < 2) return 1;
  const span = times[times.length - 1]! - times[0]!;
  const fps = span > 0 ? (times.length - 1) / span : 30;
  return Math.min(240, Math.max(1 / 60, fps));
}

function runEncoder(args: string[], feed: (stdin: NodeJS.WritableStream) => Promise<void>, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(requireFfmpeg(), args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
    child.stdin.on('error', () => undefined);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new LakeInferError('VideoDecodeFailed', `ffmpeg could not encode the annotated video (${signal ?? `exit ${code}`}): ${err.trim().split('\n').pop() ?? ''}`, { retryable: true }));
    });
    feed(child.stdin).then(
      () => child.stdin.end(),
      (e: unknown) => {
        child.kill('SIGKILL');
        reject(e);
      },
    );
  });
}

/** The annotated frames of one piece, kept on disk until the piece encodes them. */
export class AnnotatedFrames {
  private readonly byVideo = new Map<string, Kept[]>();
  private constructor(private readonly dir: string) {}

  static async create(): Promise<AnnotatedFrames> {
    return new AnnotatedFrames(await mkdtemp(join(tmpdir(), 'lakeinfer-annotate-')));
  }

  /** Bytes of raw frames kept so far (the disk a piece of this size needs). */
  bytes = 0;

  async add(video: string, frame: { index: number; time: number }, rgb: { data: Uint8Array; width: number; height: number }): Promise<void> {
    const list = this.byVideo.get(video) ?? [];
    this.byVideo.set(video, list);
    const file = join(this.dir, `${this.byVideo.size}-${frame.index}.rgb`);
    await writeFile(file, rgb.data);
    this.bytes += rgb.data.length;
    list.push({ index: frame.index, time: frame.time, file, width: rgb.width, height: rgb.height });
  }

  /** Each video's frames in source order, encoded as one H.264 MP4 segment. */
  async segments(timeoutMs = 600_000): Promise<Segment[]> {
    const out: Segment[] = [];
    for (const [video, kept] of this.byVideo) {
      const frames = [...kept].sort((a, b) => a.index - b.index);
      const { width, height } = frames[0]!;
      const fps = segmentRate(frames.map((f) => f.time));
      const file = join(this.dir, `segment-${out.length}.mp4`);
      const args = [
        '-nostdin', '-hide_banner', '-loglevel', 'error',
        // The rate as thousandths (30.000000000000004 from timestamps would make a rational ffmpeg
        // turns into a time base of its own), and one track time scale for every segment, so that
        // the segments join by stream copy.
        '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-r', `${Math.max(1, Math.round(fps * 1000))}/1000`, '-i', 'pipe:0',
        // yuv420p needs even sides: one pixel of padding where a side is odd.
        '-vf', 'pad=ceil(iw/2)*2:ceil(ih/2)*2', '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '16', '-pix_fmt', 'yuv420p',
        // No B-frames: decode order is presentation order, no edit list, so segments join exactly.
        '-bf', '0',
        '-video_track_timescale', '90000', '-movflags', '+faststart', '-f', 'mp4', '-y', file,
      ];
      await runEncoder(
        args,
        async (stdin) => {
          for (const f of frames) {
            if (f.width !== width || f.height !== height) throw new LakeInferError('VideoDecodeFailed', `frame ${f.index} of '${video}' is ${f.width}x${f.height}, not ${width}x${height} like the others`);
            const ok = stdin.write(await readFile(f.file));
            if (!ok) await new Promise((r) => stdin.once('drain', r));
          }
        },
        timeoutMs,
      );
      out.push({ video, first: frames[0]!.index, frames: frames.length, seconds: frames.length / fps, time: frames[0]!.time, scratchBytes: frames.length * width * height * 3, data: await readFile(file) });
    }
    return out;
  }

  async close(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * Joins a video's segments (in order) into one MP4 without encoding again (concat demuxer, stream
 * copy). Each segment lasts until the next one's first frame (`times`: each one's first frame time),
 * so the joined video keeps the source's timeline whatever each segment's own rate was.
 */
export async function joinSegments(segments: readonly Buffer[], times: readonly number[] = [], timeoutMs = 600_000): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'lakeinfer-join-'));
  try {
    const names: string[] = [];
    for (const [i, s] of segments.entries()) {
      const name = join(dir, `${String(i).padStart(6, '0')}.mp4`);
      await writeFile(name, s);
      names.push(name);
    }
    const list = join(dir, 'list.txt');
    const lines = names.map((n, i) => {
      const next = times[i + 1];
      const here = times[i];
      return `file '${n}'\n${here !== undefined && next !== undefined && next > here ? `duration ${(next - here).toFixed(6)}\n` : ''}`;
    });
    await writeFile(list, lines.join(''));
    const file = join(dir, 'video.mp4');
    const args = ['-nostdin', '-hide_banner', '-loglevel', 'error', '-protocol_whitelist', 'file', '-f', 'concat', '-safe', '0', '-i', list, '-c', 'copy', '-movflags', '+faststart', '-y', file];
    await runEncoder(args, async () => undefined, timeoutMs);
    return await readFile(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
