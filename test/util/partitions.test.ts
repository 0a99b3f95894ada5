import { test } from 'node:test';
import assert from 'node:assert/strict';
import { partitionStream, splitIntoPartitions } from '../../lib/util/partitions';

test('splitIntoPartitions keeps order and sizes', () => {
  const items = Array.from({ length: 10 }, (_, i) => i);
  assert.deepEqual(splitIntoPartitions(items, 4), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
  assert.deepEqual(splitIntoPartitions(items, 10), [items]);
  assert.deepEqual(splitIntoPartitions([], 3), []);
  assert.throws(() => splitIntoPartitions(items, 0), /positive integer/);
  assert.throws(() => splitIntoPartitions(items, 1.5), /positive integer/);
});

test('partitionStream re-chunks uneven pages exactly like splitIntoPartitions', async () => {
  const items = Array.from({ length: 103 }, (_, i) => i);
  const pageSizes = [7, 0, 30, 1, 50, 15];
  async function* pages() {
    let at = 0;
    for (const s of pageSizes) {
      yield items.slice(at, at + s);
      at += s;
    }
  }
  const got: number[][] = [];
  for await (const p of partitionStream(pages(), 16)) got.push(p);
  assert.deepEqual(got, splitIntoPartitions(items, 16));
});
