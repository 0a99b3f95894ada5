/**
 * How a plan lays its images out in partitions (pure; no I/O): shared by the orchestrator, which
 * counts a failed partition's images from it, and the continuous collect, which records it.
 */
/**
 * Where a run of partitions starts: partition `n` holds images from `first` on, and each partition
 * after it in the run holds `partitionSize` images until the next run or the plan's end. A batch
 * job's plan is one run from {0, 0}; each batch of a continuous job starts a run (its first
 * partition follows a partial one), as the plan records it.
 */
export interface Segment {
  n: number;
  first: number;
}

/** The segments a new batch adds: none when the previous run ended on a full partition (the layout is unchanged). */
export function addSegment(layout: readonly Segment[] | undefined, partitions: number, total: number, size: number): Segment[] {
  const runs = layout && layout.length ? [...layout] : [{ n: 0, first: 0 }];
  const last = runs[runs.length - 1]!;
  if (last.first + (partitions - last.n) * size !== total) runs.push({ n: partitions, first: total });
  return runs;
}

/** Images in partition n as the plan laid them out (a continuous job's partial batches included). */
export function partitionImages(n: number, plan: { total: number; layout?: readonly Segment[] }, size: number): number {
  const runs = plan.layout && plan.layout.length ? plan.layout : [{ n: 0, first: 0 }];
  let i = runs.length - 1;
  while (i > 0 && runs[i]!.n > n) i--;
  const run = runs[i]!;
  const end = i + 1 < runs.length ? runs[i + 1]!.first : plan.total;
  const start = run.first + (n - run.n) * size;
  return Math.max(0, Math.min(size, end - start));
}

/** The segments still needed once every partition below `next` has settled. */
export function pruneSegments(layout: readonly Segment[] | undefined, next: number): Segment[] | undefined {
  if (!layout || layout.length === 0) return undefined;
  let i = layout.length - 1;
  while (i > 0 && layout[i]!.n > next) i--;
  const kept = layout.slice(i);
  return kept.length === 1 && kept[0]!.n === 0 && kept[0]!.first === 0 ? undefined : kept;
}
