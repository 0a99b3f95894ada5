/**
 * Video decoding in the bench: a 1080p H.264 clip (60 frames at 30 fps, GOP 30, encoded here with
 * the shipped ffmpeg from its test source) decoded the way a partition decodes it (a run of frames
 * from its keyframe, RGB24), beside a JPEG decode of a frame of the same size with sharp (what an
 * image costs before preprocessing). One ffmpeg thread and all of them, so the per-frame CPU and
 * the wall time are both in the table.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { BlobServiceClient } from '@azure/storage-blob';
import type { Manifest } from '../lib/fanin/finalize';
import { startLocalHost } from '../lib/local/host/host';
import { submit, watch } from '../lib/cli/client';
import { mapLimit, readJson, writeBlob } from '../lib/storage';
import { measured } from './cpu';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import sharp from 'sharp';
import { runFfmpeg } from '../lib/video/ffmpeg';
import { serveBlob } from '../lib/video/source';
import { probeVideo } from '../lib/video/probe';
import { decodeFrames } from '../lib/video/decode';

export interface VideoBench {
  clip: string;
  frames: number;
  decodeMsPerFrameAllThreads: number;
  decodeMsPerFrameOneThread: number;
  jpegDecodeMsPerImage: number;
  probeMs: number;
}

async function timeDecode(url: string, p: Awaited<ReturnType<typeof probeVideo>>): Promise<number> {
  const t0 = performance.now();
  let n = 0;
  await decodeFrames(url, { seekS: 0, pts: p.pts, width: p.width, height: p.height }, async () => void n++, { timeoutMs: 120_000 });
  return (performance.now() - t0) / n;
}

export async function videoBench(log: (m: string) => void): Promise<VideoBench> {
  const dir = await mkdtemp(join(tmpdir(), 'lakeinfer-bench-video-'));
  try {
    const file = join(dir, 'clip.mp4');
    const enc = await runFfmpeg(['-nostdin', '-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=1920x1080:rate=30', '-t', '2', '-c:v', 'libx264', '-preset', 'veryfast', '-g', '30', '-pix_fmt', 'yuv420p', '-y', file], { timeoutMs: 300_000 });
    if (enc.code !== 0) throw new Error(`encoding the bench clip failed: ${enc.stderr.slice(-300)}`);
    const data = await readFile(file);
    const src = await serveBlob(data.length, async (o, c) => Readable.from([data.subarray(o, c === undefined ? undefined : o + c)]));
    try {
      const t0 = performance.now();
      const p = await probeVideo(src.url, { timeoutMs: 60_000 });
      const probeMs = performance.now() - t0;
      await timeDecode(src.url, p); // warm the page cache and the binary
      const all = await timeDecode(src.url, p);
      process.env['LAKEINFER_FFMPEG_THREADS'] = '1';
      let one: number;
      try {
        one = await timeDecode(src.url, p);
      } finally {
        delete process.env['LAKEINFER_FFMPEG_THREADS'];
      }
      // A JPEG of a frame of the same size, decoded to RGB by sharp (as an image is before preprocessing).
      let frame: Buffer | undefined;
      await decodeFrames(src.url, { seekS: 0, pts: p.pts.slice(0, 1), width: p.width, height: p.height }, async (f) => void (frame = f.data), { timeoutMs: 60_000 });
      const jpeg = await sharp(frame!, { raw: { width: p.width, height: p.height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
      const j0 = performance.now();
      for (let i = 0; i < 20; i++) await sharp(jpeg).removeAlpha().raw().toBuffer();
      const jpegMs = (performance.now() - j0) / 20;
      const r = { clip: `1920x1080 H.264, ${p.pts.length} frames`, frames: p.pts.length, decodeMsPerFrameAllThreads: Math.round(all * 100) / 100, decodeMsPerFrameOneThread: Math.round(one * 100) / 100, jpegDecodeMsPerImage: Math.round(jpegMs * 100) / 100, probeMs: Math.round(probeMs) };
      log(`video: ${r.clip}: ${r.decodeMsPerFrameOneThread} ms/frame on one ffmpeg thread, ${r.decodeMsPerFrameAllThreads} with all; JPEG of the same size ${r.jpegDecodeMsPerImage} ms`);
      return r;
    } finally {
      await src.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface VideoPipelineBench {
  clip: string;
  frames: number;
  /** The same frames as JPEG images (ffmpeg -q:v 2), one job each way, default settings, warm. */
  jpegImagesPerSec: number;
  videoFramesPerSec: number;
  framesOverImages: number;
  jpegForeignCores: number;
  videoForeignCores: number;
}

