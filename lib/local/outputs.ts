import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { listAllBlobs, readBlob } from '../storage';

/**
 * Copies a job's outputs (everything under its prefix but the _plan/ and _parts/ working files)
 * to a local folder, keeping their relative paths, so report.html opens with its overlays.
 */
export async function downloadOutputs(container: ContainerClient, prefix: string, dir: string): Promise<number> {
  const root = resolve(dir);
  let n = 0;
  for (const b of await listAllBlobs(container, { prefix })) {
    const rel = b.name.slice(prefix.length);
    if (rel.startsWith('_plan/') || rel.startsWith('_parts/')) continue;
    const got = await readBlob(container, b.name);
    if (!got) continue;
    const file = resolve(join(root, ...rel.split('/')));
    if (!file.startsWith(root + sep)) continue;
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, got.data);
    n++;
  }
  return n;
}
