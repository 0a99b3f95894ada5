/**
 * Decodes a run of a video's frames, exactly: ffmpeg seeks to the keyframe the run needs (input
 * seeking, not accurate: it starts at that keyframe), keeps the stream's own timestamps (-copyts),
 * passes every decoded frame through (-vsync passthrough), and `showinfo` names each frame's
 * timestamp; frames are kept only when their timestamp is one the run asks for, so a run sees
 * exactly the frames a sequential read gives at those positions: none twice, none missing, none
 * from a neighbour. Pixels are RGB24 as ffmpeg's default conversion gives them, which is what
 * cv2.VideoCapture (OpenCV's ffmpeg backend) gives, channel order aside (test/video).
 *
 * ffmpeg stops as soon as the last frame asked for arrived; a run that ends before it has found
 * them all fails with VideoDecodeFailed naming the first missing frame.
 */
import { LakeInferError } from '../util/errors';
import { ffmpegReason, inputGuards, runFfmpeg } from './ffmpeg';

export interface DecodedFrame {
  pts: number;
  width: number;
  height: number;
  /** RGB24, row-major, width * height * 3 bytes. */
  data: Buffer;
}

export interface DecodeRun {
  /** Where to seek: a keyframe's timestamp, in seconds. */
  seekS: number;
  /** The frames wanted, by timestamp (time-base units), ascending. */
  pts: readonly number[];
  width: number;
  height: number;
}

const SHOWINFO = /\[Parsed_showinfo_\d+ @ [^\]]+\] n:\s*\d+ pts:\s*(-?\d+) pts_time:\S+.*? s:(\d+)x(\d+)/;

/**
 * Calls `onFrame` with each wanted frame in order (awaited: the decoder waits, with at most a few
 * frames read ahead, while the caller works). Resolves when the last wanted frame was handed over.
 */
export async function decodeFrames(url: string, run: DecodeRun, onFrame: (f: DecodedFrame) => Promise<void>, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<{ decoded: number; dropped: number }> {
  if (run.pts.length === 0) return { decoded: 0, dropped: 0 };
  const frameBytes = run.width * run.height * 3;
  const wanted = run.pts;
  let next = 0; // index into wanted
  const infos: { pts: number; w: number; h: number }[] = [];
  const chunks: Buffer[] = [];
  let buffered = 0;
  let decoded = 0;
  let dropped = 0;
  let failure: LakeInferError | undefined;
  let kill: () => void = () => undefined;
  let pause: () => void = () => undefined;
  let resume: () => void = () => undefined;
  let busy: Promise<void> = Promise.resolve();
  let handing = 0;

  const take = (): void => {
    while (!failure && next < wanted.length && infos.length > 0 && buffered >= frameBytes) {
      const info = infos.shift()!;
      const data = Buffer.concat(chunks, buffered);
      const frame = data.subarray(0, frameBytes);
      const rest = data.subarray(frameBytes);
      chunks.length = 0;
      if (rest.length) chunks.push(rest);
      buffered = rest.length;
      decoded++;
      if (info.w !== run.width || info.h !== run.height) {
        failure = new LakeInferError('VideoDecodeFailed', `a frame is ${info.w}x${info.h}, the video's frames are ${run.width}x${run.height} (the size changes mid-stream)`);
        kill();
        return;
      }
      if (info.pts < wanted[next]!) {
        dropped++; // before the run's first frame (decoded from the keyframe on), or between sampled frames
        continue;
      }
      if (info.pts > wanted[next]!) {
        failure = new LakeInferError('VideoDecodeFailed', `the frame at timestamp ${wanted[next]} was not decoded (the decoder went from before it to ${info.pts})`);
        kill();
        return;
      }
      next++;
      const f: DecodedFrame = { pts: info.pts, width: info.w, height: info.h, data: Buffer.from(frame) };
      handing++;
      if (handing > 2) pause();
      busy = busy.then(() => onFrame(f)).finally(() => {
        handing--;
        if (handing <= 2) resume();
      });
      if (next === wanted.length) kill(); // everything asked for is here
    }
  };
  // LAKEINFER_FFMPEG_THREADS: decoder threads (default: ffmpeg's choice, one per core).
  const threads = process.env['LAKEINFER_FFMPEG_THREADS'];
  const args = [...inputGuards(), '-loglevel', 'info', ...(threads ? ['-threads', threads] : []), '-ss', run.seekS.toFixed(6), '-noaccurate_seek', '-copyts', '-i', url, '-map', '0:v:0', '-an', '-sn', '-dn', '-vsync', 'passthrough', '-vf', 'showinfo', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'];
  const res = await runFfmpeg(args, {
    timeoutMs: opts.timeoutMs,
    onSpawn: (k, p, r) => {
      kill = k;
      pause = p;
      resume = r;
      opts.signal?.addEventListener('abort', () => {
        failure ??= new LakeInferError('VideoDecodeFailed', 'decoding was stopped', { retryable: true });
        k();
      });
    },
    onStdout: (c) => {
      chunks.push(c);
      buffered += c.length;
      take();
    },
    onStderrLine: (line) => {
      const m = SHOWINFO.exec(line);
      if (m) {
        infos.push({ pts: Number(m[1]), w: Number(m[2]), h: Number(m[3]) });
        take();
      }
    },
  });
  take();
  await busy;
  if (failure) throw failure;
  if (next < wanted.length) {
    if (res.timedOut) throw new LakeInferError('VideoDecodeFailed', `decoding took longer than ${Math.round(opts.timeoutMs / 1000)} s; ffmpeg was stopped`);
    const why = res.code === 0 ? 'the stream ended' : ffmpegReason(res.stderr, url);
    throw new LakeInferError('VideoDecodeFailed', `${wanted.length - next} of ${wanted.length} frames were not decoded (from timestamp ${wanted[next]}): ${why}`);
  }
  return { decoded, dropped };
}
