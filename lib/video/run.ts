/**
 * A partition's run of consecutive frames of one video, decoded once, in order, on demand: the
 * first frame asked for starts ffmpeg at the run's keyframe; each frame is handed to whoever asks
 * for it (the partition's image workers take items in order), and the decoder waits while the
 * frames it holds are not yet asked for, so at most a few frames are in memory. A decode that
 * fails fails every frame of the run not yet handed over, with its code. `close` stops ffmpeg.
 */
import type { FrameRef } from '../storage/listing';
import { decodeFrames, type DecodedFrame } from './decode';
import { serveBlob, type BlobUrl, type RangeRead } from './source';

interface Waiter {
  resolve: (f: DecodedFrame) => void;
  reject: (e: unknown) => void;
}

export class FrameRun {
  private readonly byPts = new Map<number, number>();
  private readonly frames = new Map<number, DecodedFrame>();
  private readonly waiters = new Map<number, Waiter>();
  private readonly claimed = new Set<number>();
  private started = false;
  private failure: unknown;
  private done = false;
  private src: BlobUrl | undefined;
  private wake: (() => void) | undefined;
  private closed = false;
  private readonly abort = new AbortController();
  /** Frames decoded (the ones kept and the ones before them from the keyframe on). */
  stats = { decoded: 0, dropped: 0, decodeMs: 0 };

  constructor(
    private readonly size: number,
    private readonly read: RangeRead,
    private readonly refs: readonly FrameRef[],
    private readonly timeoutMs: number,
  ) {
    refs.forEach((r, k) => this.byPts.set(r.pts, k));
  }

  /** The k-th frame of the run (frames are asked for in order, a few at a time). */
  frame(k: number): Promise<DecodedFrame> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const have = this.frames.get(k);
    if (have) {
      this.frames.delete(k);
      this.claimed.add(k);
      this.wake?.();
      return Promise.resolve(have);
    }
    const p = new Promise<DecodedFrame>((resolve, reject) => this.waiters.set(k, { resolve, reject }));
    if (!this.started) this.start();
    return p;
  }

  private start(): void {
    this.started = true;
    const t0 = performance.now();
    const seekS = Math.min(...this.refs.map((r) => r.seekS));
    void (async () => {
      this.src = await serveBlob(this.size, this.read);
      const r0 = this.refs[0]!;
      const res = await decodeFrames(
        this.src.url,
        { seekS, pts: this.refs.map((r) => r.pts), width: r0.width, height: r0.height },
        async (f) => {
          const k = this.byPts.get(f.pts)!;
          const w = this.waiters.get(k);
          if (w) {
            this.waiters.delete(k);
            this.claimed.add(k);
            w.resolve(f);
          } else this.frames.set(k, f);
          // Hold the decoder while more than a few frames wait to be asked for.
          while (!this.closed && this.frames.size > 4) await new Promise<void>((r) => (this.wake = r));
        },
        { timeoutMs: this.timeoutMs, signal: this.abort.signal },
      );
      this.stats = { decoded: res.decoded, dropped: res.dropped, decodeMs: performance.now() - t0 };
    })()
      .catch((err: unknown) => {
        this.failure = err;
        for (const w of this.waiters.values()) w.reject(err);
        this.waiters.clear();
      })
      .finally(() => {
        this.done = true;
        void this.src?.close();
      });
  }

  /** Stops decoding (a piece that ends early): frames not asked for are dropped. */
  close(): void {
    this.closed = true;
    this.abort.abort();
    this.wake?.();
    if (!this.done && this.started && this.failure === undefined) this.failure = new Error('run closed');
  }
}
