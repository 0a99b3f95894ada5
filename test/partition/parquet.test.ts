/**
 * The Parquet results, read back with an independent reader: parquet-wasm (the Rust `parquet`
 * crate compiled to WebAssembly) into Apache Arrow, not the JavaScript library that wrote them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parquetFile, parquetPartName, parquetRows, RESULT_COLUMNS, type ParquetItem } from '../../lib/partition/parquet';
import type { ImageResult } from '../../lib/partition/pipeline';
import { codecs, readParquetRows } from '../helpers/parquet';

const timings = { downloadMs: 1.5, decodeMs: 2.25, inferMs: 30.125, postMs: 0.5, queueMs: 0, batch: 1, writeMs: 0.75 };
const model = { name: 'm', etag: '0x8D1' };
const withMasks: ImageResult = {
  source: { container: 'images', name: 'dir/ünï cödé.jpg', etag: '0xAAA' },
  width: 640,
  height: 480,
  format: 'jpeg',
  model,
  timings,
  detections: [
    { bbox: [1.5, 2.25, 100, 50.75], score: 0.875, category_id: 18, label: 'dog', segmentation: { size: [480, 640], counts: 'a0b1c2]]`' }, area: 4200 },
    { bbox: [0, 0, 640, 480], score: 0.3, category_id: 1, label: 'person', segmentation: { size: [480, 640], counts: '' }, area: 0 },
  ],
};
const text: ImageResult = { ...withMasks, source: { container: 'images', name: 'scan.png', etag: '0xBBB' }, detections: [{ bbox: [10, 20, 30, 5], score: 0.9, category_id: 0, label: 'text', polygon: [[10, 20], [40, 20], [40, 25], [10, 25]] }] };
const classified: ImageResult = { ...withMasks, source: { container: 'images', name: 'c.png', etag: '0xCCC' }, detections: [], classes: [{ category_id: 2, label: 'blue', score: 0.7 }, { category_id: 0, label: 'red', score: 0.2 }] };
const empty: ImageResult = { ...withMasks, source: { container: 'images', name: 'e.png', etag: '0xDDD' }, detections: [] };
const items: ParquetItem[] = [
  { result: withMasks },
  { failure: { blob: 'broken.jpg', stage: 'decode', code: 'ImageDecodeFailed', message: 'Input buffer contains unsupported image format' }, container: 'images', etag: '0xEEE' },
  { result: text },
  { result: classified },
  { result: empty },
];

test('parquet: every field of every kind of row survives, read back by another implementation; snappy; schema as documented', async () => {
  const rows = parquetRows('job-1', items, model);
  assert.equal(rows.length, 2 + 1 + 1 + 2 + 1);
  const buf = await parquetFile(rows, { 'lakeinfer.job': 'job-1' });
  const back = readParquetRows(buf);
  assert.deepEqual(back.columns.map((c) => c.name), RESULT_COLUMNS.map((c) => c.name));
  const arrow: Record<string, string> = { STRING: 'Utf8', INT32: 'Int32', DOUBLE: 'Float64' };
  assert.deepEqual(back.columns.map((c) => c.type), RESULT_COLUMNS.map((c) => arrow[c.type]));
  assert.ok(back.columns.every((c) => c.nullable));
  assert.ok((await codecs(buf)).every((c) => c === 'SNAPPY'), 'snappy compressed');
  const full = (r: Record<string, string | number | null>) => Object.fromEntries(RESULT_COLUMNS.map((c) => [c.name, r[c.name] ?? null]));
  assert.deepEqual(back.rows, rows.map(full));
  // Spot checks against the sources, field by field.
  const [dog, person, failed, quad, blue, red, none] = back.rows;
  assert.deepEqual([dog!['image'], dog!['kind'], dog!['detection_index'], dog!['category_id'], dog!['label'], dog!['score'], dog!['bbox_x'], dog!['bbox_y'], dog!['bbox_w'], dog!['bbox_h'], dog!['mask_rle'], dog!['mask_area'], dog!['width'], dog!['height']], ['dir/ünï cödé.jpg', 'detection', 0, 18, 'dog', 0.875, 1.5, 2.25, 100, 50.75, 'a0b1c2]]`', 4200, 640, 480]);
  assert.deepEqual([person!['detection_index'], person!['mask_rle'], person!['mask_area']], [1, '', 0], 'an empty mask keeps its empty RLE');
  assert.deepEqual([failed!['status'], failed!['kind'], failed!['error_stage'], failed!['error_code'], failed!['image_etag'], failed!['width'], failed!['detection_index']], ['failed', 'failure', 'decode', 'ImageDecodeFailed', '0xEEE', null, null]);
  assert.deepEqual(JSON.parse(quad!['polygon'] as string), [[10, 20], [40, 20], [40, 25], [10, 25]]);
  assert.equal(quad!['mask_rle'], null);
  assert.deepEqual([blue!['kind'], blue!['detection_index'], blue!['label'], red!['detection_index'], red!['bbox_x']], ['class', 0, 'blue', 1, null]);
  assert.deepEqual([none!['kind'], none!['detection_index'], none!['status'], none!['infer_ms'], none!['model_etag'], none!['job_id']], ['none', null, 'ok', 30.125, '0x8D1', 'job-1']);
  assert.equal(parquetPartName(42, 128), 'results.parquet/part-00042-000128.parquet');
});

test('parquet: no row-less parts (arrow-rs cannot read a row-less file from this writer; a piece always has a row per image)', async () => {
  await assert.rejects(parquetFile([]), /at least one row/);
  assert.equal(parquetRows('j', [], model).length, 0);
  assert.equal(parquetRows('j', [{ result: empty }], model).length, 1, 'an image without detections still has its row');
});
