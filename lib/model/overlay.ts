/**
 * Overlay PNG: the image with each instance's mask tinted, its box outlined and labelled.
 * Drawn at most maxSide pixels on the long side, so overlays of huge images stay small.
 */
import sharp from 'sharp';
import { decodeRgb, DEFAULT_LIMITS, type DecodeLimits, type RgbImage } from './preprocess';
import type { Detection } from './postprocess';
import { stringToCounts } from './rle';

const PALETTE: [number, number, number][] = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230],
  [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195],
];

export function colourOf(categoryId: number): [number, number, number] {
  return PALETTE[((categoryId % PALETTE.length) + PALETTE.length) % PALETTE.length]!;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

export interface OverlayOptions {
  maxSide?: number;
  /** Mask opacity, 0..1. */
  alpha?: number;
  limits?: DecodeLimits;
}

/** `image`: the encoded image, or its decoded pixels when the caller has them (no second decode). */
export async function renderOverlay(image: Buffer | RgbImage, detections: readonly Detection[], opts: OverlayOptions = {}): Promise<{ png: Buffer; width: number; height: number }> {
  const o = await drawOverlay(image, detections, opts);
  return { png: await o.png({ compressionLevel: 6 }).toBuffer(), width: o.width, height: o.height };
}

/** The overlay as a PNG and as 8-bit RGB pixels (a video frame's overlay and its annotated video's frame), drawn once. */
export async function renderOverlayPngAndRgb(image: Buffer | RgbImage, detections: readonly Detection[], opts: OverlayOptions = {}): Promise<{ png: Buffer; rgb: RgbImage }> {
  const o = await drawOverlay(image, detections, opts);
  const [png, raw] = await Promise.all([o.clone().png({ compressionLevel: 6 }).toBuffer(), o.clone().removeAlpha().raw().toBuffer({ resolveWithObject: true })]);
  return { png, rgb: { data: new Uint8Array(raw.data.buffer, raw.data.byteOffset, raw.data.length), width: raw.info.width, height: raw.info.height } };
}

/** The overlay as 8-bit RGB pixels (an annotated video's frame). */
export async function renderOverlayRgb(image: Buffer | RgbImage, detections: readonly Detection[], opts: OverlayOptions = {}): Promise<RgbImage> {
  const o = await drawOverlay(image, detections, opts);
  const { data, info } = await o.removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

async function drawOverlay(image: Buffer | RgbImage, detections: readonly Detection[], opts: OverlayOptions): Promise<sharp.Sharp & { width: number; height: number }> {
  const { data, width, height } = Buffer.isBuffer(image) ? await decodeRgb(image, opts.limits ?? DEFAULT_LIMITS) : image;
  const f = Math.min(1, (opts.maxSide ?? 1280) / Math.max(width, height));
  const sw = Math.max(1, Math.round(width * f));
  const sh = Math.max(1, Math.round(height * f));
  const alpha = Math.round(255 * (opts.alpha ?? 0.45));
  const layer = Buffer.alloc(sw * sh * 4);
  // Paint the lowest scores first so the best detection ends on top.
  const order = [...detections].sort((a, b) => a.score - b.score);
  for (const d of order) {
    if (!d.segmentation) continue;
    const [h] = d.segmentation.size;
    const [r, g, b] = colourOf(d.category_id);
    const counts = stringToCounts(d.segmentation.counts);
    let k = 0;
    counts.forEach((n, i) => {
      if (i % 2 === 1) {
        for (let p = k; p < k + n; p++) {
          const x = Math.floor(p / h);
          const y = p - x * h;
          const o = (Math.min(sh - 1, Math.floor(y * f)) * sw + Math.min(sw - 1, Math.floor(x * f))) * 4;
          layer[o] = r;
          layer[o + 1] = g;
          layer[o + 2] = b;
          layer[o + 3] = alpha;
        }
      }
      k += n;
    });
  }
  const stroke = Math.max(2, Math.round(Math.max(sw, sh) / 400));
  const font = Math.max(11, Math.round(Math.max(sw, sh) / 60));
  const boxes = order
    .map((d) => {
      const [r, g, b] = colourOf(d.category_id);
      const [x, y, w, h] = d.bbox.map((v) => v * f) as [number, number, number, number];
      const label = `${escapeXml(d.label)} ${(d.score * 100).toFixed(0)}%`;
      const ty = y > font + 4 ? y - 4 : y + font + 2;
      const outline = d.polygon
        ? `<polygon points="${d.polygon.map(([px, py]) => `${(px * f).toFixed(1)},${(py * f).toFixed(1)}`).join(' ')}" fill="none" stroke="rgb(${r},${g},${b})" stroke-width="${stroke}"/>`
        : `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${w.toFixed(1)}" height="${h.toFixed(1)}" fill="none" stroke="rgb(${r},${g},${b})" stroke-width="${stroke}"/>`;
      return (
        outline +
        `<text x="${(x + 2).toFixed(1)}" y="${ty.toFixed(1)}" font-family="DejaVu Sans" font-size="${font}" fill="rgb(${r},${g},${b})" stroke="black" stroke-width="0.6">${label}</text>`
      );
    })
    .join('');
  const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${sw}" height="${sh}">${boxes}</svg>`);
  const base = sharp(data, { raw: { width, height, channels: 3 } });
  const resized = f < 1 ? await base.resize(sw, sh, { fit: 'fill' }).raw().toBuffer() : data;
  // Composited in a pipeline of its own, so that the caller's output format applies to the result.
  const composed = await sharp(resized, { raw: { width: sw, height: sh, channels: 3 } })
    .composite([
      { input: layer, raw: { width: sw, height: sh, channels: 4 } },
      { input: svg, top: 0, left: 0 },
    ])
    .raw()
    .toBuffer({ resolveWithObject: true });
  return Object.assign(sharp(composed.data, { raw: { width: composed.info.width, height: composed.info.height, channels: composed.info.channels as 3 | 4 } }), { width: sw, height: sh });
}
