/**
 * Put Block From URL for the embedded Azurite. Azurite answers it with 501 Not Implemented; Azure
 * Storage implements it, and finalize composes the job's files with it (lib/storage/compose.ts).
 * This fills the gap inside the emulator process, with Azurite's own stores: the source range is
 * read from the source blob's extents and appended as the new block's extent, so the bytes move
 * inside the storage process, as they do inside Azure Storage. As on Azure, the source must be
 * readable with the SAS its URL carries (checked as Azurite checks copy sources) and lie in the same
 * account; x-ms-source-range selects the bytes.
 *
 * Loaded in the Azurite child process (process.ts) before Azurite starts.
 */
import { join } from 'node:path';

interface ExtentChunk {
  id: string;
  offset: number;
  count: number;
}

interface AzuriteBlob {
  isCommitted?: boolean;
  properties: { contentLength?: number };
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

/** Replaces BlockBlobHandler.stageBlockFromURL (Azurite's throws NotImplemented) with a working one. */
export function installPutBlockFromUrl(azuriteRoot: string): void {
  const validated = new Set<string>();
  const dist = join(azuriteRoot, 'dist', 'src', 'blob');
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { default: BlockBlobHandler } = require(join(dist, 'handlers', 'BlockBlobHandler.js')) as { default: { prototype: Record<string, unknown> } };
  const { default: BlobHandler } = require(join(dist, 'handlers', 'BlobHandler.js')) as { default: { prototype: Record<string, (...a: unknown[]) => unknown> } };
  const { default: BlobStorageContext } = require(join(dist, 'context', 'BlobStorageContext.js')) as { default: new (ctx: unknown) => { account: string; container: string; blob: string; contextId: string; startTime: Date; disableProductStyleUrl: boolean } };
  const { extractStoragePartsFromPath } = require(join(dist, 'middlewares', 'blobStorageContext.middleware.js')) as { extractStoragePartsFromPath: (host: string, path: string, disable: boolean) => [string, string, string] };
  const { default: Errors } = require(join(dist, 'errors', 'StorageErrorFactory.js')) as { default: Record<string, (...a: unknown[]) => Error> };
  const { BLOB_API_VERSION } = require(join(dist, 'utils', 'constants.js')) as { BLOB_API_VERSION: string };
  /* eslint-enable @typescript-eslint/no-require-imports */

  BlockBlobHandler.prototype['stageBlockFromURL'] = async function stageBlockFromURL(this: HandlerThis, blockId: string, _contentLength: number, sourceUrl: string, options: { sourceRange?: string; leaseAccessConditions?: unknown; requestId?: string }, context: { contextId?: string }) {
    const ctx = new BlobStorageContext(context);
    this.validateBlockId(blockId, ctx);
    await this.metadataStore.checkContainerExist(context, ctx.account, ctx.container);
    const url = new URL(sourceUrl);
    const [account, container, blob] = extractStoragePartsFromPath(url.hostname, url.pathname, ctx.disableProductStyleUrl);
    if (account !== ctx.account || !container || !blob) throw Errors['getCannotVerifyCopySource']!(ctx.contextId, 404, 'The source must be a blob of the same account');
    const sig = url.searchParams.get('sig');
    if (sig !== null) {
      // As Azurite checks a copy source: a request with the source URL's own SAS must succeed. A
      // container SAS (sr=c) that passed once is not checked again for that container.
      const key = url.searchParams.get('sr') === 'c' ? `${account}/${container}?${url.searchParams.toString()}` : undefined;
      if (key === undefined || !validated.has(key)) {
        const checker = Object.assign(Object.create(this) as object, { NewUriFromCopySource: BlobHandler.prototype['NewUriFromCopySource'] });
        await BlobHandler.prototype['validateCopySource']!.call(checker, sourceUrl, account, context);
        if (key !== undefined) {
          if (validated.size > 1000) validated.clear();
          validated.add(key);
        }
      }
    }
    const source = await this.metadataStore.downloadBlob(context, account, container, blob, url.searchParams.get('snapshot') ?? '');
    if (source.isCommitted === false) throw Errors['getBlobNotFound']!(ctx.contextId);
    const size = source.properties.contentLength ?? 0;
    const range = /^bytes=(\d+)-(\d+)$/.exec(options.sourceRange ?? '');
    const start = range ? Number(range[1]) : 0;
    const end = range ? Number(range[2]) : size - 1;
    if (start > end || end >= size) throw Errors['getInvalidPageRange2']!(ctx.contextId, `bytes */${size}`);
    const count = end - start + 1;
    const blocks = source.committedBlocksInOrder;
    const stream =
      blocks && blocks.length > 0
        ? await this.extentStore.readExtents(
            blocks.map((b) => b.persistency),
            start,
            count,
            ctx.contextId,
          )
        : await this.extentStore.readExtent(source.persistency ? { id: source.persistency.id, offset: source.persistency.offset + start, count } : undefined, ctx.contextId);
    const persistency = await this.extentStore.appendExtent(stream, ctx.contextId);
    if (persistency.count !== count) throw Errors['getInvalidOperation']!(ctx.contextId, `read ${persistency.count} bytes of the source range, expected ${count}`);
    await this.metadataStore.stageBlock(context, { accountName: ctx.account, containerName: ctx.container, blobName: ctx.blob, isCommitted: false, name: blockId, size: count, persistency }, options.leaseAccessConditions);
    return { statusCode: 201, requestId: ctx.contextId, version: BLOB_API_VERSION, date: ctx.startTime, isServerEncrypted: true, clientRequestId: options.requestId };
  };
}
