/**
 * Reading and writing whole blobs: bytes, JSON, with content types and conditional writes.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { LakeInferError, restErrorCode, restStatus } from '../util/errors';
import { storageError } from './clients';
import { normalizeEtag } from './listing';
import { assertAddressable, contentTypeFor } from './names';

export async function ensureContainer(container: ContainerClient): Promise<void> {
  try {
    await container.createIfNotExists();
  } catch (err) {
    throw storageError(err, 'creating container', container.containerName);
  }
}

export interface WriteOptions {
  contentType?: string;
  metadata?: Record<string, string>;
  /** Only write when no blob exists with this name (returns false instead of overwriting). */
  ifNotExists?: boolean;
  /** Only write over the blob with this ETag (returns false when it changed). */
  ifMatch?: string;
  /** Stops the write, its retries included. */
  abortSignal?: AbortSignal;
}

/**
 * Writes a whole blob with its content type. Returns its new ETag, or false when ifNotExists (or
 * ifMatch) and the blob was not in the state asked for.
 */
export async function writeBlob(container: ContainerClient, name: string, body: string | Buffer, opts: WriteOptions = {}): Promise<string | false> {
  assertAddressable(name);
  const data = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  try {
    const res = await container.getBlockBlobClient(name).uploadData(data, {
      blobHTTPHeaders: { blobContentType: opts.contentType ?? contentTypeFor(name) },
      ...(opts.metadata ? { metadata: opts.metadata } : {}),
      ...(opts.abortSignal ? { abortSignal: opts.abortSignal } : {}),
      ...(opts.ifNotExists ? { conditions: { ifNoneMatch: '*' } } : opts.ifMatch ? { conditions: { ifMatch: opts.ifMatch } } : {}),
    });
    return normalizeEtag(res.etag) || '(no etag)';
  } catch (err) {
    if ((opts.ifNotExists || opts.ifMatch) && (restStatus(err) === 409 || restStatus(err) === 412)) return false;
    throw storageError(err, 'writing blob', `${container.containerName}/${name}`);
  }
}

export async function writeJson(container: ContainerClient, name: string, value: unknown, opts: WriteOptions = {}): Promise<string | false> {
  return writeBlob(container, name, JSON.stringify(value), opts);
}

/** Reads a download stream into one buffer; undefined as soon as it passes `maxBytes`. */
export async function collectStream(body: NodeJS.ReadableStream, maxBytes = Number.POSITIVE_INFINITY): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > maxBytes) return undefined;
    chunks.push(b);
  }
  return Buffer.concat(chunks, size);
}

/** Downloads a whole blob with its ETag, in one request; undefined when it does not exist. */
export async function readBlob(container: ContainerClient, name: string): Promise<{ data: Buffer; etag: string } | undefined> {
  assertAddressable(name);
  try {
    const res = await container.getBlobClient(name).download();
    return { data: (await collectStream(res.readableStreamBody!))!, etag: normalizeEtag(res.etag) };
  } catch (err) {
    if (restStatus(err) === 404 && restErrorCode(err) !== 'ContainerNotFound') return undefined;
    throw storageError(err, 'reading blob', `${container.containerName}/${name}`);
  }
}

export async function readJson<T>(container: ContainerClient, name: string): Promise<T | undefined> {
  const got = await readBlob(container, name);
  if (got === undefined) return undefined;
  try {
    return JSON.parse(got.data.toString('utf8')) as T;
  } catch (err) {
    throw new LakeInferError('PlanInvalid', `blob '${container.containerName}/${name}' is not valid JSON`, { cause: err });
  }
}


/**
 * Changes a JSON blob with optimistic concurrency: read it with its ETag (one download), write the
 * changed value only over that version (or only if there is none), again on a conflict, at most
 * `maxTries` times (default 21). A body that is not JSON counts as absent (it is overwritten at
 * its version). Returns the value as written.
 */
export async function updateJson<T>(container: ContainerClient, name: string, change: (current: T | undefined) => T, opts: { what: string; maxTries?: number }): Promise<T> {
  assertAddressable(name);
  const blob = container.getBlockBlobClient(name);
  for (let tries = 1; ; tries++) {
    let current: T | undefined;
    let etag: string | undefined;
    try {
      const res = await blob.download();
      const body = await collectStream(res.readableStreamBody!);
      etag = res.etag;
      try {
        current = JSON.parse(body!.toString('utf8')) as T;
      } catch {
        current = undefined;
      }
    } catch (err) {
      if (restStatus(err) !== 404) throw storageError(err, `reading ${opts.what}`, `${container.containerName}/${name}`);
    }
    const next = change(current);
    const text = JSON.stringify(next);
    try {
      await blob.upload(text, Buffer.byteLength(text), {
        blobHTTPHeaders: { blobContentType: 'application/json; charset=utf-8' },
        conditions: etag === undefined ? { ifNoneMatch: '*' } : { ifMatch: etag },
      });
      return next;
    } catch (err) {
      const status = restStatus(err);
      if ((status === 409 || status === 412) && tries < (opts.maxTries ?? 21)) continue;
      throw storageError(err, `writing ${opts.what}`, `${container.containerName}/${name}`);
    }
  }
}

/** A blob as a file read by ranges (what hyparquet reads): its size, and slices downloaded on demand. */
export async function rangedBlob(container: ContainerClient, name: string, what: string): Promise<{ byteLength: number; slice(start: number, end?: number): Promise<ArrayBuffer> }> {
  const client = container.getBlobClient(name);
  let byteLength: number;
  try {
    byteLength = (await client.getProperties()).contentLength ?? 0;
  } catch (err) {
    throw storageError(err, what, `${container.containerName}/${name}`);
  }
  return {
    byteLength,
    slice: async (start: number, end?: number): Promise<ArrayBuffer> => {
      const buf = await client.downloadToBuffer(start, (end ?? byteLength) - start);
      return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
    },
  };
}
