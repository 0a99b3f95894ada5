import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { planResize, prepareImage, probeImage, DEFAULT_LIMITS } from '../../lib/model/preprocess';
import { InputSpecSchema, parseModelSpec } from '../../lib/model/spec';
import { LakeInferError } from '../../lib/util/errors';
import { Canvas } from '../helpers/images';

const YOLACT_NORM = { mean: [123.68, 116.78, 103.94], std: [58.4, 57.12, 57.38] };

function spec(over: Record<string, unknown>) {
  return InputSpecSchema.parse({ width: 4, height: 2, resize: 'stretch', ...over });
}

const PIXELS = [
  [0, 0, 0], [255, 255, 255], [10, 20, 30], [200, 100, 50],
  [1, 2, 3], [128, 64, 32], [255, 0, 0], [0, 0, 255],
];

function rgbPng(): Promise<Buffer> {
  const c = new Canvas(4, 2);
  PIXELS.forEach((p, i) => c.set(i % 4, Math.floor(i / 4), p));
  return c.png();
}

/**
 * What numpy and torch compute on float32 arrays: each step rounded to float32, with float32
 * constants: ((v * float32(scale)) - float32(mean)) / float32(std) (PaddleOCR's NormalizeImage,
 * YOLACT's FastBaseTransform with scale 1).
 */
function expectedTensor(order: number[], norm: { mean: number[]; std: number[] }, scale = 1): Float32Array {
  const f = Math.fround;
  const out = new Float32Array(3 * 8);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < 8; i++) {
      const v = PIXELS[i]![order[c]!]!;
      const scaled = scale === 1 ? v : f(v * f(scale));
      out[c * 8 + i] = f(f(scaled - f(norm.mean[c]!)) / f(norm.std[c]!));
    }
  }
  return out;
}

function codeOf(err: unknown): string | undefined {
  return err instanceof LakeInferError ? err.code : undefined;
}

describe('normalisation is exact', () => {
  test('RGB, NCHW, (v - mean) / std per channel', async () => {
    const p = await prepareImage(await rgbPng(), spec(YOLACT_NORM));
    assert.deepEqual(Array.from(p.tensor), Array.from(expectedTensor([0, 1, 2], YOLACT_NORM)));
    assert.equal(p.width, 4);
    assert.equal(p.height, 2);
    assert.deepEqual(p.transform, { scaleX: 1, scaleY: 1, padX: 0, padY: 0, inW: 4, inH: 2 });
  });

  test('BGR order and a scale factor (v * float32(1/255) - mean) / std', async () => {
    const norm = { mean: [0.406, 0.456, 0.485], std: [0.225, 0.224, 0.229] };
    const p = await prepareImage(await rgbPng(), spec({ ...norm, scale: 1 / 255, channelOrder: 'BGR' }));
    assert.deepEqual(Array.from(p.tensor), Array.from(expectedTensor([2, 1, 0], norm, 1 / 255)));
  });

  test('a divisor divides in float32 (ultralytics: x / 255), which differs from multiplying by float32(1/255)', async () => {
    const p = await prepareImage(await rgbPng(), spec({ divisor: 255 }));
    const f = Math.fround;
    assert.deepEqual(Array.from(p.tensor), [0, 1, 2].flatMap((c) => PIXELS.map((px) => f(f(px[c]!) / 255))));
    // Not a distinction without a difference: for 114 the two conventions round to different floats.
    assert.notEqual(f(114 / 255), f(114 * f(1 / 255)));
  });
});

