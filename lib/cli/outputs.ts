import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
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

/** A file that could not be written, and why. */
export interface DownloadFailure {
  blob: string;
  reason: string;
}

/**
 * A real folder at every step from root to `dir` (created where missing); a symbolic link or a
 * file on the way is refused, so nothing is ever written outside root through a link.
 */
async function ensureRealDir(root: string, dir: string): Promise<void> {
  let at = root;
  for (const seg of relative(root, dir).split(sep).filter(Boolean)) {
    at = join(at, seg);
    const st = await lstat(at).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
    if (!st) await mkdir(at).catch((err: NodeJS.ErrnoException) => (err.code === 'EEXIST' ? undefined : Promise.reject(err)));
    else if (st.isSymbolicLink()) throw new Error(`'${relative(root, at)}' is a symbolic link; nothing is written through one`);
    else if (!st.isDirectory()) throw new Error(`'${relative(root, at)}' is a file, and this name needs it to be a folder`);
  }
}

/**
 * Copies a job's outputs (everything under its prefix but the _plan/ and _parts/ working files)
 * to a local folder, keeping their relative paths, so report.html opens with its overlays. Names
 * too long for the local file system are shortened and listed. Nothing is written outside `dir`:
 * no symbolic link inside it is followed (the file itself is opened with O_NOFOLLOW). A file that
 * cannot be written (a link, a name that is a file and a folder, a full disk) is listed with its
 * reason and the others are still downloaded.
 */
export async function downloadOutputs(container: ContainerClient, prefix: string, dir: string): Promise<{ files: number; renamed: [string, string][]; failed: DownloadFailure[] }> {
  const root = resolve(dir);
  await mkdir(root, { recursive: true });
  let files = 0;
  const renamed: [string, string][] = [];
  const failed: DownloadFailure[] = [];
  for (const b of await listAllBlobs(container, { prefix })) {
    const rel = b.name.slice(prefix.length);
    if (rel.startsWith('_plan/') || rel.startsWith('_parts/')) continue;
    const segs = rel.split('/').map(localSegment);
    const file = resolve(join(root, ...segs));
    if (!file.startsWith(root + sep)) {
      failed.push({ blob: b.name, reason: 'its name leads outside the folder' });
      continue;
    }
    const got = await readBlob(container, b.name);
    if (!got) continue;
    try {
      await ensureRealDir(root, dirname(file));
      const fh = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o644);
      try {
        await fh.writeFile(got.data);
      } finally {
        await fh.close();
      }
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const reason = e.code === 'ELOOP' ? `'${segs.join('/')}' is a symbolic link; nothing is written through one` : e.code === 'EISDIR' ? `'${segs.join('/')}' is a folder, and this name needs it to be a file` : e.message;
      failed.push({ blob: b.name, reason });
      continue;
    }
    if (segs.join('/') !== rel) renamed.push([rel, segs.join('/')]);
    files++;
  }
  return { files, renamed, failed };
}
