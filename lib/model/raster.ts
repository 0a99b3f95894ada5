/**
 * Drawing on 8-bit RGB pixels in JavaScript, for overlays: tinted masks, thick outlines, and text
 * labels blitted from a glyph atlas that sharp renders once per font size and process. Rasterising a
 * whole-image SVG (librsvg) for a few boxes and labels cost about 30 CPU-ms per 800x600 overlay,
 * more than decoding the image; drawing here costs what the shapes cover.
 */
import sharp from 'sharp';

/** An RGB canvas: interleaved, row-major. */
export interface Canvas {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Blends `colour` at opacity alpha/255 into every pixel whose entry in `cover` is non-zero (cover[i] - 1 picks the colour). */
export function tint(c: Canvas, cover: Uint8Array, colours: readonly (readonly [number, number, number])[], alpha: number): void {
  // Integer blend, rounded: (v (255 - alpha) + colour alpha + 127) / 255.
  const keep = 255 - alpha;
  const add = colours.map((col) => col.map((v) => v * alpha + 127));
  const d = c.data;
  for (let i = 0, o = 0; i < cover.length; i++, o += 3) {
    const k = cover[i]!;
    if (k === 0) continue;
    const a = add[k - 1]!;
    d[o] = ((d[o]! * keep + a[0]!) / 255) | 0;
    d[o + 1] = ((d[o + 1]! * keep + a[1]!) / 255) | 0;
    d[o + 2] = ((d[o + 2]! * keep + a[2]!) / 255) | 0;
  }
}

function fillSquare(c: Canvas, cx: number, cy: number, size: number, col: readonly [number, number, number]): void {
  const x0 = Math.max(0, Math.round(cx - size / 2));
  const y0 = Math.max(0, Math.round(cy - size / 2));
  const x1 = Math.min(c.width, x0 + size);
  const y1 = Math.min(c.height, y0 + size);
  for (let y = y0; y < y1; y++) {
    for (let x = x0, o = (y * c.width + x0) * 3; x < x1; x++, o += 3) {
      c.data[o] = col[0];
      c.data[o + 1] = col[1];
      c.data[o + 2] = col[2];
    }
  }
}

/** A closed outline through `points` (pixel coordinates), `width` pixels thick, opaque. */
export function outline(c: Canvas, points: readonly (readonly [number, number])[], width: number, col: readonly [number, number, number]): void {
  for (let i = 0; i < points.length; i++) {
    const [x0, y0] = points[i]!;
    const [x1, y1] = points[(i + 1) % points.length]!;
    const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) * 2));
    for (let s = 0; s <= steps; s++) fillSquare(c, x0 + ((x1 - x0) * s) / steps, y0 + ((y1 - y0) * s) / steps, width, col);
  }
}

/** Monospaced glyphs of printable ASCII at one font size: coverage of each glyph's fill and of its halo. */
export interface GlyphAtlas {
  font: number;
  /** Width and height of a glyph's cell; the advance is the cell's width. */
  cellW: number;
  cellH: number;
  /** Baseline, from the cell's top. */
  baseline: number;
  /** Coverage 0..255, one row of cells per layer: fill, then halo; width 95 x cellW. */
  fill: Uint8Array;
  halo: Uint8Array;
}

const FIRST = 32;
const LAST = 126;
const atlases = new Map<number, Promise<GlyphAtlas>>();

/** Whether every character of `text` is in the atlas (printable ASCII). */
export function drawable(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const k = text.charCodeAt(i);
    if (k < FIRST || k > LAST) return false;
  }
  return true;
}

/** The atlas for a font size, rendered once per process (DejaVu Sans Mono, or fontconfig's monospace). */
export function glyphAtlas(font: number): Promise<GlyphAtlas> {
  let a = atlases.get(font);
  if (!a) {
    a = renderAtlas(font);
    atlases.set(font, a);
    a.catch(() => atlases.delete(font));
  }
  return a;
}

async function renderAtlas(font: number): Promise<GlyphAtlas> {
  const cellW = Math.ceil(font * 0.62) + 2;
  const cellH = Math.ceil(font * 1.25) + 2;
  const baseline = Math.ceil(font * 0.95) + 1;
  const n = LAST - FIRST + 1;
  const width = n * cellW;
  const esc = (ch: string): string => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[ch] ?? ch;
  const layer = (attrs: string): string =>
    Array.from({ length: n }, (_, i) => String.fromCharCode(FIRST + i))
      .map((ch, i) => (ch === ' ' ? '' : `<text x="${i * cellW + 1}" y="${baseline}" ${attrs}>${esc(ch)}</text>`))
      .join('');
  const text = `font-family="DejaVu Sans Mono, monospace" font-size="${font}"`;
  const render = async (attrs: string): Promise<Uint8Array> => {
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${cellH}">${layer(`${text} ${attrs}`)}</svg>`;
    const { data } = await sharp(Buffer.from(svg)).ensureAlpha().extractChannel(3).raw().toBuffer({ resolveWithObject: true });
    return new Uint8Array(data.buffer, data.byteOffset, data.length);
  };
  const [fill, halo] = await Promise.all([render('fill="white"'), render('fill="white" stroke="white" stroke-width="1.5" stroke-linejoin="round"')]);
  return { font, cellW, cellH, baseline, fill, halo };
}

function blit(c: Canvas, cover: Uint8Array, atlasW: number, sx: number, sy: number, w: number, h: number, dx: number, dy: number, col: readonly [number, number, number]): void {
  for (let y = 0; y < h; y++) {
    const ty = dy + y;
    if (ty < 0 || ty >= c.height) continue;
    for (let x = 0; x < w; x++) {
      const tx = dx + x;
      if (tx < 0 || tx >= c.width) continue;
      const a = cover[(sy + y) * atlasW + sx + x]!;
      if (a === 0) continue;
      const o = (ty * c.width + tx) * 3;
      const k = a / 255;
      c.data[o] = Math.round(c.data[o]! * (1 - k) + col[0] * k);
      c.data[o + 1] = Math.round(c.data[o + 1]! * (1 - k) + col[1] * k);
      c.data[o + 2] = Math.round(c.data[o + 2]! * (1 - k) + col[2] * k);
    }
  }
}

/** `text` (drawable) with its baseline's left end at (x, y): a black halo, then the glyphs in `col`. */
export function label(c: Canvas, atlas: GlyphAtlas, text: string, x: number, y: number, col: readonly [number, number, number]): void {
  const atlasW = (LAST - FIRST + 1) * atlas.cellW;
  const top = Math.round(y) - atlas.baseline;
  for (const [cover, colour] of [
    [atlas.halo, [0, 0, 0]],
    [atlas.fill, col],
  ] as const) {
    for (let i = 0; i < text.length; i++) {
      const g = text.charCodeAt(i) - FIRST;
      if (g <= 0) continue;
      blit(c, cover, atlasW, g * atlas.cellW, 0, atlas.cellW, atlas.cellH, Math.round(x) + i * (atlas.cellW - 2), top, colour);
    }
  }
}
