/**
 * Overlay PNG: the image with each instance's mask tinted, its box (or polygon) outlined and
 * labelled, drawn in JavaScript on the pixels (lib/model/raster.ts).
 * Drawn at most maxSide pixels on the long side, so overlays of huge images stay small.
 */
import sharp from 'sharp';
import { decodeRgb, DEFAULT_LIMITS, type DecodeLimits, type RgbImage } from './preprocess';
import type { Detection } from './postprocess';
import { drawable, glyphAtlas, label, outline, tint, type Canvas } from './raster';
import { stringToCounts } from './rle';

const PALETTE: [number, number, number][] = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230],
  [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195],
];

function paletteIndex(categoryId: number): number {
  return ((categoryId % PALETTE.length) + PALETTE.length) % PALETTE.length;
}

export function colourOf(categoryId: number): [number, number, number] {
  return PALETTE[paletteIndex(categoryId)]!;
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
  return { png: await pngOf(o), width: o.width, height: o.height };
}

/** The overlay as a PNG and as 8-bit RGB pixels (a video frame's overlay and its annotated video's frame), drawn once. */
export async function renderOverlayPngAndRgb(image: Buffer | RgbImage, detections: readonly Detection[], opts: OverlayOptions = {}): Promise<{ png: Buffer; rgb: RgbImage }> {
  const o = await drawOverlay(image, detections, opts);
  return { png: await pngOf(o), rgb: o };
}

/** The overlay as 8-bit RGB pixels (an annotated video's frame). */
export async function renderOverlayRgb(image: Buffer | RgbImage, detections: readonly Detection[], opts: OverlayOptions = {}): Promise<RgbImage> {
  return drawOverlay(image, detections, opts);
}

function pngOf(c: Canvas): Promise<Buffer> {
  return sharp(c.data, { raw: { width: c.width, height: c.height, channels: 3 } })
    .png({ compressionLevel: 6 })
    .toBuffer();
}

const labelOf = (d: Detection): string => `${d.label} ${(d.score * 100).toFixed(0)}%`;

/** Where a detection's label starts (its baseline's left end) on an overlay scaled by f: above its box, or inside when the box touches the top. */
function labelAt(d: Detection, f: number, font: number): [number, number] {
  const [x, y] = [d.bbox[0] * f, d.bbox[1] * f];
  return [x + 2, y > font + 4 ? y - 4 : y + font + 2];
}

/**
 * The image (scaled to maxSide) with masks tinted, outlines and labels drawn, in JavaScript
 * (lib/model/raster.ts); labels outside printable ASCII are drawn by librsvg from an SVG instead.
 */
async function drawOverlay(image: Buffer | RgbImage, detections: readonly Detection[], opts: OverlayOptions): Promise<Canvas> {
  const { data, width, height } = Buffer.isBuffer(image) ? await decodeRgb(image, opts.limits ?? DEFAULT_LIMITS) : image;
  const f = Math.min(1, (opts.maxSide ?? 1280) / Math.max(width, height));
  const sw = Math.max(1, Math.round(width * f));
  const sh = Math.max(1, Math.round(height * f));
  const alpha = Math.round(255 * (opts.alpha ?? 0.45));
  // Drawn on a copy of the caller's pixels, or on sharp's fresh scaled-down buffer.
  const pixels = f < 1 ? await sharp(data, { raw: { width, height, channels: 3 } }).resize(sw, sh, { fit: 'fill' }).raw().toBuffer() : undefined;
  const canvas: Canvas = { data: pixels ? new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.length) : new Uint8Array(data), width: sw, height: sh };
  // Paint the lowest scores first so the best detection ends on top.
  const order = [...detections].sort((a, b) => a.score - b.score);
  // Each pixel takes the colour of the last mask painted over it (1 + its palette index), blended once.
  const cover = new Uint8Array(sw * sh);
  let masked = false;
  for (const d of order) {
    if (!d.segmentation) continue;
    masked = true;
    const [h] = d.segmentation.size;
    const k = 1 + paletteIndex(d.category_id);
    const counts = stringToCounts(d.segmentation.counts);
    let at = 0;
    counts.forEach((n, i) => {
      if (i % 2 === 1) {
        for (let p = at; p < at + n; p++) {
          const x = Math.floor(p / h);
          const y = p - x * h;
          cover[Math.min(sh - 1, Math.floor(y * f)) * sw + Math.min(sw - 1, Math.floor(x * f))] = k;
        }
      }
      at += n;
    });
  }
  if (masked) tint(canvas, cover, PALETTE, alpha);
  const stroke = Math.max(2, Math.round(Math.max(sw, sh) / 400));
  const font = Math.max(11, Math.round(Math.max(sw, sh) / 60));
  for (const d of order) {
    const [x, y, w, h] = d.bbox.map((v) => v * f) as [number, number, number, number];
    const points: [number, number][] = d.polygon ? d.polygon.map(([px, py]) => [px * f, py * f]) : [[x, y], [x + w, y], [x + w, y + h], [x, y + h]];
    outline(canvas, points, stroke, colourOf(d.category_id));
  }
  if (order.every((d) => drawable(labelOf(d)))) {
    const atlas = await glyphAtlas(font);
    for (const d of order) {
      const [x, y] = labelAt(d, f, font);
      label(canvas, atlas, labelOf(d), x, y, colourOf(d.category_id));
    }
    return canvas;
  }
  return svgLabels(canvas, order, f, font);
}

/** Labels drawn by librsvg (any script fontconfig has a font for) over the canvas. */
async function svgLabels(canvas: Canvas, order: readonly Detection[], f: number, font: number): Promise<Canvas> {
  const texts = order
    .map((d) => {
      const [r, g, b] = colourOf(d.category_id);
      const [x, y] = labelAt(d, f, font);
      return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" font-family="DejaVu Sans" font-size="${font}" fill="rgb(${r},${g},${b})" stroke="black" stroke-width="0.6">${escapeXml(labelOf(d))}</text>`;
    })
    .join('');
  const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${canvas.width}" height="${canvas.height}">${texts}</svg>`);
  const { data, info } = await sharp(canvas.data, { raw: { width: canvas.width, height: canvas.height, channels: 3 } })
    .composite([{ input: svg, top: 0, left: 0 }])
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}
