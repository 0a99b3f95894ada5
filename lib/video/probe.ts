/**
 * What a video holds, read once at plan time: its codec, size (as displayed: rotation applied),
 * rotation, frame rate, and every frame's presentation timestamp and whether it is a keyframe.
 * The frame list is what makes segments exact: frame i is the i-th frame in presentation order
 * (the i-th frame a sequential read gives, as cv2.VideoCapture numbers them), and a segment seeks
 * to the last keyframe at or before its first frame. It comes from demuxing the stream without
 * decoding it (ffmpeg -c copy -f framecrc): one read of the file's packets, ranged over HTTP.
 */
import { LakeInferError } from '../util/errors';
import { ffmpegReason, inputGuards, runFfmpeg } from './ffmpeg';

export interface VideoProbe {
  codec: string;
  /** Frame size as decoded frames come out (rotation applied). */
  width: number;
  height: number;
  /** Clockwise degrees the display matrix asks for (0, 90, 180, 270). */
  rotation: number;
  /** Nominal frames per second (from the stream header; timestamps decide, not this). */
  fps?: number;
  /** The stream's time base: a timestamp t is t * num / den seconds. */
  tb: { num: number; den: number };
  /** Presentation timestamps (time-base units) of every frame, in presentation order. */
  pts: number[];
  /** For each frame: the index of the keyframe a decoder must start from to reach it. */
  keyOf: number[];
}

export interface ProbeOptions {
  timeoutMs: number;
  /** Frames beyond this are refused (VideoTooLarge) rather than planned. */
  maxFrames?: number;
  /** Largest frame (width x height) accepted. */
  maxPixels?: number;
}

const PACKET = /^0,\s*(-?\d+),\s*(-?\d+),\s*(\d+),\s*(\d+),\s*0x[0-9a-f]+(?:,\s*F=0x([0-9a-f]+))?/i;
/** AV_PKT_FLAG_DISCARD: a packet the demuxer says is not shown (edit lists). */
const FLAG_DISCARD = 0x4;

export async function probeVideo(url: string, opts: ProbeOptions): Promise<VideoProbe> {
  const packets: { pts: number; key: boolean }[] = [];
  let tb: { num: number; den: number } | undefined;
  let coded: { w: number; h: number } | undefined;
  let stdout = '';
  let tooMany = false;
  const consume = (line: string): void => {
    if (line.startsWith('#')) {
      const t = /^#tb 0: (\d+)\/(\d+)/.exec(line);
      if (t) tb = { num: Number(t[1]), den: Number(t[2]) };
      const d = /^#dimensions 0: (\d+)x(\d+)/.exec(line);
      if (d) coded = { w: Number(d[1]), h: Number(d[2]) };
      return;
    }
    const m = PACKET.exec(line);
    if (!m) return;
    const flags = m[5] === undefined ? 1 : parseInt(m[5], 16); // no F=: a keyframe
    if (flags & FLAG_DISCARD) return;
    packets.push({ pts: Number(m[2]), key: (flags & 1) === 1 });
    if (opts.maxFrames !== undefined && packets.length > opts.maxFrames) tooMany = true;
  };
  let kill: (() => void) | undefined;
  const run = await runFfmpeg([...inputGuards(), '-copyts', '-i', url, '-map', '0:v:0', '-c', 'copy', '-f', 'framecrc', 'pipe:1'], {
    timeoutMs: opts.timeoutMs,
    onSpawn: (k) => (kill = k),
    onStdout: (c) => {
      stdout += c.toString('latin1');
      const lines = stdout.split('\n');
      stdout = lines.pop() ?? '';
      for (const l of lines) consume(l);
      if (tooMany) kill?.();
    },
  });
  if (stdout) consume(stdout);
  if (tooMany) throw new LakeInferError('VideoTooLarge', `the video has more than ${opts.maxFrames} frames (MAX_VIDEO_FRAMES); sample it (video.everyNthFrame, video.fps) or cut it (video.start, video.end)`);
  if (run.timedOut) throw new LakeInferError('VideoDecodeFailed', `reading the video's frame index took longer than ${Math.round(opts.timeoutMs / 1000)} s; ffmpeg was stopped`);
  const info = streamInfo(run.stderr);
  if (/matches no streams/.test(run.stderr)) throw new LakeInferError('VideoUnsupported', 'the file has no video stream');
  if (run.code !== 0 || !tb || !coded) {
    const reason = ffmpegReason(run.stderr, url);
    // "Invalid argument" on opening: no allowed demuxer takes the file (a playlist, a concat list, another format).
    const unsupported = /Invalid data found when processing input|not in allowed list|Unknown format|could not find codec|: Invalid argument\s*$/im.test(run.stderr);
    throw new LakeInferError(unsupported ? 'VideoUnsupported' : 'VideoDecodeFailed', `ffmpeg cannot read the video: ${reason}`);
  }
  if (packets.length === 0) throw new LakeInferError('VideoDecodeFailed', 'the video stream holds no frames');
  // Presentation order; each frame's keyframe: the last keyframe at or before it in decode order.
  const order = packets.map((p, i) => ({ ...p, dec: i }));
  let lastKeyDec = -1;
  const keyDec = order.map((p) => {
    if (p.key || lastKeyDec < 0) lastKeyDec = p.dec;
    return lastKeyDec;
  });
  const sorted = [...order].sort((a, b) => a.pts - b.pts || a.dec - b.dec);
  const presIndexOfDec = new Map<number, number>();
  sorted.forEach((p, i) => presIndexOfDec.set(p.dec, i));
  const pts = sorted.map((p) => p.pts);
  // A frame needs decoding from its keyframe; a segment starting at frame i seeks to the earliest
  // keyframe any of its frames needs, so the keyframe index is taken in presentation order.
  const keyOf = sorted.map((p) => presIndexOfDec.get(keyDec[p.dec]!)!);
  for (let i = 1; i < keyOf.length; i++) if (keyOf[i]! > i) keyOf[i] = keyOf[i - 1]!; // a leading picture shown before its keyframe
  const swap = info.rotation === 90 || info.rotation === 270;
  const width = swap ? coded.h : coded.w;
  const height = swap ? coded.w : coded.h;
  if (opts.maxPixels !== undefined && width * height > opts.maxPixels) throw new LakeInferError('VideoTooLarge', `frames are ${width}x${height}, more than MAX_IMAGE_PIXELS (${opts.maxPixels})`);
  return { codec: info.codec, width, height, rotation: info.rotation, ...(info.fps ? { fps: info.fps } : {}), tb, pts, keyOf };
}

/** Codec, rotation and nominal rate from ffmpeg's description of the input. */
export function streamInfo(stderr: string): { codec: string; rotation: number; fps?: number } {
  const stream = /Stream #0:\d+[^:]*: Video: ([a-z0-9_]+)[^\n]*/i.exec(stderr);
  const fps = stream ? /, ([\d.]+) fps/.exec(stream[0]) : null;
  const rotate = /^\s*rotate\s*:\s*(-?\d+)/m.exec(stderr);
  const matrix = /displaymatrix: rotation of (-?[\d.]+) degrees/.exec(stderr);
  // "rotate: 90" is clockwise; the display matrix's angle is counter-clockwise.
  const deg = rotate ? Number(rotate[1]) : matrix ? -Number(matrix[1]) : 0;
  const rotation = (((Math.round(deg / 90) * 90) % 360) + 360) % 360;
  return { codec: stream?.[1] ?? 'unknown', rotation, ...(fps ? { fps: Number(fps[1]) } : {}) };
}
