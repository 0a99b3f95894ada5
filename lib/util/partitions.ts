/**
 * Splitting a list, or a stream of pages, into consecutive partitions of a fixed size. Pure.
 */

/** Splits items into consecutive partitions of at most `size` items (the last may be smaller). */
export function splitIntoPartitions<T>(items: readonly T[], size: number): T[][] {
  assertPartitionSize(size);
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Re-chunks a stream of pages (whatever size the service returned) into partitions of exactly
 * `size` items, the last one possibly smaller. Memory stays at one partition plus one page.
 */
export async function* partitionStream<T>(pages: AsyncIterable<readonly T[]>, size: number): AsyncGenerator<T[]> {
  assertPartitionSize(size);
  let current: T[] = [];
  for await (const page of pages) {
    for (const item of page) {
      current.push(item);
      if (current.length === size) {
        yield current;
        current = [];
      }
    }
  }
  if (current.length > 0) yield current;
}

function assertPartitionSize(size: number): void {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`partition size must be a positive integer, got ${size}`);
}

/**
 * 'auto' partition sizes: a job of `total` items in a window of `window` partitions gets
 * min(window, ceil(total / AUTO_MIN)) partitions of equal size, at most AUTO_MAX items each. So a
 * 48-image job is 12 partitions of 4 (both activity processes of the local host, or every instance
 * of the window on Azure, busy from the first partition and to the last), 1,000 images are 32 of
 * 32, and from window x AUTO_MAX items on every partition holds AUTO_MAX. Measured with
 * `npm run bench` on 2 cores: one partition of 64 (the old default) ran a 48-image PP-OCRv4 job on
 * one core (6.7 images/s warm); 6 partitions of 8: 8.1; 8 partitions of 6: 9.4; a 24-image
 * YOLACT-shaped job in 3 partitions of 8: 0.85, in 8 of 3: 1.06 (the last partitions balance).
 * Video frames take `min` = AUTO_MAX: a partition decodes from the keyframe before its first frame,
 * so small partitions of a video decode its groups of pictures again and again (a 48-frame clip,
 * GOP 30, in 12 partitions of 4: 4.4 frames/s against 7.9 images/s for its frames as JPEGs).
 */
export const AUTO_MIN = 4;
export const AUTO_MAX = 64;

export function autoPartitionSize(total: number, window: number, min: number = AUTO_MIN): number {
  if (total <= 0) return AUTO_MAX;
  const partitions = Math.max(1, Math.min(Math.max(1, Math.floor(window)), Math.ceil(total / Math.max(1, min))));
  return Math.min(AUTO_MAX, Math.max(1, Math.ceil(total / partitions)));
}

/**
 * partitionStream with the size decided from the stream itself: items are held until either the
 * stream ends (the size then comes from the count) or `window` x AUTO_MAX items have come (every
 * partition holds AUTO_MAX). Memory: at most that many items. `sized` hears the size once chosen.
 */
export async function* autoPartitionStream<T>(pages: AsyncIterable<readonly T[]>, window: number, sized: (size: number) => void, min: number = AUTO_MIN): AsyncGenerator<T[]> {
  const enough = Math.max(1, Math.floor(window)) * AUTO_MAX;
  const held: T[] = [];
  const it = pages[Symbol.asyncIterator]();
  let ended = false;
  while (held.length < enough) {
    const next = await it.next();
    if (next.done) {
      ended = true;
      break;
    }
    held.push(...next.value);
  }
  const size = ended ? autoPartitionSize(held.length, window, min) : AUTO_MAX;
  sized(size);
  const rest = (async function* () {
    yield held;
    if (!ended) for (let next = await it.next(); !next.done; next = await it.next()) yield next.value;
  })();
  yield* partitionStream(rest, size);
}
