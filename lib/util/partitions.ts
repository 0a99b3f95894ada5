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
