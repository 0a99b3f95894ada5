/**
 * `lakeinfer upload`: a local folder into a container, in parallel, skipping files whose blob
 * already has the same MD5 (uploads set Content-MD5, so a second run sends nothing unchanged).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { relative, sep } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { mapLimit } from '../util/concurrency';
import { filesUnder } from '../util/files';

export interface UploadProgress {
  files: number;
  done: number;
  uploaded: number;
  skipped: number;
  bytes: number;
}

export interface UploadOptions {
  prefix?: string;
  concurrency?: number;
  /** Only these extensions (lower case, with the dot); all files when absent. */
  extensions?: string[];
  onProgress?: (p: UploadProgress) => void;
}

async function md5(path: string): Promise<Buffer> {
  const h = createHash('md5');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest();
}

/** Blob name for a file: the prefix then its path under `dir` with '/' separators. */
export function blobNameFor(dir: string, file: string, prefix = ''): string {
  return `${prefix}${relative(dir, file).split(sep).join('/')}`;
}

export async function uploadDirectory(container: ContainerClient, dir: string, opts: UploadOptions = {}): Promise<UploadProgress> {
  const prefix = opts.prefix ?? '';
  const exts = opts.extensions?.map((e) => e.toLowerCase());
  const list: string[] = [];
  for await (const f of filesUnder(dir)) if (!exts || exts.some((e) => f.toLowerCase().endsWith(e))) list.push(f);
  list.sort();
  // What is there already: one listing of the prefix, not a request per file.
  const existing = new Map<string, string>();
  if (await container.exists()) {
    for await (const b of container.listBlobsFlat({ prefix })) if (b.properties.contentMD5) existing.set(b.name, Buffer.from(b.properties.contentMD5).toString('base64'));
  } else {
    await container.create();
  }
  const p: UploadProgress = { files: list.length, done: 0, uploaded: 0, skipped: 0, bytes: 0 };
  opts.onProgress?.({ ...p });
  await mapLimit(list, opts.concurrency ?? 16, async (file) => {
    const name = blobNameFor(dir, file, prefix);
    const digest = await md5(file);
    if (existing.get(name) === digest.toString('base64')) {
      p.skipped++;
    } else {
      const size = (await stat(file)).size;
      await container.getBlockBlobClient(name).uploadFile(file, { blobHTTPHeaders: { blobContentMD5: digest }, concurrency: 4 });
      p.uploaded++;
      p.bytes += size;
    }
    p.done++;
    opts.onProgress?.({ ...p });
  });
  return p;
}

/** A one-line progress bar: `[#########.........] 120/500 files, 3 skipped, 34.1 MB`. */
export function progressBar(p: UploadProgress, width = 30): string {
  const frac = p.files === 0 ? 1 : p.done / p.files;
  const fill = Math.round(frac * width);
  return `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${p.done}/${p.files} files, ${p.skipped} unchanged, ${(p.bytes / 1e6).toFixed(1)} MB sent`;
}
