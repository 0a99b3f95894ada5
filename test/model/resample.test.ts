/**
 * The reference resamplers and preprocessing against hand-worked values and against fixtures made
 * with OpenCV and PyTorch (test/fixtures/reference/generate_preprocess.py; committed, no Python here).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CATALOG } from '../../lib/model/catalog';
import { decodeRgb, planResize, preparePixels } from '../../lib/model/preprocess';
import { opencvAxis, resizeBilinear, resizeOpencvU8, roundHalfEven, torchAxis } from '../../lib/model/resample';
import { InputSpecSchema, parseModelSpec } from '../../lib/model/spec';

const FIXTURES = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'reference');

interface Fixture {
  resampleCases: { sw: number; sh: number; channels: number; dw: number; dh: number; src: string; opencv: string; torch: string }[];
  pipelines: {
    image: string;
    width: number;
    height: number;
    decodedSha256: string;
    models: Record<string, { inH: number; inW: number; sampleIndex: number[]; sampleValues: string; sum: number; resized8bitSha256?: string }>;
  }[];
}
const fixture = JSON.parse(readFileSync(join(FIXTURES, 'preprocess.json'), 'utf8')) as Fixture;
const u8 = (b64: string): Uint8Array => new Uint8Array(Buffer.from(b64, 'base64'));
const f32 = (b64: string): Float32Array => {
  const b = Buffer.from(b64, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
};

describe('hand-worked values', () => {
  test('enlarging 1x2 -> 1x4: half-pixel centres, edges clamped (both resamplers agree)', () => {
    // Source positions s = 0.5 * (d + 0.5) - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamped to [0, 1].
    assert.deepEqual(Array.from(resizeBilinear(Uint8Array.from([0, 100]), 2, 1, 1, 4, 1)), [0, 25, 75, 100]);
    assert.deepEqual(Array.from(resizeOpencvU8(Uint8Array.from([0, 100]), 2, 1, 1, 4, 1)), [0, 25, 75, 100]);
    // The same along the other axis.
    assert.deepEqual(Array.from(resizeBilinear(Uint8Array.from([0, 100]), 1, 2, 1, 1, 4)), [0, 25, 75, 100]);
    assert.deepEqual(Array.from(resizeOpencvU8(Uint8Array.from([0, 100]), 1, 2, 1, 1, 4)), [0, 25, 75, 100]);
  });

  test('shrinking an impulse by 2: no antialiasing; float keeps 127.5, OpenCV rounds it to 128', () => {
    // s = 2 * (d + 0.5) - 0.5 = 0.5, 2.5: each output is the mean of two neighbours, no wider filter.
    assert.deepEqual(Array.from(resizeBilinear(Uint8Array.from([0, 0, 255, 0]), 4, 1, 1, 2, 1)), [0, 127.5]);
    assert.deepEqual(Array.from(resizeOpencvU8(Uint8Array.from([0, 0, 255, 0]), 4, 1, 1, 2, 1)), [0, 128]);
    // An impulse between two sample positions vanishes (an antialiasing filter would keep part of it).
    assert.deepEqual(Array.from(resizeBilinear(Uint8Array.from([0, 0, 0, 255, 0, 0]), 6, 1, 1, 2, 1)), [0, 0]);
  });

  test('a ramp stays a ramp at non-integer ratios: value = 10 * clamp(scale * (d + 0.5) - 0.5)', () => {
    const ramp = Uint8Array.from({ length: 7 }, (_, i) => 10 * i);
    for (const out of [3, 4, 5, 9, 13]) {
      const scale = Math.fround(7 / out);
      const got = resizeBilinear(ramp, 7, 1, 1, out, 1);
      for (let d = 0; d < out; d++) {
        const s = Math.min(Math.max(scale * (d + 0.5) - 0.5, 0), 6);
        assert.ok(Math.abs(got[d]! - 10 * s) < 1e-4, `7 -> ${out}, d=${d}: ${got[d]} vs ${10 * s}`);
      }
    }
  });

  test('2-D: an impulse enlarged is the outer product of the 1-D weights', () => {
    const src = new Uint8Array(9);
    src[4] = 200; // centre of 3x3
    const got = resizeBilinear(src, 3, 3, 1, 5, 4);
    const wx = Array.from(resizeBilinear(Uint8Array.from([0, 1, 0]), 3, 1, 1, 5, 1));
    const wy = Array.from(resizeBilinear(Uint8Array.from([0, 1, 0]), 1, 3, 1, 1, 4));
    for (let y = 0; y < 4; y++) for (let x = 0; x < 5; x++) assert.ok(Math.abs(got[y * 5 + x]! - 200 * wy[y]! * wx[x]!) < 1e-4);
  });

  test('coefficients: torch clamps the source index at 0; OpenCV rounds 11-bit weights half to even and clamps only x weights', () => {
    const t = torchAxis(2, 4);
    assert.deepEqual([Array.from(t.i0), Array.from(t.i1), Array.from(t.w1)], [[0, 0, 0, 1], [1, 1, 1, 1], [0, 0.25, 0.75, 0.25]]);
    const x = opencvAxis(2, 4, true);
    assert.deepEqual([Array.from(x.i0), Array.from(x.a0), Array.from(x.a1)], [[0, 0, 0, 1], [2048, 1536, 512, 2048], [0, 512, 1536, 0]]);
    // Rows: the index is clipped but the weight kept (-0.25 -> floor -1, fraction 0.75).
    const y = opencvAxis(2, 4, false);
    assert.deepEqual([Array.from(y.i0), Array.from(y.i1), Array.from(y.a0), Array.from(y.a1)], [[0, 0, 0, 1], [0, 1, 1, 1], [512, 1536, 512, 1536], [1536, 512, 1536, 512]]);
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, -0, -2, 2, 3]);
  });

  test('reference sizing: letterbox and multiple-of-32 fit round as Python does', () => {
    const lb = InputSpecSchema.parse({ width: 640, height: 640, resize: 'letterbox' });
    // 1001 x 333: r = 640/1001, h * r = 212.907... -> 213; dh = 213.5 -> top 213, bottom 214.
    assert.deepEqual(planResize(1001, 333, lb), { scaleX: 640 / 1001, scaleY: 213 / 333, padX: 0, padY: 213, inW: 640, inH: 640 });
    const fit = InputSpecSchema.parse({ width: 960, height: 960, resize: 'fit32', maxSide: 960 });
    // 80 x 48: no scaling; round(80/32 = 2.5) = 2 (half to even) -> 64; round(1.5) = 2 -> 64.
    assert.deepEqual([planResize(80, 48, fit).inW, planResize(80, 48, fit).inH], [64, 64]);
    // 2000 x 1000: ratio 0.48; int(1000 * 0.48) = 480 -> 480; 960 -> 960.
    assert.deepEqual([planResize(2000, 1000, fit).inW, planResize(2000, 1000, fit).inH], [960, 480]);
    // A square uses the width's ratio; int() truncates before rounding: 1111 * 960/1111 = 959.99.. -> 959 -> 960.
    assert.deepEqual([planResize(1111, 1111, fit).inW, planResize(1111, 1111, fit).inH], [960, 960]);
    // Tiny images get at least 32.
    assert.deepEqual([planResize(10, 5, fit).inW, planResize(10, 5, fit).inH], [32, 32]);
  });
});

describe('against OpenCV and PyTorch (committed fixtures)', () => {
  test('cv2.resize INTER_LINEAR on 8-bit images: bit for bit, 16 cases (enlarge, shrink, 1xN, Nx1, 1 and 3 channels)', () => {
    for (const c of fixture.resampleCases) {
      const got = resizeOpencvU8(u8(c.src), c.sw, c.sh, c.channels, c.dw, c.dh);
      assert.deepEqual(Buffer.from(got), Buffer.from(u8(c.opencv)), `${c.sw}x${c.sh}x${c.channels} -> ${c.dw}x${c.dh}`);
    }
  });

  test('F.interpolate(bilinear, align_corners=False) on tiny images: same weights; values within float32 accumulation (< 3e-4 of 255)', () => {
    let worst = 0;
    for (const c of fixture.resampleCases) {
      const got = resizeBilinear(u8(c.src), c.sw, c.sh, c.channels, c.dw, c.dh);
      const want = f32(c.torch);
      assert.equal(got.length, want.length);
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
    }
    // On these 1x1 to 30x30 images torch takes another code path whose sums are not the fused ones
    // of photo sizes (some are exact double sums): ~1e-6 relative at worst; any change of formula
    // would show as > 1e-2. Photo and mask sizes are bit for bit (next test).
    assert.ok(worst < 3e-4, `max |ours - torch| = ${worst} grey levels`);
  });

  test("F.interpolate at photo and mask sizes: bit for bit with torch's fused multiply-adds (YOLACT's 550x550 input, prototype upsampling)", () => {
    const ref = JSON.parse(readFileSync(join(FIXTURES, 'torch_bilinear.json'), 'utf8')) as { torch: string; cases: { kind: 'u8' | 'float'; sw: number; sh: number; channels: number; dw: number; dh: number; sha256: string; first: number[] }[] };
    for (const c of ref.cases) {
      // The inputs are the formulas of generate_torch_bilinear.py.
      const n = c.sw * c.sh * c.channels;
      const src = c.kind === 'u8' ? new Uint8Array(n) : new Float32Array(n);
      for (let y = 0, i = 0; y < c.sh; y++) for (let x = 0; x < c.sw; x++) for (let ch = 0; ch < c.channels; ch++, i++) src[i] = c.kind === 'u8' ? (x * 7 + y * 13 + ch * 31 + ((x * y) % 17)) % 256 : ((x * 31 + y * 17 + ch * 7) % 1000) / 125 - 4;
      const got = resizeBilinear(src, c.sw, c.sh, c.channels, c.dw, c.dh);
      const what = `${c.kind} ${c.sw}x${c.sh}x${c.channels} -> ${c.dw}x${c.dh} (torch ${ref.torch})`;
      assert.deepEqual([...got.subarray(0, c.first.length)], c.first, what);
      assert.equal(createHash('sha256').update(new Uint8Array(got.buffer, got.byteOffset, got.byteLength)).digest('hex'), c.sha256, what);
    }
  });

  for (const p of fixture.pipelines) {
    test(`${p.image}: decoded pixels equal cv2.imread's; every catalog model's input equals its reference pipeline's`, async () => {
      const img = await decodeRgb(readFileSync(join(FIXTURES, p.image)));
      assert.deepEqual([img.width, img.height], [p.width, p.height]);
      assert.equal(createHash('sha256').update(img.data).digest('hex'), p.decodedSha256, 'sharp decodes the same pixels as cv2.imread');
      for (const [model, want] of Object.entries(p.models)) {
        const spec = parseModelSpec(CATALOG[model]).input;
        const got = preparePixels(img, spec);
        assert.deepEqual([got.transform.inH, got.transform.inW], [want.inH, want.inW], model);
        const values = f32(want.sampleValues);
        let worst = 0;
        want.sampleIndex.forEach((idx, k) => (worst = Math.max(worst, Math.abs(got.tensor[idx]! - values[k]!))));
        const sum = got.tensor.reduce((a, v) => a + v, 0);
        if (spec.resample === 'opencv') {
          assert.equal(worst, 0, `${model}: OpenCV-based input must be bit-exact (worst ${worst})`);
        } else {
          assert.ok(worst <= 2e-6, `${model}: max |ours - torch| = ${worst}`);
        }
        assert.ok(Math.abs(sum - want.sum) <= 1e-6 * Math.max(1, Math.abs(want.sum)) * 50, `${model}: tensor sum ${sum} vs ${want.sum}`);
      }
    });
  }
});
