import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AUTO_MAX, AUTO_MIN, autoPartitionSize, autoPartitionStream, partitionStream, splitIntoPartitions } from '../../lib/util/partitions';

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

test("'auto' partition sizes: a small job spreads over the window, a large one gets full partitions", () => {
  assert.equal(autoPartitionSize(48, 32), AUTO_MIN, '48 images: 12 partitions of 4');
  assert.equal(autoPartitionSize(3, 32), 3, 'fewer than AUTO_MIN: one partition');
  assert.equal(autoPartitionSize(5, 32), 3, '5 images: partitions of 3 and 2');
  assert.equal(autoPartitionSize(1000, 32), 32, '1,000 images in a window of 32: 32 partitions of 32');
  assert.equal(autoPartitionSize(100_000, 32), AUTO_MAX);
  assert.equal(autoPartitionSize(48, 2), 24, 'a window of 2: two partitions');
  assert.equal(autoPartitionSize(0, 32), AUTO_MAX);
  assert.equal(autoPartitionSize(48, 32, AUTO_MAX), 48, 'video frames (min 64): one partition of a short clip');
  assert.equal(autoPartitionSize(600, 32, AUTO_MAX), 60, '600 frames: 10 partitions of 60');
  for (const [total, window] of [[1, 1], [7, 3], [48, 32], [999, 32], [2048, 32], [2049, 32], [12345, 7]] as const) {
    const size = autoPartitionSize(total, window);
    const partitions = Math.ceil(total / size);
    assert.ok(size >= 1 && size <= AUTO_MAX, `${total}/${window}: ${size}`);
    assert.ok(partitions <= Math.max(window, Math.ceil(total / AUTO_MAX)), `${total}/${window}: ${partitions} partitions`);
    // Balanced: the last partition is never much smaller than the others where there are several.
    if (partitions > 1 && total <= window * AUTO_MAX) assert.ok(total - (partitions - 1) * size >= size - partitions, `${total}/${window}: last ${total - (partitions - 1) * size} of ${size}`);
  }
});

test("autoPartitionStream decides the size from the stream: the count when it ends early, AUTO_MAX when it is long", async () => {
  async function* pages(n: number, page: number) {
    for (let at = 0; at < n; at += page) yield Array.from({ length: Math.min(page, n - at) }, (_, i) => at + i);
  }
  for (const [n, window, page] of [[48, 32, 5], [48, 32, 5000], [1000, 32, 7], [10_000, 4, 333], [0, 32, 10]] as const) {
    let size = 0;
    const got: number[][] = [];
    for await (const p of autoPartitionStream(pages(n, page), window, (s) => (size = s))) got.push(p);
    const expected = n <= window * AUTO_MAX ? autoPartitionSize(n, window) : AUTO_MAX;
    assert.equal(size, expected, `${n} items, window ${window}`);
    assert.deepEqual(got, splitIntoPartitions(Array.from({ length: n }, (_, i) => i), expected), `${n} items, window ${window}: same order, no item twice`);
  }
});
