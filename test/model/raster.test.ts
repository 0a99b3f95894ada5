/**
 * Overlay drawing in JavaScript (lib/model/raster.ts): outlines where the shape runs and nowhere
 * else, labels from the glyph atlas (a dark halo, the colour inside, within the text's cell row),
 * masks blended once, and labels outside printable ASCII drawn by librsvg instead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { drawable, glyphAtlas, label, outline, tint, type Canvas } from '../../lib/model/raster';
import { colourOf, renderOverlayRgb } from '../../lib/model/overlay';
import type { Detection } from '../../lib/model/postprocess';

const blank = (w: number, h: number, v = 255): Canvas => ({ data: new Uint8Array(w * h * 3).fill(v), width: w, height: h });
const px = (c: Canvas, x: number, y: number): number[] => [...c.data.subarray((y * c.width + x) * 3, (y * c.width + x) * 3 + 3)];

test('outline: a closed polygon of the given width in the colour, the inside and outside untouched', () => {
  const c = blank(100, 80);
  outline(c, [[10, 10], [90, 10], [90, 70], [10, 70]], 2, [200, 0, 0]);
  for (const [x, y] of [[50, 10], [90, 40], [50, 70], [10, 40], [10, 10]]) assert.deepEqual(px(c, x!, y!), [200, 0, 0], `edge at ${x},${y}`);
  for (const [x, y] of [[50, 40], [50, 14], [3, 3], [96, 76]]) assert.deepEqual(px(c, x!, y!), [255, 255, 255], `not drawn at ${x},${y}`);
});

test('tint: covered pixels blended once toward their colour, the rest untouched', () => {
  const c = blank(4, 1);
  tint(c, Uint8Array.from([0, 1, 2, 0]), [[255, 0, 0], [0, 0, 255]], Math.round(255 * 0.45));
  assert.deepEqual(px(c, 0, 0), [255, 255, 255]);
  assert.deepEqual(px(c, 1, 0), [255, 140, 140]);
  assert.deepEqual(px(c, 2, 0), [140, 140, 255]);
});

test('label: glyphs from the atlas, coloured inside a dark halo, on the baseline given', async () => {
  const atlas = await glyphAtlas(14);
  assert.equal(await glyphAtlas(14), atlas, 'one atlas per font size and process');
  assert.ok(drawable('person 97%') && !drawable('文字 97%'));
  const c = blank(200, 40);
  label(c, atlas, 'HI 97%', 10, 25, [0, 130, 200]);
  let coloured = 0;
  let dark = 0;
  for (let y = 0; y < 40; y++) {
    for (let x = 0; x < 200; x++) {
      const [r, g, b] = px(c, x, y);
      if (r! < 40 && g! > 100 && b! > 160) coloured++;
      if (Math.max(r!, g!, b!) < 110) dark++;
      if (r !== 255 || g !== 255 || b !== 255) {
        assert.ok(y >= 25 - atlas.baseline && y < 25 - atlas.baseline + atlas.cellH, `drawn at row ${y}, outside the text's cells`);
        assert.ok(x >= 10 && x < 10 + 6 * atlas.cellW, `drawn at column ${x}, past the text`);
      }
    }
  }
  assert.ok(coloured > 40, `${coloured} pixels in the label's colour`);
  assert.ok(dark > 40, `${dark} pixels of halo`);
});

test('overlay: ASCII labels drawn here, other scripts by librsvg; both leave the far page untouched', async () => {
  const page = { data: new Uint8Array(320 * 200 * 3).fill(255), width: 320, height: 200 };
  const det = (label: string): Detection => ({ bbox: [40, 60, 120, 40], score: 0.9, category_id: 2, label }) as Detection;
  for (const name of ['text', '文字']) {
    const o = await renderOverlayRgb(page, [det(name)]);
    const c = { data: o.data, width: o.width, height: o.height };
    assert.deepEqual(px(c, 40, 80), colourOf(2), `${name}: box edge`);
    assert.deepEqual(px(c, 300, 190), [255, 255, 255], `${name}: far corner`);
    let inLabelRow = 0;
    for (let x = 40; x < 160; x++) for (let y = 40; y < 58; y++) if (px(c, x, y).some((v) => v !== 255)) inLabelRow++;
    assert.ok(inLabelRow > 20, `${name}: a label above the box (${inLabelRow} pixels)`);
  }
});
