/**
 * Put Block From URL for the embedded Azurite. Azurite answers it with 501 Not Implemented; Azure
 * Storage implements it, and finalize composes the job's files with it (lib/storage/compose.ts).
 * This fills the gap inside the emulator process, with Azurite's own stores: the source range is
 * read from the source blob's extents and appended as the new block's extent, so the bytes move
 * inside the storage process, as they do inside Azure Storage. It answers as Azure does
 * (https://learn.microsoft.com/rest/api/storageservices/put-block-from-url):
 * - the source must be readable, at this moment, with the authorization the request brings: the
 *   SAS its URL carries or the bearer token in x-ms-copy-source-authorization, checked on every
 *   request by reading the source's metadata with it, so an expired or revoked SAS, one for
 *   another container or without read permission, or no authorization on a private container, is
 *   refused (403/404 CannotVerifyCopySource), never remembered from an earlier request;
 * - the source lies on this storage endpoint (the same host, so the same account); another host is
 *   refused, never served from the local account;
 * - x-ms-source-if-match / -if-none-match / -if-modified-since / -if-unmodified-since are
 *   evaluated on the source (412 SourceConditionNotMet), x-ms-source-content-md5 on the bytes read
 *   (400 Md5Mismatch);
 * - x-ms-source-range follows the HTTP range syntax: `bytes=N-M`, or `bytes=N-` to the end; a
 *   range that starts past the end is 416 InvalidRange.
 *
 * Loaded in the Azurite child process (process.ts) before Azurite starts.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';

interface ExtentChunk {
  id: string;
  offset: number;
  count: number;
}

interface AzuriteBlob {
  isCommitted?: boolean;
  properties: { contentLength?: number; etag?: string; lastModified?: Date | string };
  persistency?: ExtentChunk;
  committedBlocksInOrder?: { persistency: ExtentChunk }[];
}

interface HandlerThis {
  metadataStore: {
    downloadBlob(context: unknown, account: string, container: string, blob: string, snapshot?: string): Promise<AzuriteBlob>;
    stageBlock(context: unknown, block: unknown, lease?: unknown): Promise<void>;
    checkContainerExist(context: unknown, account: string, container: string): Promise<void>;
  };
  extentStore: {
    readExtent(chunk: ExtentChunk | undefined, contextId?: string): Promise<NodeJS.ReadableStream>;
    readExtents(chunks: ExtentChunk[], offset: number, count: number, contextId?: string): Promise<NodeJS.ReadableStream>;
    appendExtent(data: NodeJS.ReadableStream | Buffer, contextId?: string): Promise<ExtentChunk>;
  };
  validateBlockId(blockId: string, ctx: unknown): void;
}

/** The time an HTTP date names, or undefined when it names none. */
function httpDate(v: unknown): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const t = v instanceof Date ? v.getTime() : Date.parse(String(v));
  return Number.isNaN(t) ? undefined : t;
}

const unquote = (e: string): string => e.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');

/** Reads the source's metadata with the request's own authorization (as Azurite checks copy sources). */
async function checkSourceAccess(sourceUrl: string, authorization: string | undefined): Promise<{ status: number; code?: string; message?: string }> {
  const url = new URL(sourceUrl);
  url.searchParams.set('comp', 'metadata');
  const res = await fetch(url, { method: 'GET', headers: { 'x-ms-version': '2021-10-04', ...(authorization ? { authorization } : {}) } });
  const text = await res.text();
  const code = res.headers.get('x-ms-error-code') ?? undefined;
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1]?.replace(/\n+/g, ' ');
  return { status: res.status, ...(code ? { code } : {}), ...(message ? { message } : {}) };
}

