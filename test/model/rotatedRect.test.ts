/**
 * cv2.minAreaRect and cv2.boxPoints, emulated in lib/model/rotatedRect.ts, against OpenCV itself:
 * 971 point sets (contours of random blobs, Clipper-like integer polygons, random integer sets with
 * ties, duplicates and collinear runs, two- and one-point sets, float32 sets) whose rectangles
 * OpenCV 5.1 computed (test/fixtures/reference/generate_rotated_rect.py; committed, so no Python
 * runs here). Every value must be the same float32: PaddleOCR truncates these corners to pixels.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { miniBox } from '../../lib/model/geometry';
import { boxPointsCv, minAreaRectCv } from '../../lib/model/rotatedRect';

type Pt = [number, number];
interface Case {
  kind: string;
  float: boolean;
  points: number[];
  center: number[];
  size: number[];
  angle: number;
  box: number[][];
}
const FIXTURES = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'reference');
const ref = JSON.parse(readFileSync(join(FIXTURES, 'rotated_rect.json'), 'utf8')) as { opencv: string; cases: Case[] };

const pointsOf = (c: Case): Pt[] => Array.from({ length: c.points.length / 2 }, (_, i) => [c.points[2 * i]!, c.points[2 * i + 1]!]);

test(`minAreaRect and boxPoints equal OpenCV ${ref.opencv} bit for bit on ${ref.cases.length} point sets`, () => {
  const kinds = new Map<string, number>();
  let nonInteger = 0;
  for (const [i, c] of ref.cases.entries()) {
    const pts = pointsOf(c);
    // The fixture's float sets really are non-integer (they take OpenCV's float path).
    assert.equal(pts.some(([x, y]) => !Number.isInteger(x) || !Number.isInteger(y)), c.float, `case ${i}: dtype`);
    const r = minAreaRectCv(pts);
    const where = `case ${i} (${c.kind}, ${pts.length} points)`;
    assert.deepEqual(r.center, c.center, `${where}: center`);
    assert.deepEqual(r.size, c.size, `${where}: size`);
    assert.equal(r.angle, c.angle, `${where}: angle`);
    const box = boxPointsCv(r);
    assert.deepEqual(box, c.box, `${where}: boxPoints`);
    for (const p of box) if (p.some((v) => !Number.isInteger(v))) nonInteger++;
    kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
  }
  assert.ok((kinds.get('contour') ?? 0) > 300 && (kinds.get('float') ?? 0) > 100, `cases by kind: ${JSON.stringify([...kinds])}`);
  // The point of the exercise: many corners are float32 values next to integers, not integers.
  assert.ok(nonInteger > 500, `${nonInteger} corners are not integers`);
});

test('a corner just below an integer stays below it (PaddleOCR truncates it to the pixel before)', () => {
  // Among the fixture's contours: a corner OpenCV puts within 1e-3 below an integer.
  const below = ref.cases.flatMap((c) => c.box.flat().filter((v) => v % 1 > 0.999).map((v) => ({ c, v })));
  assert.ok(below.length > 0, 'the fixture has corners just below an integer');
  for (const { c, v } of below) {
    const got = miniBox(pointsOf(c)).box.flat();
    assert.ok(got.includes(v), `corner ${v} kept as OpenCV gives it`);
    assert.equal(Math.trunc(v), Math.ceil(v) - 1);
  }
});
