/**
 * Encodes RGB frames to an H.264 MP4 with the shipped ffmpeg (the demo's clip; test videos).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireFfmpeg } from './ffmpeg';

export async function encodeMp4(frames: readonly Uint8Array[], width: number, height: number, fps: number, opts: { gop?: number } = {}): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'lakeinfer-encode-'));
  const file = join(dir, 'out.mp4');
  try {
    await new Promise<void>((resolve, reject) => {
      const args = ['-nostdin', '-hide_banner', '-loglevel', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-r', String(fps), '-i', 'pipe:0', '-c:v', 'libx264', '-preset', 'veryfast', '-g', String(opts.gop ?? fps), '-pix_fmt', 'yuv420p', '-movflags', '+faststart', '-y', file];
      const child = spawn(requireFfmpeg(), args, { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.once('error', reject);
      child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg could not encode the clip (exit ${code}): ${err.trim().slice(-300)}`))));
      child.stdin.on('error', () => undefined);
      for (const f of frames) child.stdin.write(f);
      child.stdin.end();
    });
    return await readFile(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
