/**
 * The ffmpeg this project ships and how it is run. The binary comes from the registry package
 * `@ffmpeg-installer/linux-x64` (a static build carried inside the package, exec bit included, so
 * staging with --ignore-scripts keeps it runnable); FFMPEG_PATH names another one (a laptop on
 * another OS, a newer build). ffmpeg is only ever given one blob's bytes over a loopback URL
 * (source.ts): the protocols are limited to what reading that URL needs and the demuxers to the
 * container formats below, so nothing inside a file (an HLS playlist, a concat list) makes it open
 * anything else.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LakeInferError } from '../util/errors';

/** Video file types a job may list (matched case-insensitively, as image extensions are). */
export const VIDEO_EXTENSIONS = ['.mp4', '.mov', '.m4v', '.mkv', '.webm', '.avi'] as const;

/** The demuxers ffmpeg may use: the container formats of VIDEO_EXTENSIONS, nothing that opens other files. */
export const DEMUXERS = 'mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi';

export function isVideoName(name: string): boolean {
  const lower = name.toLowerCase();
  return VIDEO_EXTENSIONS.some((e) => lower.endsWith(e));
}

let cached: string | null | undefined;

/** The ffmpeg binary: FFMPEG_PATH, else the shipped package's; undefined when there is none. */
export function ffmpegPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = env['FFMPEG_PATH'];
  if (fromEnv) return fromEnv;
  if (cached !== undefined) return cached ?? undefined;
  cached = null;
  try {
    const dir = dirname(require.resolve('@ffmpeg-installer/linux-x64/package.json'));
    const bin = join(dir, 'ffmpeg');
    if (existsSync(bin)) {
      accessSync(bin, constants.X_OK);
      cached = bin;
    }
  } catch {
    // not installed (another platform): FFMPEG_PATH is the way
  }
  return cached ?? undefined;
}

export function requireFfmpeg(): string {
  const bin = ffmpegPath();
  if (!bin) throw new LakeInferError('VideoUnsupported', 'no ffmpeg: the package @ffmpeg-installer/linux-x64 is not installed (Linux x64 only); set FFMPEG_PATH to an ffmpeg binary to read videos here', { target: 'FFMPEG_PATH' });
  return bin;
}

/** Arguments every run starts with: no stdin, no banner, loopback HTTP only, known demuxers only. */
export function inputGuards(): string[] {
  return ['-nostdin', '-hide_banner', '-protocol_whitelist', 'http,tcp', '-format_whitelist', DEMUXERS];
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  timedOut: boolean;
}

/**
 * Runs ffmpeg with a time limit (killed with SIGKILL when it passes: never a hung decoder);
 * stdout goes to `onStdout`, stderr is kept (its last 64 kB) and fed to `onStderrLine`.
 */
export function runFfmpeg(args: string[], opts: { timeoutMs: number; onStdout?: (chunk: Buffer) => void; onStderrLine?: (line: string) => void; onSpawn?: (kill: () => void, pause: () => void, resume: () => void) => void }): Promise<RunResult> {
  const bin = requireFfmpeg();
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let partial = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.stdout.on('data', (c: Buffer) => opts.onStdout?.(c));
    child.stderr.on('data', (c: Buffer) => {
      const text = c.toString('utf8');
      stderr = (stderr + text).slice(-65536);
      if (!opts.onStderrLine) return;
      partial += text;
      const lines = partial.split(/\r?\n|\r/);
      partial = lines.pop() ?? '';
      for (const l of lines) opts.onStderrLine(l);
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new LakeInferError('VideoUnsupported', `ffmpeg could not be started (${bin}): ${err.message}`, { target: 'FFMPEG_PATH' }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (partial && opts.onStderrLine) opts.onStderrLine(partial);
      resolve({ code, signal, stderr, timedOut });
    });
    opts.onSpawn?.(
      () => child.kill('SIGKILL'),
      () => child.stdout.pause(),
      () => child.stdout.resume(),
    );
  });
}

/** The last meaningful line ffmpeg printed (its reason), without our loopback URL. */
export function ffmpegReason(stderr: string, url?: string): string {
  const lines = stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !/^\[Parsed_showinfo/.test(l) && !/^(frame=|Input #|Output #|Stream mapping|Press \[q\]|  )/.test(l));
  let last = lines[lines.length - 1] ?? 'ffmpeg failed';
  if (url) last = last.split(url).join('<blob>');
  return last.slice(0, 300);
}
