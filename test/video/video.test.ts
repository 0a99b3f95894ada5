/**
 * Videos decoded exactly: each fixture's frames (test/fixtures/video, encoded with the shipped
 * ffmpeg) equal, pixel for pixel and in number, what cv2.VideoCapture gives for the same file
 * (reference.json, made by make_reference.py with opencv-python); any split into runs decoded from
 * their keyframes gives the same frames as one sequential read, none twice, none missing; bad
 * files fail with a code, never hang, never make ffmpeg open anything but the blob.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { serveBlob, type BlobUrl } from '../../lib/video/source';
import { probeVideo, type VideoProbe } from '../../lib/video/probe';
import { decodeFrames } from '../../lib/video/decode';
import { ffmpegPath, runFfmpeg } from '../../lib/video/ffmpeg';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { frameTimes, selectFrames, videoRuns } from '../../lib/video/frames';
import { LakeInferError } from '../../lib/util/errors';

const DIR = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'video');
const reference = JSON.parse(readFileSync(join(DIR, 'reference.json'), 'utf8')) as { opencv: string; videos: Record<string, { ms: number; w: number; h: number; md5: string }[]> };
const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

async function serve(data: Buffer): Promise<BlobUrl> {
  return serveBlob(data.length, async (o, c) => Readable.from([data.subarray(o, c === undefined ? undefined : o + c)]));
}

async function decodeAll(url: string, p: VideoProbe, indices: number[]): Promise<string[]> {
  const out: string[] = [];
  for (const run of videoRuns(p, indices, indices.length)) {
    await decodeFrames(url, { seekS: run.seekS, pts: run.pts, width: p.width, height: p.height }, async (f) => void out.push(md5(f.data)), { timeoutMs: 60_000 });
  }
  return out;
}

const code = (c: string, re?: RegExp) => (e: unknown) => e instanceof LakeInferError && e.code === c && (re === undefined || re.test(e.message));

test('the shipped ffmpeg is there and runnable (its package carries the binary with its exec bit)', () => {
  assert.ok(ffmpegPath(), 'ffmpeg from @ffmpeg-installer/linux-x64');
});

describe(`frames equal cv2.VideoCapture's (OpenCV ${reference.opencv}) on the same file`, () => {
  for (const [name, ref] of Object.entries(reference.videos)) {
    test(`${name}: ${ref.length} frames of ${ref[0]!.w}x${ref[0]!.h}, pixel-exact, at the reference's times; any runs from keyframes give the sequential frames`, async () => {
      const src = await serve(readFileSync(join(DIR, name)));
      try {
        const p = await probeVideo(src.url, { timeoutMs: 30_000 });
        assert.equal(p.pts.length, ref.length, 'frame count');
        assert.deepEqual([p.width, p.height], [ref[0]!.w, ref[0]!.h], 'frame size (rotation applied)');
        const all = Array.from({ length: p.pts.length }, (_, i) => i);
        const seq = await decodeAll(src.url, p, all);
        assert.deepEqual(seq, ref.map((f) => f.md5), 'every frame equals the reference frame');
        const times = frameTimes(p);
        times.forEach((t, i) => assert.ok(Math.abs(t * 1000 - ref[i]!.ms) < 1, `frame ${i}: ${t * 1000} ms vs ${ref[i]!.ms} ms`));
        for (const size of [1, 5, 7, 13]) {
          const got: string[] = [];
          for (let a = 0; a < all.length; a += size) got.push(...(await decodeAll(src.url, p, all.slice(a, a + size))));
          assert.deepEqual(got, seq, `runs of ${size} frames`);
        }
      } finally {
        await src.close();
      }
    });
  }
});

describe('sampling', () => {
  test('everyNthFrame, fps, start/end and maxFrames pick frames by index and timestamp', async () => {
    const src = await serve(readFileSync(join(DIR, 'h264-gop12.mp4')));
    try {
      const p = await probeVideo(src.url, { timeoutMs: 30_000 });
      assert.deepEqual(selectFrames(p, {}), Array.from({ length: 60 }, (_, i) => i));
      assert.deepEqual(selectFrames(p, { everyNthFrame: 7 }), [0, 7, 14, 21, 28, 35, 42, 49, 56]);
      assert.deepEqual(selectFrames(p, { fps: 5 }), [0, 6, 12, 18, 24, 30, 36, 42, 48, 54]);
      assert.deepEqual(selectFrames(p, { start: 1, end: 1.2 }), [30, 31, 32, 33, 34, 35]);
      assert.deepEqual(selectFrames(p, { everyNthFrame: 2, maxFrames: 3, start: 0.5 }), [15, 17, 19]);
      const ref = reference.videos['h264-gop12.mp4']!;
      const picked = selectFrames(p, { everyNthFrame: 7 });
      assert.deepEqual(await decodeAll(src.url, p, picked), picked.map((i) => ref[i]!.md5), 'sampled frames are the reference frames at those indices');
      // VFR: fps sampling follows timestamps (the gap after frame 10 holds no frames to take).
      const v = await serve(readFileSync(join(DIR, 'vfr.mkv')));
      try {
        const pv = await probeVideo(v.url, { timeoutMs: 30_000 });
        assert.deepEqual(selectFrames(pv, { fps: 10 }), [0, 3, 6, 9, 11, 12]);
      } finally {
        await v.close();
      }
    } finally {
      await src.close();
    }
  });
});

describe('bad videos fail with a code, never hang, never reach past the blob', () => {
  const probe = async (data: Buffer, opts: { timeoutMs?: number; maxFrames?: number; maxPixels?: number } = {}) => {
    const src = await serve(data);
    try {
      return await probeVideo(src.url, { timeoutMs: 30_000, ...opts });
    } finally {
      await src.close();
    }
  };
  const good = readFileSync(join(DIR, 'h264-gop12.mp4'));

  test('zero bytes, garbage, a truncated file (its moov atom at the end is cut off): VideoUnsupported / VideoDecodeFailed', async () => {
    await assert.rejects(probe(Buffer.alloc(0)), (e: unknown) => e instanceof LakeInferError && ['VideoUnsupported', 'VideoDecodeFailed'].includes(e.code));
    await assert.rejects(probe(Buffer.from('not a video at all '.repeat(100))), code('VideoUnsupported'));
    await assert.rejects(probe(good.subarray(0, Math.floor(good.length / 2))), (e: unknown) => e instanceof LakeInferError && ['VideoUnsupported', 'VideoDecodeFailed'].includes(e.code) && !/127\.0\.0\.1/.test(e.message));
  });

  test('a file with no video stream (audio only) is VideoUnsupported; a 10-bit (yuv420p10le) H.264 video still gives its frames', async () => {
    const make = async (args: string[]): Promise<Buffer> => {
      const dir = await mkdtemp(join(tmpdir(), 'lakeinfer-vid-'));
      try {
        const file = join(dir, 'x.mp4');
        const r = await runFfmpeg(['-nostdin', '-hide_banner', '-loglevel', 'error', ...args, '-y', file], { timeoutMs: 60_000 });
        assert.equal(r.code, 0, r.stderr);
        return readFileSync(file);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    };
    await assert.rejects(probe(await make(['-f', 'lavfi', '-i', 'sine=frequency=440:duration=1', '-c:a', 'aac'])), code('VideoUnsupported', /no video stream/));
    const tenBit = await make(['-f', 'lavfi', '-i', 'testsrc2=size=64x48:rate=10', '-t', '1', '-c:v', 'libx264', '-pix_fmt', 'yuv420p10le']);
    const src = await serve(tenBit);
    try {
      const p = await probeVideo(src.url, { timeoutMs: 30_000 });
      assert.equal(p.pts.length, 10);
      const all = Array.from({ length: 10 }, (_, i) => i);
      const seq = await decodeAll(src.url, p, all);
      assert.equal(seq.length, 10);
      assert.deepEqual([...(await decodeAll(src.url, p, all.slice(0, 4))), ...(await decodeAll(src.url, p, all.slice(4)))], seq, 'runs equal the sequential read');
    } finally {
      await src.close();
    }
  });

  test('a concat list or HLS playlist named .mp4 is refused without opening what it names (demuxers and protocols limited)', async () => {
    await assert.rejects(probe(Buffer.from('ffconcat version 1.0\nfile /etc/passwd\n')), code('VideoUnsupported'));
    await assert.rejects(probe(Buffer.from('#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n')), code('VideoUnsupported'));
  });

  test('limits: more frames than allowed, frames larger than allowed: VideoTooLarge; a time limit stops ffmpeg', async () => {
    await assert.rejects(probe(good, { maxFrames: 10 }), code('VideoTooLarge', /more than 10 frames/));
    await assert.rejects(probe(good, { maxPixels: 1000 }), code('VideoTooLarge', /64x48/));
    const t0 = Date.now();
    const src = await serve(good);
    try {
      const p = await probeVideo(src.url, { timeoutMs: 30_000 });
      await assert.rejects(
        decodeFrames(src.url, { seekS: 0, pts: p.pts, width: p.width, height: p.height }, () => new Promise((r) => setTimeout(r, 50)), { timeoutMs: 300 }),
        code('VideoDecodeFailed', /longer than|not decoded/),
      );
    } finally {
      await src.close();
    }
    assert.ok(Date.now() - t0 < 20_000);
  });
});
