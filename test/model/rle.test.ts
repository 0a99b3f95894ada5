import { test } from 'node:test';
import assert from 'node:assert/strict';
import { boxMaskToCounts, countsToString, decodeRle, encodeMask, maskToCounts, rleArea, stringToCounts } from '../../lib/model/rle';

test('compressed strings match pycocotools rleToString, worked by hand', () => {
  assert.equal(countsToString([0, 4]), '04'); // 2x2 all ones
  // i > 2 is a delta against counts[i-2]: 1 - 3 = -2 -> 0b11110 with sign bit set, no continuation -> 'N'.
  assert.equal(countsToString([5, 3, 2, 1]), '532N');
  // 1000 = 0b1111101000: groups 01000 (+0x20) and 11111 (+0x20, sign bit set but more follows), then 0.
  assert.equal(countsToString([1000]), 'Xo0');
  assert.deepEqual(stringToCounts('532N'), [5, 3, 2, 1]);
  assert.deepEqual(stringToCounts('Xo0'), [1000]);
});

test('column-major runs starting with zeros', () => {
  // 2x3 mask, row-major:
  // 0 1 1
  // 0 0 1
  const m = Uint8Array.from([0, 1, 1, 0, 0, 1]);
  // column-major: col0: 0 0, col1: 1 0, col2: 1 1 -> runs: 2 zeros, 1 one, 1 zero, 2 ones
  assert.deepEqual(maskToCounts(m, 2, 3), [2, 1, 1, 2]);
  const leadingOne = Uint8Array.from([1, 0, 0, 0]);
  assert.deepEqual(maskToCounts(leadingOne, 2, 2), [0, 1, 3]);
  const rle = encodeMask(m, 2, 3);
  assert.deepEqual(rle.size, [2, 3]);
  assert.deepEqual(decodeRle(rle), m);
  assert.equal(rleArea(rle), 3);
});

test('random masks round trip, and box encoding equals full-image encoding', () => {
  let seed = 12345;
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let t = 0; t < 50; t++) {
    const h = 1 + Math.floor(rand() * 60);
    const w = 1 + Math.floor(rand() * 60);
    const bx = Math.floor(rand() * w);
    const by = Math.floor(rand() * h);
    const bw = 1 + Math.floor(rand() * (w - bx));
    const bh = 1 + Math.floor(rand() * (h - by));
    const box = Uint8Array.from({ length: bw * bh }, () => (rand() < 0.6 ? 1 : 0));
    const full = new Uint8Array(h * w);
    for (let y = 0; y < bh; y++) for (let x = 0; x < bw; x++) full[(by + y) * w + bx + x] = box[y * bw + x]!;
    assert.deepEqual(boxMaskToCounts(h, w, bx, by, bw, bh, box), maskToCounts(full, h, w));
    const rle = encodeMask(full, h, w);
    assert.deepEqual(decodeRle(rle), full);
    assert.equal(rleArea(rle), full.reduce((a, v) => a + v, 0));
  }
});

test('large images: counts past 2^20 survive the string encoding', () => {
  const h = 3000;
  const w = 4000;
  const counts = boxMaskToCounts(h, w, 3990, 2990, 10, 10, new Uint8Array(100).fill(1));
  assert.equal(counts[0], 3990 * 3000 + 2990);
  assert.deepEqual(stringToCounts(countsToString(counts)), counts);
});
