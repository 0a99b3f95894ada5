import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';

/** An RGB canvas painted pixel by pixel (no anti-aliasing: tests know every pixel). */
export class Canvas {
  readonly data: Buffer;
  constructor(
    readonly width: number,
    readonly height: number,
    bg: [number, number, number] = [0, 0, 0],
  ) {
    this.data = Buffer.alloc(width * height * 3);
    this.rect(0, 0, width, height, bg);
  }
  set(x: number, y: number, c: readonly number[]): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const i = (y * this.width + x) * 3;
    this.data[i] = c[0]!;
    this.data[i + 1] = c[1]!;
    this.data[i + 2] = c[2]!;
  }
  /** Pixels x in [x0, x1), y in [y0, y1). */
  rect(x0: number, y0: number, x1: number, y1: number, c: readonly number[]): void {
    for (let y = Math.max(0, Math.floor(y0)); y < Math.min(this.height, Math.ceil(y1)); y++) for (let x = Math.max(0, Math.floor(x0)); x < Math.min(this.width, Math.ceil(x1)); x++) this.set(x, y, c);
  }
  /** Pixels whose centre lies within r of (cx, cy). */
  disc(cx: number, cy: number, r: number, c: readonly number[]): void {
    for (let y = Math.floor(cy - r); y <= Math.ceil(cy + r); y++) for (let x = Math.floor(cx - r); x <= Math.ceil(cx + r); x++) if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= r * r) this.set(x, y, c);
  }
  sharp(): sharp.Sharp {
    return sharp(this.data, { raw: { width: this.width, height: this.height, channels: 3 } });
  }
  png(): Promise<Buffer> {
    return this.sharp().png().toBuffer();
  }
}

export async function tempFile(name: string, data: Uint8Array): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lakeinfer-test-'));
  const path = join(dir, name);
  await writeFile(path, data);
  return path;
}

/** IoU of two row-major 0/1 masks of the same size. */
export function maskIou(a: Uint8Array, b: Uint8Array): number {
  let inter = 0;
  let union = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] && b[i]) inter++;
    if (a[i] || b[i]) union++;
  }
  return union === 0 ? 1 : inter / union;
}

export function boxIou(a: readonly number[], b: readonly number[]): number {
  const ix = Math.min(a[0]! + a[2]!, b[0]! + b[2]!) - Math.max(a[0]!, b[0]!);
  const iy = Math.min(a[1]! + a[3]!, b[1]! + b[3]!) - Math.max(a[1]!, b[1]!);
  if (ix <= 0 || iy <= 0) return 0;
  const inter = ix * iy;
  return inter / (a[2]! * a[3]! + b[2]! * b[3]! - inter);
}
