/**
 * Server-side composition of a blob from other blobs: each part becomes a block staged from the
 * source blob's URL (Put Block From URL: the bytes go from storage to storage, never through this
 * process), small parts (a '[' or one line) become blocks from memory, and the block list is
 * committed in order. Past Azure's 50,000 blocks per blob, the output goes on in numbered files.
 * Block ids derive from what the block holds, so a rerun (a finalize retried after a timeout)
 * skips the blocks already staged and commits the same list.
 *
 * Where the storage cannot stage from a URL (a stock Azurite answers 501), the part is copied
 * through this process instead and counted in `bytesThroughProcess`.
 */
import { createHash } from 'node:crypto';
import { ContainerSASPermissions, StorageSharedKeyCredential, type BlockBlobClient, type ContainerClient, type HttpAuthorization } from '@azure/storage-blob';
import type { TokenCredential } from '@azure/identity';
import { LakeInferError, restStatus } from '../util/errors';
import { mapLimit } from '../util/concurrency';
import { collectStream } from './blobs';
import { storageError } from './clients';
import { contentTypeFor } from './names';

/** Most blocks Azure accepts in one block blob. */
export const MAX_BLOCKS_PER_BLOB = 50_000;

export interface ComposeStats {
  files: number;
  blocksFromUrl: number;
  blocksFromMemory: number;
  /** Blocks a rerun found staged already. */
  blocksReused: number;
  /** Bytes copied storage-to-storage. */
  bytesFromUrl: number;
  /** Bytes that passed through this process: blocks from memory, and copies where the storage cannot stage from a URL. */
  bytesThroughProcess: number;
  /** Parts copied through this process because the storage lacks Put Block From URL. */
  fallbackCopies: number;
}

export function emptyComposeStats(): ComposeStats {
  return { files: 0, blocksFromUrl: 0, blocksFromMemory: 0, blocksReused: 0, bytesFromUrl: 0, bytesThroughProcess: 0, fallbackCopies: 0 };
}

/**
 * A block: a byte range of a blob in the same container, or bytes in hand. `key` names it uniquely
 * and stably. A source given with the MD5 of its range is staged only if storage reads exactly those
 * bytes (x-ms-source-content-md5, checked by the storage service as it copies); one with an `etag`
 * only while it is still that version (checked before staging; the condition itself where the
 * bytes come through this process). Either failing is a FragmentChanged naming the source: it is
 * never composed.
 */
export type Part = { key: string; source: string; offset: number; count: number; etag?: string; md5?: string } | { key: string; data: Buffer };

/** The source of a part is no longer the version it was recorded with. */
export class FragmentChanged extends LakeInferError {
  constructor(readonly source: string, etag: string, gone = false) {
    super('FragmentChanged', gone ? `'${source}' is gone since it was recorded; it is not composed` : `'${source}' changed after it was recorded (it is no longer version ${etag}); it is not composed`, { retryable: true, target: source });
  }
}

export interface ComposeSpec {
  /** The file's name; `index` is given when the output needs several files (0, 1, ...). */
  name: (index: number | undefined) => string;
  /** Bytes at the start and end of every file (a JSON array's brackets). */
  head?: Buffer;
  tail?: Buffer;
  /** Bytes skipped at the start of each file's first part (the comma before an array's first element). */
  skipFirst?: number;
}

/** How staging reaches a source blob: a SAS URL (account key), a bearer token (managed identity), or its plain URL. */
async function sourceAccess(container: ContainerClient): Promise<{ url: (name: string) => Promise<string>; auth: () => Promise<HttpAuthorization | undefined> }> {
  const cred = container.credential;
  if (cred instanceof StorageSharedKeyCredential) {
    // One read-only SAS for the container, valid for a few hours, on every source blob's URL.
    const sas = new URL(await container.generateSasUrl({ permissions: ContainerSASPermissions.parse('r'), expiresOn: new Date(Date.now() + 6 * 3600_000) })).search;
    return { url: async (name) => `${container.getBlobClient(name).url}${sas}`, auth: async () => undefined };
  }
  const tokens = cred as Partial<TokenCredential>;
  if (typeof tokens.getToken === 'function') {
    let token: { token: string; expiresOnTimestamp: number } | undefined;
    return {
      url: async (name) => container.getBlobClient(name).url,
      auth: async () => {
        if (!token || token.expiresOnTimestamp - Date.now() < 5 * 60_000) {
          const t = await tokens.getToken!('https://storage.azure.com/.default');
          if (!t) throw new Error('no token for https://storage.azure.com/.default');
          token = t;
        }
        return { scheme: 'Bearer', value: token.token };
      },
    };
  }
  // Anonymous: the container URL carries a SAS already.
  return { url: async (name) => container.getBlobClient(name).url, auth: async () => undefined };
}

const quoted = (etag: string): string => (etag.startsWith('"') ? etag : `"${etag}"`);
const bare = (etag: string): string => etag.replace(/^"(.*)"$/, '$1');

async function assertVersion(container: ContainerClient, source: string, etag: string): Promise<void> {
  let now: string | undefined;
  try {
    now = (await container.getBlobClient(source).getProperties()).etag;
  } catch (err) {
    if (restStatus(err) === 404) throw new FragmentChanged(source, etag, true);
    throw storageError(err, 'reading properties', source);
  }
  if (bare(now ?? '') !== bare(etag)) throw new FragmentChanged(source, etag);
}

function blockId(key: string): string {
  // Every id of a blob must have the same length: a digest of the key.
  return Buffer.from(createHash('sha256').update(key).digest('hex').slice(0, 32)).toString('base64');
}

/**
 * Composes one logical output from parts given in order. `parts` is read once; each file's block
 * list (ids only) is the memory it takes.
 */
