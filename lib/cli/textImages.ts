/**
 * Renders lines of real text (DejaVu fonts through sharp's SVG renderer) onto backgrounds, and
 * measures where each line's ink actually landed: images with known text boxes, for the demo and tests.
 */
import sharp from 'sharp';

export interface TextLine {
  text: string;
  x: number;
  /** Baseline y. */
  y: number;
  size: number;
  color: string;
  weight?: 'normal' | 'bold';
}

export interface TextScene {
  width: number;
  height: number;
  background: string;
  lines: TextLine[];
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

function svg(scene: TextScene, lines: TextLine[], withBackground: boolean): Buffer {
  const body = lines
    .map((l) => `<text x="${l.x}" y="${l.y}" font-family="DejaVu Sans" font-size="${l.size}" font-weight="${l.weight ?? 'normal'}" fill="${l.color}">${escapeXml(l.text)}</text>`)
    .join('');
  const bg = withBackground ? `<rect width="100%" height="100%" fill="${scene.background}"/>` : '';
  return Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${scene.width}" height="${scene.height}">${bg}${body}</svg>`);
}

export async function renderTextScene(scene: TextScene, format: 'png' | 'jpeg' = 'jpeg'): Promise<Buffer> {
  const img = sharp(svg(scene, scene.lines, true), { density: 72 }).flatten({ background: scene.background });
  return format === 'png' ? img.png().toBuffer() : img.jpeg({ quality: 90 }).toBuffer();
}

/** The ink box [x, y, w, h] of each line, measured from its own rendering (alpha > 0). */
export async function measureTextBoxes(scene: TextScene): Promise<[number, number, number, number][]> {
  const out: [number, number, number, number][] = [];
  for (const line of scene.lines) {
    const { data, info } = await sharp(svg(scene, [line], false), { density: 72 }).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    let x0 = info.width, y0 = info.height, x1 = -1, y1 = -1;
    for (let y = 0; y < info.height; y++) {
      for (let x = 0; x < info.width; x++) {
        if (data[(y * info.width + x) * info.channels + 3]! > 0) {
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
      }
    }
    out.push(x1 < 0 ? [0, 0, 0, 0] : [x0, y0, x1 - x0 + 1, y1 - y0 + 1]);
  }
  return out;
}
