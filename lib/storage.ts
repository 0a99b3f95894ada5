/**
 * Data storage: clients, paged listing, plan files, result writing.
 * Works on Blob accounts, ADLS Gen2 accounts (through their Blob endpoint) and Azurite alike.
 * Transient failures are retried by the SDK's retry policy (STORAGE_RETRY); what still fails is
 * surfaced as a LakeInferError whose `retryable` flag says whether the activity should be retried.
 */
import { createHash } from 'node:crypto';
import { BlobServiceClient, type ContainerClient, type StoragePipelineOptions } from '@azure/storage-blob';
import { DefaultAzureCredential, ManagedIdentityCredential, type TokenCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import type { DataConnection } from './config';
import { LakeInferError, isTransientStorageError, restErrorCode, restStatus } from './errors';
import { partitionStream } from './orchestration';

export const STORAGE_RETRY: StoragePipelineOptions = {
  retryOptions: { maxTries: 5, retryDelayInMs: 200, maxRetryDelayInMs: 5_000, tryTimeoutInMs: 60_000 },
};

/** Reads one Key Vault secret. Injected so tests need no Key Vault server. */
export type SecretReader = (vaultUrl: string, name: string, version?: string) => Promise<string>;

export interface ClientDeps {
  /** Credential for service URIs and Key Vault; default DefaultAzureCredential (or the named managed identity). */
  credential?: TokenCredential;
  readSecret?: SecretReader;
  pipeline?: StoragePipelineOptions;
}

function defaultCredential(clientId?: string): TokenCredential {
  return clientId === undefined ? new DefaultAzureCredential() : new ManagedIdentityCredential({ clientId });
}

function keyVaultReader(credential: TokenCredential): SecretReader {
  return async (vaultUrl, name, version) => {
    const client = new SecretClient(vaultUrl, credential);
    const secret = await client.getSecret(name, version === undefined ? {} : { version });
    if (secret.value === undefined || secret.value === '') throw new Error('secret has no value');
    return secret.value;
  };
}

/** Builds the data account client from whichever connection the settings name. */
export async function createDataServiceClient(conn: DataConnection, deps: ClientDeps = {}): Promise<BlobServiceClient> {
  const pipeline = deps.pipeline ?? STORAGE_RETRY;
  switch (conn.kind) {
    case 'connectionString':
      return BlobServiceClient.fromConnectionString(conn.connectionString, pipeline);
    case 'serviceUri':
      return new BlobServiceClient(conn.serviceUri, deps.credential ?? defaultCredential(conn.clientId), pipeline);
    case 'keyVaultSecret': {
      const read = deps.readSecret ?? keyVaultReader(deps.credential ?? defaultCredential());
      let value: string;
      try {
        value = await read(conn.vaultUrl, conn.secretName, conn.secretVersion);
      } catch (err) {
        // The message names the secret, never its value.
        throw new LakeInferError(
          'SecretUnavailable',
          `could not read Key Vault secret '${conn.secretName}' from ${conn.vaultUrl} (setting DATA_STORAGE_SECRET_URI): ${(err as Error).message ?? err}`,
          { target: 'DATA_STORAGE_SECRET_URI', retryable: isTransientStorageError(err), cause: err },
        );
      }
      try {
        return BlobServiceClient.fromConnectionString(value, pipeline);
      } catch {
        throw new LakeInferError('ConfigInvalid', `Key Vault secret '${conn.secretName}' does not hold a storage connection string`, {
          target: 'DATA_STORAGE_SECRET_URI',
        });
      }
    }
  }
}

/** Translates a storage SDK error into a LakeInferError that names what was being done. */
export function storageError(err: unknown, what: string, target: string): LakeInferError {
  if (err instanceof LakeInferError) return err;
  const status = restStatus(err);
  const code = restErrorCode(err);
  if (status === 404 && code === 'ContainerNotFound') {
    return new LakeInferError('ContainerNotFound', `container '${target}' does not exist (${what})`, { target, cause: err });
  }
  if (status === 404) return new LakeInferError('BlobNotFound', `'${target}' was not found (${what})`, { target, cause: err });
  const retryable = isTransientStorageError(err);
  const detail = err instanceof Error ? err.message.split('\n')[0] : String(err);
  return new LakeInferError(retryable ? 'StorageUnavailable' : 'Internal', `${what} failed for '${target}': ${detail}`, {
    target,
    retryable,
    cause: err,
  });
}

// ---------------------------------------------------------------------------------------------
// Listing

export interface BlobRef {
  name: string;
  etag: string;
  size: number;
}

export interface ListOptions {
  prefix?: string;
  /** Lower-case extensions with the dot, e.g. ['.jpg']; matched case-insensitively. Empty: all blobs. */
  extensions?: readonly string[];
  /** Stop after this many matching blobs. */
  maxItems?: number;
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

/**
 * Lists a container page by page, filtered by prefix and extension. Directory placeholders of
 * hierarchical-namespace accounts (metadata hdi_isfolder) are skipped.
 */
export async function* listBlobPages(container: ContainerClient, opts: ListOptions = {}): AsyncGenerator<BlobPage> {
  const max = opts.maxItems ?? Number.POSITIVE_INFINITY;
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
      items.push({ name: b.name, etag: normalizeEtag(b.properties.etag), size: b.properties.contentLength ?? 0 });
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

// ---------------------------------------------------------------------------------------------
// Names

/** Longest blob name Azure accepts. */
export const MAX_BLOB_NAME = 1024;

/** `runs/` + `job-1` -> `runs/job-1/`; validates both parts. */
export function jobPrefix(outputPrefix: string | undefined, jobId: string): string {
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(jobId)) {
    throw new LakeInferError('InvalidName', `jobId must be 1-100 characters of A-Z a-z 0-9 - _, got '${jobId}'`, { target: 'jobId' });
  }
  let p = outputPrefix ?? '';
  if (p !== '') {
    const segs = p.split('/').filter((s) => s !== '');
    if (segs.some((s) => s === '.' || s === '..' || s.includes('\\'))) {
      throw new LakeInferError('InvalidName', `output.prefix must not contain '.', '..' or '\\' segments, got '${outputPrefix}'`, {
        target: 'output.prefix',
      });
    }
    p = segs.length === 0 ? '' : `${segs.join('/')}/`;
  }
  return `${p}${jobId}/`;
}

function escapeSegment(seg: string): string {
  if (seg === '') return '%2F'; // an empty segment ("a//b" or a leading "/") stays distinct but harmless
  if (seg === '.') return '%2E';
  if (seg === '..') return '%2E%2E';
  // '%' first so the mapping stays one-to-one; backslash and control characters could be read as separators.
  return seg.replace(/%/g, '%25').replace(/\\/g, '%5C').replace(/[\u0000-\u001f\u007f]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`);
}

/**
 * Maps an input blob name to a relative output name that can never leave the job prefix:
 * no '.', '..' or empty segments, no backslashes, no control characters. One-to-one for names
 * that fit; names too long for Azure keep a readable head and a hash of the whole name.
 */
export function safeRelativeName(inputName: string, maxLength = 900): string {
  if (inputName.length === 0) throw new LakeInferError('InvalidName', 'blob name is empty', { target: 'name' });
  const escaped = inputName.split('/').map(escapeSegment).join('/');
  if (escaped.length <= maxLength) return escaped;
  const hash = createHash('sha256').update(inputName).digest('hex').slice(0, 16);
  let head = escaped.slice(0, maxLength - 18);
  // Never cut inside an escape sequence or a surrogate pair, and never end on '/' or '.'.
  head = head.replace(/%[0-9A-F]?$/, '').replace(/[\uD800-\uDBFF]$/, '').replace(/[/.]+$/, '');
  return `${head}~${hash}`;
}

/** `<jobPrefix><folder>/<safe input name><suffix>`, guaranteed under jobPrefix and within Azure's limit. */
export function outputBlobName(prefix: string, folder: string, inputName: string, suffix: string): string {
  const budget = MAX_BLOB_NAME - prefix.length - folder.length - 1 - suffix.length - 1;
  if (budget < 32) throw new LakeInferError('InvalidName', `output prefix '${prefix}' is too long`, { target: 'output.prefix' });
  const name = `${prefix}${folder}/${safeRelativeName(inputName, budget)}${suffix}`;
  if (!name.startsWith(prefix)) throw new LakeInferError('InvalidName', `output name escaped its prefix: ${name}`);
  return name;
}

const CONTENT_TYPES: Record<string, string> = {
  '.json': 'application/json; charset=utf-8',
  '.jsonl': 'application/x-ndjson; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.txt': 'text/plain; charset=utf-8',
  '.onnx': 'application/octet-stream',
};

export function contentTypeFor(name: string): string {
  const dot = name.lastIndexOf('.');
  const ext = dot >= 0 ? name.slice(dot).toLowerCase() : '';
  return CONTENT_TYPES[ext] ?? 'application/octet-stream';
}

// ---------------------------------------------------------------------------------------------
// Reading and writing

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
}

/** Writes a whole blob with its content type. Returns false when ifNotExists and the blob already existed. */
export async function writeBlob(container: ContainerClient, name: string, body: string | Buffer, opts: WriteOptions = {}): Promise<boolean> {
  assertAddressable(name);
  const data = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  try {
    await container.getBlockBlobClient(name).uploadData(data, {
      blobHTTPHeaders: { blobContentType: opts.contentType ?? contentTypeFor(name) },
      ...(opts.metadata ? { metadata: opts.metadata } : {}),
      ...(opts.ifNotExists ? { conditions: { ifNoneMatch: '*' } } : {}),
    });
    return true;
  } catch (err) {
    if (opts.ifNotExists && (restStatus(err) === 409 || restStatus(err) === 412)) return false;
    throw storageError(err, 'writing blob', `${container.containerName}/${name}`);
  }
}

export async function writeJson(container: ContainerClient, name: string, value: unknown, opts: WriteOptions = {}): Promise<boolean> {
  return writeBlob(container, name, JSON.stringify(value), opts);
}

/**
 * Blob names with '.' or '..' segments cannot be addressed: URL resolution would turn
 * 'a/../b.jpg' into 'b.jpg' and read or write a different blob. Refuse them before any request.
 */
export function assertAddressable(name: string): void {
  if (name.split('/').some((s) => s === '.' || s === '..')) {
    throw new LakeInferError('InvalidName', `blob name '${name}' has '.' or '..' segments and cannot be addressed safely`, { target: name });
  }
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

/** Runs fn over items with at most `limit` in flight; the first error stops new work and is thrown. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let failed: unknown;
  let hasFailed = false;
  const worker = async (): Promise<void> => {
    while (!hasFailed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!, i);
      } catch (err) {
        if (!hasFailed) {
          hasFailed = true;
          failed = err;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (hasFailed) throw failed;
  return results;
}

// ---------------------------------------------------------------------------------------------
// Plan files: <jobPrefix>_plan/<n>.json per partition, then _plan/index.json as the commit marker.

export interface PlanPartition {
  jobId: string;
  n: number;
  blobs: BlobRef[];
}

export interface PlanIndex {
  jobId: string;
  inputContainer: string;
  partitions: number;
  total: number;
  bytes: number;
  partitionSize: number;
}

export function planBlobName(prefix: string, n: number): string {
  return `${prefix}_plan/${n}.json`;
}
export function planIndexName(prefix: string): string {
  return `${prefix}_plan/index.json`;
}

export interface WritePlanOptions extends ListOptions {
  jobId: string;
  jobPrefix: string;
  partitionSize: number;
  /** Plan files written concurrently while listing goes on. */
  concurrency?: number;
}

/**
 * Lists the input container and writes one plan file per partition, streaming: memory holds one
 * partition and a few uploads, whatever the container's size. index.json is written last, so a
 * plan with an index is complete and a resumed job reuses it instead of listing again.
 */
export async function writePlan(input: ContainerClient, output: ContainerClient, opts: WritePlanOptions): Promise<PlanIndex> {
  const existing = await readJson<PlanIndex>(output, planIndexName(opts.jobPrefix));
  if (existing !== undefined) return existing;

  const pages = (async function* () {
    for await (const page of listBlobPages(input, opts)) yield page.items;
  })();
  const inFlight = new Set<Promise<unknown>>();
  const limit = opts.concurrency ?? 8;
  let failure: { err: unknown } | undefined;
  let n = 0;
  let total = 0;
  let bytes = 0;
  for await (const blobs of partitionStream(pages, opts.partitionSize)) {
    if (failure) break;
    const part: PlanPartition = { jobId: opts.jobId, n, blobs };
    total += blobs.length;
    bytes += blobs.reduce((s, b) => s + b.size, 0);
    const p: Promise<unknown> = writeJson(output, planBlobName(opts.jobPrefix, n), part)
      .catch((err: unknown) => {
        failure ??= { err };
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    n++;
    if (inFlight.size >= limit) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failure) throw failure.err;
  const index: PlanIndex = { jobId: opts.jobId, inputContainer: input.containerName, partitions: n, total, bytes, partitionSize: opts.partitionSize };
  await writeJson(output, planIndexName(opts.jobPrefix), index);
  return index;
}

export async function readPlan(output: ContainerClient, prefix: string, n: number): Promise<PlanPartition> {
  const plan = await readJson<PlanPartition>(output, planBlobName(prefix, n));
  if (plan === undefined) {
    throw new LakeInferError('PlanInvalid', `plan file ${planBlobName(prefix, n)} is missing from container '${output.containerName}'`, {
      target: planBlobName(prefix, n),
    });
  }
  if (plan.n !== n || !Array.isArray(plan.blobs)) {
    throw new LakeInferError('PlanInvalid', `plan file ${planBlobName(prefix, n)} is malformed`, { target: planBlobName(prefix, n) });
  }
  return plan;
}

let processService: Promise<BlobServiceClient> | undefined;
/** The data account client of this process (built once from settings; rebuilt after a failure). */
export function dataService(conn: DataConnection): Promise<BlobServiceClient> {
  processService ??= createDataServiceClient(conn).catch((err: unknown) => {
    processService = undefined;
    throw err;
  });
  return processService;
}
export function resetDataService(): void {
  processService = undefined;
}