export async function composeBlob(container: ContainerClient, spec: ComposeSpec, totalParts: number, parts: AsyncIterable<Part> | Iterable<Part>, opts: { concurrency?: number; maxBlocks?: number; stats?: ComposeStats } = {}): Promise<string[]> {
  const stats = opts.stats ?? emptyComposeStats();
  const edges = (spec.head ? 1 : 0) + (spec.tail ? 1 : 0);
  const perFile = Math.max(1, (opts.maxBlocks ?? MAX_BLOCKS_PER_BLOB) - edges);
  const fileCount = Math.max(1, Math.ceil(totalParts / perFile));
  const names = Array.from({ length: fileCount }, (_, i) => spec.name(fileCount === 1 ? undefined : i));
  const access = await sourceAccess(container);
  let urlStaging = true;

  let file = -1;
  let inFile = perFile;
  let client: BlockBlobClient | undefined;
  let ids: string[] = [];
  let existing = new Set<string>();
  let batch: { part: Part; id: string; skip: number }[] = [];
  const flushBatch = async (): Promise<void> => {
    const b = client!;
    const staged = existing;
    await mapLimit(batch, opts.concurrency ?? 32, async ({ part, id, skip }) => {
      if (staged.has(id)) {
        stats.blocksReused++;
        return;
      }
      if ('data' in part) {
        await b.stageBlock(id, part.data, part.data.length).catch((err: unknown) => {
          throw storageError(err, 'staging block', b.name);
        });
        stats.blocksFromMemory++;
        stats.bytesThroughProcess += part.data.length;
        return;
      }
      const offset = part.offset + skip;
      const count = part.count - skip;
      if (urlStaging) {
        try {
          const auth = await access.auth();
          // The SDK sends no source conditions on Put Block From URL: without an MD5, the version is checked first.
          if ((!part.md5 || skip > 0) && part.etag) await assertVersion(container, part.source, part.etag);
          const md5 = part.md5 && skip === 0 ? { sourceContentMD5: Buffer.from(part.md5, 'base64') } : {};
          await b.stageBlockFromURL(id, await access.url(part.source), offset, count, { ...(auth ? { sourceAuthorization: auth } : {}), ...md5 });
          stats.blocksFromUrl++;
          stats.bytesFromUrl += count;
          return;
        } catch (err) {
          if (err instanceof FragmentChanged) throw err;
          if (restStatus(err) === 400 && part.md5 && /Md5Mismatch/i.test(String((err as { code?: string }).code ?? (err as Error).message))) throw new FragmentChanged(part.source, part.etag ?? part.md5);
          // Put Block needs no destination blob: a 404 is the source's (CannotVerifyCopySource), gone since it was recorded.
          if (restStatus(err) === 404) throw new FragmentChanged(part.source, part.etag ?? part.md5 ?? '', true);
          if (restStatus(err) !== 501) throw storageError(err, `staging block from ${part.source}`, b.name);
          urlStaging = false; // this storage cannot: copy through the process from now on
        }
      }
      const res = await container.getBlobClient(part.source).download(offset, count, part.etag ? { conditions: { ifMatch: quoted(part.etag) } } : {}).catch((err: unknown) => {
        if (restStatus(err) === 412 && part.etag) throw new FragmentChanged(part.source, part.etag);
        if (restStatus(err) === 404) throw new FragmentChanged(part.source, part.etag ?? part.md5 ?? '', true);
        throw storageError(err, 'reading part', part.source);
      });
      const data = (await collectStream(res.readableStreamBody!))!;
      if (part.md5 && skip === 0 && createHash('md5').update(data).digest('base64') !== part.md5) throw new FragmentChanged(part.source, part.etag ?? part.md5);
      await b.stageBlock(id, data, data.length).catch((err: unknown) => {
        throw storageError(err, 'staging block', b.name);
      });
      stats.fallbackCopies++;
      stats.bytesThroughProcess += data.length;
    });
    batch = [];
  };
  const openFile = async (): Promise<void> => {
    if (client) await closeFile();
    file++;
    inFile = 0;
    client = container.getBlockBlobClient(names[file]!);
    ids = [];
    existing = new Set<string>();
    try {
      const list = await client.getBlockList('all');
      for (const blk of [...(list.committedBlocks ?? []), ...(list.uncommittedBlocks ?? [])]) existing.add(blk.name);
    } catch (err) {
      if (restStatus(err) !== 404) throw storageError(err, 'listing blocks', names[file]!);
    }
    if (spec.head) push({ key: `head:${names[file]}`, data: spec.head }, 0);
  };
  const push = (part: Part, skip: number): void => {
    const id = blockId(`${part.key}|${skip}`);
    ids.push(id);
    batch.push({ part, id, skip });
  };
  const closeFile = async (): Promise<void> => {
    if (spec.tail) push({ key: `tail:${names[file]}`, data: spec.tail }, 0);
    await flushBatch();
    try {
      await client!.commitBlockList(ids, { blobHTTPHeaders: { blobContentType: contentTypeFor(names[file]!) } });
    } catch (err) {
      throw storageError(err, 'committing blob', names[file]!);
    }
    stats.files++;
    client = undefined;
  };

  let given = 0;
  for await (const part of parts) {
    given++;
    if (inFile >= perFile) await openFile();
    push(part, inFile === 0 ? (spec.skipFirst ?? 0) : 0);
    inFile++;
    if (batch.length >= 256) await flushBatch();
  }
  if (given !== totalParts) throw new Error(`composeBlob(${names[0]}): ${given} parts given, ${totalParts} announced`);
  if (!client) await openFile(); // no parts: the file holds its head and tail only
  await closeFile();
  return names;
}