describe('colour spaces, depths and formats become 8-bit sRGB', () => {
  const plain = spec({});

  test('grayscale: three equal channels', async () => {
    const gray = await sharp(Buffer.from([0, 50, 100, 255, 7, 8, 9, 10]), { raw: { width: 4, height: 2, channels: 1 } }).toColourspace('b-w').png().toBuffer();
    assert.equal((await sharp(gray).metadata()).channels, 1);
    const p = await prepareImage(gray, plain);
    const expect = [0, 50, 100, 255, 7, 8, 9, 10];
    for (let c = 0; c < 3; c++) assert.deepEqual(Array.from(p.tensor.subarray(c * 8, c * 8 + 8)), expect);
  });

  test('alpha is dropped, colour kept', async () => {
    const rgba = Buffer.from(PIXELS.flatMap((p, i) => [...p, i * 30]));
    const png = await sharp(rgba, { raw: { width: 4, height: 2, channels: 4 } }).png().toBuffer();
    assert.equal((await sharp(png).metadata()).hasAlpha, true);
    const p = await prepareImage(png, plain);
    assert.deepEqual(Array.from(p.tensor), Array.from(expectedTensor([0, 1, 2], { mean: [0, 0, 0], std: [1, 1, 1] })));
  });

  test('16-bit PNG is scaled to 8 bits', async () => {
    const px16 = new Uint16Array(PIXELS.flat().map((v) => v * 257));
    const png16 = await sharp(px16, { raw: { width: 4, height: 2, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
    const meta = await sharp(png16).metadata();
    assert.equal(meta.depth, 'ushort');
    const p = await prepareImage(png16, plain);
    assert.deepEqual(Array.from(p.tensor), Array.from(expectedTensor([0, 1, 2], { mean: [0, 0, 0], std: [1, 1, 1] })));
  });

  test('palette PNG decodes to its colours', async () => {
    const c = new Canvas(4, 2);
    const pal = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]];
    for (let i = 0; i < 8; i++) c.set(i % 4, Math.floor(i / 4), pal[i % 4]!);
    const png = await c.sharp().png({ palette: true, colours: 4, dither: 0 }).toBuffer();
    assert.equal((await sharp(png).metadata()).isPalette, true);
    const p = await prepareImage(png, plain);
    for (let i = 0; i < 8; i++) for (let ch = 0; ch < 3; ch++) assert.equal(p.tensor[ch * 8 + i], pal[i % 4]![ch], `pixel ${i} channel ${ch}`);
  });

  test('CMYK JPEG is converted to sRGB', async () => {
    const c = new Canvas(32, 32, [200, 40, 40]);
    const cmyk = await c.sharp().toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer();
    assert.equal((await sharp(cmyk).metadata()).space, 'cmyk');
    const p = await prepareImage(cmyk, spec({ width: 32, height: 32 }));
    const mid = 16 * 32 + 16;
    const rgb = [p.tensor[mid]!, p.tensor[1024 + mid]!, p.tensor[2048 + mid]!];
    // Exactly libvips' own CMYK -> sRGB conversion, and near the colour that was written (CMYK round trips are lossy).
    const ref = await sharp(cmyk).toColourspace('srgb').raw().toBuffer();
    assert.deepEqual(rgb, [ref[mid * 3], ref[mid * 3 + 1], ref[mid * 3 + 2]]);
    [200, 40, 40].forEach((v, ch) => assert.ok(Math.abs(rgb[ch]! - v) <= 25, `channel ${ch}: ${rgb[ch]} vs ${v}`));
  });

  test('animated GIF: the first frame', async () => {
    const frames = Buffer.concat([Buffer.alloc(8 * 8 * 3, 0), Buffer.alloc(8 * 8 * 3, 255)]);
    const gif = await sharp(frames, { raw: { width: 8, height: 16, channels: 3, pageHeight: 8 } as sharp.CreateRaw }).gif().toBuffer();
    assert.equal((await sharp(gif).metadata()).pages, 2);
    const p = await prepareImage(gif, spec({ width: 8, height: 8 }));
    assert.equal(p.height, 8);
    assert.ok(p.tensor.every((v) => v === 0), 'first (black) frame');
  });
});

describe('resizing', () => {
  test('letterbox keeps aspect and pads with 114 like ultralytics', async () => {
    const c = new Canvas(100, 50, [200, 0, 0]);
    const s = spec({ width: 64, height: 64, resize: 'letterbox', divisor: 255 });
    const p = await prepareImage(await c.png(), s);
    assert.deepEqual(p.transform, { scaleX: 0.64, scaleY: 0.64, padX: 0, padY: 16, inW: 64, inH: 64 });
    const pad = Math.fround(114 / 255);
    const red = Math.fround(200 / 255);
    for (const y of [0, 15, 48, 63]) assert.equal(p.tensor[y * 64 + 10], pad, `row ${y} is padding`);
    for (const y of [17, 30, 46]) assert.equal(p.tensor[y * 64 + 10], red, `row ${y} is image`);
    assert.equal(p.tensor[4096 + 30 * 64 + 10], 0, 'green channel of the red image');
    assert.equal(p.tensor[4096 + 5 * 64 + 10], pad, 'green channel of the padding');
  });

  test('stretch fills the input; fit32 keeps aspect in multiples of 32', () => {
    assert.deepEqual(planResize(1100, 825, spec({ width: 550, height: 550 })), { scaleX: 0.5, scaleY: 550 / 825, padX: 0, padY: 0, inW: 550, inH: 550 });
    const fit = spec({ resize: 'fit32', maxSide: 960 });
    assert.deepEqual(planResize(1000, 500, fit), { scaleX: 0.96, scaleY: 0.96, padX: 0, padY: 0, inW: 960, inH: 480 });
    const small = planResize(100, 50, fit);
    assert.equal(small.inW, 96);
    assert.equal(small.inH, 64);
    const tiny = planResize(5, 3, fit);
    assert.equal(tiny.inW, 32);
    assert.equal(tiny.inH, 32);
    const tall = planResize(300, 4000, fit);
    assert.equal(tall.inH, 960);
    assert.equal(tall.inW, 64); // 300 * 0.24 = 72 -> 64
  });
});

describe('bad input is a per-image error with a clear code', () => {
  const s = spec({});
  const cases: [string, () => Promise<Buffer>, string, RegExp][] = [
    ['empty', async () => Buffer.alloc(0), 'ImageEmpty', /empty/],
    ['not an image', async () => Buffer.from('hello, this is a text file and not an image at all'), 'ImageDecodeFailed', /decode/],
    ['random bytes', async () => Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)), 'ImageDecodeFailed', /decode/],
    ['truncated JPEG', async () => (await new Canvas(256, 256, [90, 120, 30]).sharp().jpeg().toBuffer()).subarray(0, 600), 'ImageDecodeFailed', /decode/],
    ['truncated PNG', async () => (await new Canvas(256, 256, [90, 120, 30]).png()).subarray(0, 60), 'ImageDecodeFailed', /decode/],
    ['corrupt PNG body', async () => {
      const png = Buffer.from(await new Canvas(64, 64, [1, 2, 3]).png());
      for (let i = 60; i < png.length - 20; i++) png[i] = png[i]! ^ 0x5a;
      return png;
    }, 'ImageDecodeFailed', /decode/],
  ];
  for (const [name, make, code, msg] of cases) {
    test(name, async () => {
      await assert.rejects(prepareImage(await make(), s), (err: unknown) => codeOf(err) === code && msg.test((err as Error).message));
    });
  }

  test('too many bytes', async () => {
    const png = await new Canvas(64, 64).png();
    await assert.rejects(prepareImage(png, s, { maxBytes: 10, maxPixels: 1e8 }), (err: unknown) => codeOf(err) === 'ImageTooLarge' && /MAX_IMAGE_BYTES/.test((err as Error).message));
  });

  test('decompression bomb: small file, too many pixels', async () => {
    const bomb = await sharp({ create: { width: 4000, height: 4000, channels: 3, background: 'white' } }).png({ compressionLevel: 9 }).toBuffer();
    assert.ok(bomb.length < 100_000, `bomb is ${bomb.length} bytes`);
    await assert.rejects(prepareImage(bomb, s, { maxBytes: 1e6, maxPixels: 1_000_000 }), (err: unknown) => codeOf(err) === 'ImageTooLarge' && /pixel/i.test((err as Error).message));
    assert.deepEqual(await probeImage(bomb, DEFAULT_LIMITS), { width: 4000, height: 4000, format: 'png' });
  });
});

test('model.json errors name the field', () => {
  assert.throws(() => parseModelSpec({ adapter: 'yolact', input: { width: 550, height: 550, resize: 'stretch', std: [1, 0, 1] } }), (e: unknown) => e instanceof LakeInferError && e.code === 'ModelInvalid' && e.target === 'input.std' && /input\.std/.test(e.message));
  assert.throws(() => parseModelSpec({ adapter: 'maskrcnn', input: { width: 550, height: 550, resize: 'stretch' } }), (e: unknown) => e instanceof LakeInferError && e.target === 'adapter');
  assert.throws(() => parseModelSpec({ adapter: 'yolact', input: { width: 550, resize: 'stretch' } }), (e: unknown) => e instanceof LakeInferError && e.target === 'input.height');
});