/**
 * Frames/s of a video job against images/s of a job over the same frames as JPEGs, through the
 * local host with default settings and the text detector (already in `models`): what a video in
 * the lake costs per frame beside a folder of its frames. Each job is run once cold (discarded) and
 * then timed warm, the two kinds interleaved.
 */
export async function videoPipelineBench(cs: string, model: string, log: (m: string) => void): Promise<VideoPipelineBench> {
  const dir = await mkdtemp(join(tmpdir(), 'lakeinfer-bench-videojob-'));
  const service = BlobServiceClient.fromConnectionString(cs);
  const input = service.getContainerClient('bench-video');
  await input.createIfNotExists();
  await service.getContainerClient('bench-out').createIfNotExists();
  try {
    const file = join(dir, 'clip.mp4');
    const frames = 48;
    const enc = await runFfmpeg(['-nostdin', '-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=960x544:rate=30', '-frames:v', String(frames), '-c:v', 'libx264', '-preset', 'veryfast', '-g', '30', '-pix_fmt', 'yuv420p', '-y', file], { timeoutMs: 300_000 });
    if (enc.code !== 0) throw new Error(`encoding the bench clip failed: ${enc.stderr.slice(-300)}`);
    const ext = await runFfmpeg(['-nostdin', '-hide_banner', '-loglevel', 'error', '-i', file, '-q:v', '2', join(dir, 'frame-%03d.jpg')], { timeoutMs: 300_000 });
    if (ext.code !== 0) throw new Error(`extracting the bench frames failed: ${ext.stderr.slice(-300)}`);
    const jpegs = (await readdir(dir)).filter((n) => n.endsWith('.jpg')).sort();
    await writeBlob(input, 'video/clip.mp4', await readFile(file));
    await mapLimit(jpegs, 8, async (n) => writeBlob(input, `jpeg/${n}`, await readFile(join(dir, n))));
    const host = await startLocalHost({ storageConnectionString: cs, settings: { MODELS_CONTAINER: 'models' }, log: () => undefined, activityOutput: () => undefined });
    try {
      let k = 0;
      const job = async (kind: 'jpeg' | 'video'): Promise<number> => {
        const id = `bench-video-${kind}-${k++}`;
        await submit({ url: host.url }, { jobId: id, input: { container: 'bench-video', prefix: `${kind}/`, extensions: kind === 'jpeg' ? ['.jpg'] : ['.mp4'] }, output: { container: 'bench-out', prefix: 'video-runs/' }, model: { name: model } });
        const done = await watch({ url: host.url }, id, () => undefined);
        if (done.runtimeStatus !== 'Completed') throw new Error(`bench job ${id} ended ${done.runtimeStatus}: ${JSON.stringify(done.output)}`);
        const m = await readJson<Manifest>(service.getContainerClient('bench-out'), `video-runs/${id}/_manifest.json`);
        if (m?.counts.succeeded !== frames) throw new Error(`bench job ${id}: ${JSON.stringify(m?.counts)}, expected ${frames} results`);
        return frames;
      };
      await job('jpeg');
      await job('video');
      const j = await measured(() => job('jpeg'));
      const v = await measured(() => job('video'));
      const r: VideoPipelineBench = {
        clip: `960x544 H.264, ${frames} frames (testsrc2)`,
        frames,
        jpegImagesPerSec: Math.round((frames / j.wallS) * 100) / 100,
        videoFramesPerSec: Math.round((frames / v.wallS) * 100) / 100,
        framesOverImages: Math.round((j.wallS / v.wallS) * 100) / 100,
        jpegForeignCores: j.foreignCores,
        videoForeignCores: v.foreignCores,
      };
      log(`video job: ${r.videoFramesPerSec} frames/s vs ${r.jpegImagesPerSec} images/s on the same frames as JPEGs (${r.framesOverImages}x)`);
      return r;
    } finally {
      await host.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
