import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { listAllBlobs, readBlob } from '../storage';

/** Longest file or folder name most local file systems take, in bytes (ext4, APFS, NTFS: 255). */
const MAX_SEGMENT_BYTES = 255;

/**
 * A path segment that fits the local file system: a name over MAX_SEGMENT_BYTES keeps a readable
 * head and its extension, with a hash of the whole name between (so distinct names stay distinct).
 */
export function localSegment(seg: string): string {
  if (Buffer.byteLength(seg) <= MAX_SEGMENT_BYTES) return seg;
  const dot = seg.lastIndexOf('.');
  const ext = dot > 0 && seg.length - dot <= 16 ? seg.slice(dot) : '';
  const hash = createHash('sha256').update(seg).digest('hex').slice(0, 16);
  let head = seg.slice(0, seg.length - ext.length);
  while (Buffer.byteLength(`${head}~${hash}${ext}`) > MAX_SEGMENT_BYTES) head = head.slice(0, -1);
  return `${head}~${hash}${ext}`;
}

/**
 * Copies a job's outputs (everything under its prefix but the _plan/ and _parts/ working files)
 * to a local folder, keeping their relative paths, so report.html opens with its overlays. Names
 * too long for the local file system are shortened and listed.
 */
export async function downloadOutputs(container: ContainerClient, prefix: string, dir: string): Promise<{ files: number; renamed: [string, string][] }> {
  const root = resolve(dir);
  let files = 0;
  const renamed: [string, string][] = [];
  for (const b of await listAllBlobs(container, { prefix })) {
    const rel = b.name.slice(prefix.length);
    if (rel.startsWith('_plan/') || rel.startsWith('_parts/')) continue;
    const got = await readBlob(container, b.name);
    if (!got) continue;
    const segs = rel.split('/').map(localSegment);
    const file = resolve(join(root, ...segs));
    if (!file.startsWith(root + sep)) continue;
    if (segs.join('/') !== rel) renamed.push([rel, segs.join('/')]);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, got.data);
    files++;
  }
  return { files, renamed };
}
