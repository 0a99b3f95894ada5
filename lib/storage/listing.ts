/**
 * Listing a container page by page, filtered by prefix and extension, as ETag-normalised references.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { storageError } from './clients';

export interface BlobRef {
  name: string;
  etag: string;
  size: number;
  /** Content-MD5 (base64) when the storage service keeps one: the same bytes uploaded again have it too. */
  md5?: string;
  /** When a continuous job's arrival landed (its last-modified time or the event's time). */
  landed?: string;
  /** A frame of a video blob (the plan gives each frame a job takes an item of its own). */
  frame?: FrameRef;
  /** A video the plan could not read: the item fails with this code instead of being inferred. */
  probeError?: { code: string; message: string };
}

/** Where a frame is in its video (lib/video): what decoding it exactly needs. */
export interface FrameRef {
  /** Its index in presentation order (what a sequential read, cv2.VideoCapture, numbers it). */
  index: number;
  /** Its presentation timestamp (stream time-base units) and time from the first frame (seconds). */
  pts: number;
  time: number;
  /** The keyframe decoding must start from, in seconds of stream time. */
  seekS: number;
  width: number;
  height: number;
  /** The video blob's size (the item's own size counts it once, on the first frame taken). */
  blobSize: number;
}

/** A listed or fetched Content-MD5 as base64 (absent when the service keeps none). */
export function md5Of(v: Uint8Array | undefined): string | undefined {
  return v && v.length > 0 ? Buffer.from(v).toString('base64') : undefined;
}

export interface ListOptions {
  prefix?: string;
  /** Lower-case extensions with the dot, e.g. ['.jpg']; matched case-insensitively. Empty: all blobs. */
  extensions?: readonly string[];
  /** Stop after this many matching blobs. */
  maxItems?: number;
  /** Only blobs last modified at or after this time (ISO 8601). */
  modifiedSince?: string;
  /** Only blobs last modified before this time (ISO 8601). */
  modifiedBefore?: string;
  /** Page size asked of the service (it may return fewer; Azure caps at 5000). */
  pageSize?: number;
  continuationToken?: string;
}

export interface BlobPage {
  items: BlobRef[];
  /** Token to resume listing after this page; undefined on the last page. */
  continuationToken: string | undefined;
}

/** ETags without surrounding quotes: listings and downloads quote them differently. */
export function normalizeEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^"(.*)"$/, '$1');
}

export function matchesExtension(name: string, extensions: readonly string[] | undefined): boolean {
  if (extensions === undefined || extensions.length === 0) return true;
  const lower = name.toLowerCase();
  return extensions.some((e) => lower.endsWith(e.toLowerCase()));
}

/** Whether a last-modified time lies in [modifiedSince, modifiedBefore) (true without filters). */
export function timeFilter(opts: Pick<ListOptions, 'modifiedSince' | 'modifiedBefore'>): (lastModified: Date | undefined) => boolean {
  const since = opts.modifiedSince ? Date.parse(opts.modifiedSince) : undefined;
  const before = opts.modifiedBefore ? Date.parse(opts.modifiedBefore) : undefined;
  if (since === undefined && before === undefined) return () => true;
  return (t) => t !== undefined && (since === undefined || t.getTime() >= since) && (before === undefined || t.getTime() < before);
}

/**
 * Lists a container page by page, filtered by prefix and extension. Directory placeholders of
 * hierarchical-namespace accounts (metadata hdi_isfolder) are skipped.
 */
export async function* listBlobPages(container: ContainerClient, opts: ListOptions = {}): AsyncGenerator<BlobPage> {
  const max = opts.maxItems ?? Number.POSITIVE_INFINITY;
  const inTime = timeFilter(opts);
  let seen = 0;
  const iter = container
    .listBlobsFlat({ prefix: opts.prefix ?? '', includeMetadata: true })
    .byPage({ maxPageSize: opts.pageSize ?? 5000, ...(opts.continuationToken ? { continuationToken: opts.continuationToken } : {}) });
  while (seen < max) {
    let next;
    try {
      next = await iter.next();
    } catch (err) {
      throw storageError(err, 'listing blobs', container.containerName);
    }
    if (next.done) return;
    const page = next.value;
    const items: BlobRef[] = [];
    for (const b of page.segment.blobItems) {
      if (b.metadata?.['hdi_isfolder'] === 'true' || b.name.endsWith('/')) continue;
      if (!matchesExtension(b.name, opts.extensions)) continue;
      if (!inTime(b.properties.lastModified)) continue;
      const md5 = md5Of(b.properties.contentMD5);
      items.push({ name: b.name, etag: normalizeEtag(b.properties.etag), size: b.properties.contentLength ?? 0, ...(md5 ? { md5 } : {}) });
      if (++seen >= max) break;
    }
    const token = page.continuationToken === '' ? undefined : page.continuationToken;
    yield { items, continuationToken: seen >= max ? undefined : token };
    if (token === undefined) return;
  }
}

/** Convenience for small containers and tests: every matching blob. */
export async function listAllBlobs(container: ContainerClient, opts: ListOptions = {}): Promise<BlobRef[]> {
  const all: BlobRef[] = [];
  for await (const page of listBlobPages(container, opts)) all.push(...page.items);
  return all;
}