/** Replaces BlockBlobHandler.stageBlockFromURL (Azurite's throws NotImplemented) with a working one. */
export function installPutBlockFromUrl(azuriteRoot: string): void {
  const dist = join(azuriteRoot, 'dist', 'src', 'blob');
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { default: BlockBlobHandler } = require(join(dist, 'handlers', 'BlockBlobHandler.js')) as { default: { prototype: Record<string, unknown> } };
  const { default: BlobStorageContext } = require(join(dist, 'context', 'BlobStorageContext.js')) as {
    default: new (ctx: unknown) => { account: string; container: string; blob: string; contextId: string; startTime: Date; disableProductStyleUrl: boolean; request: { getHeader(name: string): string | undefined } };
  };
  const { extractStoragePartsFromPath } = require(join(dist, 'middlewares', 'blobStorageContext.middleware.js')) as { extractStoragePartsFromPath: (host: string, path: string, disable: boolean) => [string, string, string] };
  const { default: Errors } = require(join(dist, 'errors', 'StorageErrorFactory.js')) as { default: Record<string, (...a: unknown[]) => Error> };
  const { default: StorageError } = require(join(dist, 'errors', 'StorageError.js')) as { default: new (status: number, code: string, message: string, requestId: string) => Error };
  const { BLOB_API_VERSION } = require(join(dist, 'utils', 'constants.js')) as { BLOB_API_VERSION: string };
  /* eslint-enable @typescript-eslint/no-require-imports */

  interface Options {
    sourceRange?: string;
    sourceContentMD5?: Uint8Array;
    copySourceAuthorization?: string;
    sourceModifiedAccessConditions?: { sourceIfMatch?: string; sourceIfNoneMatch?: string; sourceIfModifiedSince?: Date | string; sourceIfUnmodifiedSince?: Date | string };
    leaseAccessConditions?: unknown;
    requestId?: string;
  }

  BlockBlobHandler.prototype['stageBlockFromURL'] = async function stageBlockFromURL(this: HandlerThis, blockId: string, _contentLength: number, sourceUrl: string, options: Options, context: { contextId?: string }) {
    const ctx = new BlobStorageContext(context);
    const id = ctx.contextId;
    this.validateBlockId(blockId, ctx);
    await this.metadataStore.checkContainerExist(context, ctx.account, ctx.container);
    let url: URL;
    try {
      url = new URL(sourceUrl);
    } catch {
      throw Errors['getCannotVerifyCopySource']!(id, 400, 'The source URL is not a URL');
    }
    // Only this endpoint's own blobs: a URL naming another host is not read from this account.
    const here = ctx.request.getHeader('host') ?? '';
    if (url.host !== here) throw Errors['getCannotVerifyCopySource']!(id, 404, `The source ${url.host} is not this storage endpoint (${here}); the embedded emulator stages only from its own account`);
    const [account, container, blob] = extractStoragePartsFromPath(url.hostname, url.pathname, ctx.disableProductStyleUrl);
    if (account !== ctx.account || !container || !blob) throw Errors['getCannotVerifyCopySource']!(id, 404, 'The source must be a blob of this account');

    // Authorization, now: the source's SAS (in its URL), a bearer token, or a public container.
    const auth = options.copySourceAuthorization;
    if (auth !== undefined && !/^Bearer\s+\S+$/i.test(auth)) throw Errors['getCannotVerifyCopySource']!(id, 400, 'x-ms-copy-source-authorization must be "Bearer <token>"');
    // The check goes over HTTP to this endpoint's own address (as Azurite checks copy sources); a
    // failure of that request itself is the service's (503, retryable), not a refusal of the source.
    const access = await checkSourceAccess(sourceUrl, auth).catch((err: unknown) => ({ status: 503, message: `the source could not be checked: ${(err as Error).message}` }));
    if (access.status >= 500) throw new StorageError(503, 'ServerBusy', access.message ?? 'The source could not be checked; retry.', id);
    if (access.status !== 200) {
      throw Errors['getCannotVerifyCopySource']!(id, access.status === 404 ? 404 : 403, access.message ?? (access.status === 404 ? 'The specified resource does not exist.' : 'The source is not readable with the authorization given'));
    }

    const source = await this.metadataStore.downloadBlob(context, account, container, blob, url.searchParams.get('snapshot') ?? '');
    if (source.isCommitted === false) throw Errors['getBlobNotFound']!(id);

    // Conditions on the source (412 SourceConditionNotMet, as Azure answers).
    const cond = options.sourceModifiedAccessConditions ?? {};
    const etag = unquote(source.properties.etag ?? '');
    const modified = httpDate(source.properties.lastModified) ?? 0;
    const notMet = (why: string): Error => new StorageError(412, 'SourceConditionNotMet', `The source condition specified using HTTP conditional header(s) is not met (${why}).`, id);
    if (cond.sourceIfMatch !== undefined && cond.sourceIfMatch !== '*' && unquote(cond.sourceIfMatch) !== etag) throw notMet('x-ms-source-if-match');
    if (cond.sourceIfNoneMatch !== undefined && (cond.sourceIfNoneMatch === '*' || unquote(cond.sourceIfNoneMatch) === etag)) throw notMet('x-ms-source-if-none-match');
    const since = httpDate(cond.sourceIfModifiedSince);
    if (since !== undefined && Math.floor(modified / 1000) <= Math.floor(since / 1000)) throw notMet('x-ms-source-if-modified-since');
    const unmodified = httpDate(cond.sourceIfUnmodifiedSince);
    if (unmodified !== undefined && Math.floor(modified / 1000) > Math.floor(unmodified / 1000)) throw notMet('x-ms-source-if-unmodified-since');

    // The range, as HTTP defines it: bytes=N-M, or bytes=N- to the end.
    const size = source.properties.contentLength ?? 0;
    let start = 0;
    let end = size - 1;
    if (options.sourceRange !== undefined && options.sourceRange !== '') {
      const range = /^bytes=(\d+)-(\d*)$/.exec(options.sourceRange);
      if (!range) throw new StorageError(400, 'InvalidHeaderValue', `The value for x-ms-source-range (${options.sourceRange}) is not a byte range.`, id);
      start = Number(range[1]);
      end = range[2] === '' ? size - 1 : Math.min(Number(range[2]), size - 1);
      if (start > end) throw new StorageError(416, 'InvalidRange', `The range specified is invalid for the current size of the resource (bytes */${size}).`, id);
    }
    const count = end - start + 1;
    const blocks = source.committedBlocksInOrder;
    const stream =
      blocks && blocks.length > 0
        ? await this.extentStore.readExtents(
            blocks.map((b) => b.persistency),
            start,
            count,
            id,
          )
        : await this.extentStore.readExtent(source.persistency ? { id: source.persistency.id, offset: source.persistency.offset + start, count } : undefined, id);
    let data: NodeJS.ReadableStream | Buffer = stream;
    if (options.sourceContentMD5 !== undefined && options.sourceContentMD5.length > 0) {
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as unknown as Uint8Array));
      const bytes = Buffer.concat(chunks);
      const got = createHash('md5').update(bytes).digest();
      if (!got.equals(Buffer.from(options.sourceContentMD5))) throw Errors['getMd5Mismatch']!(id, Buffer.from(options.sourceContentMD5).toString('base64'), got.toString('base64'));
      data = bytes;
    }
    const persistency = await this.extentStore.appendExtent(data, id);
    if (persistency.count !== count) throw Errors['getInvalidOperation']!(id, `read ${persistency.count} bytes of the source range, expected ${count}`);
    await this.metadataStore.stageBlock(context, { accountName: ctx.account, containerName: ctx.container, blobName: ctx.blob, isCommitted: false, name: blockId, size: count, persistency }, options.leaseAccessConditions);
    return { statusCode: 201, requestId: id, version: BLOB_API_VERSION, date: ctx.startTime, isServerEncrypted: true, clientRequestId: options.requestId };
  };
}
