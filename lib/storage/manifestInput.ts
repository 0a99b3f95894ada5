/**
 * Input from a manifest: a CSV, JSONL or Parquet file listing the blobs to infer, by name or by
 * full URL within the input container. Streamed: a CSV or JSONL manifest is read as the download
 * arrives, a Parquet one a row group at a time (ranged reads), so memory holds one page of names
 * and the deduplication table (16 bytes per entry, see util/fingerprints.ts), never the manifest.
 *
 * Entries are filtered as a listing is (prefix, extensions, maxItems); repeats are dropped; an
 * entry that names a blob outside the input container (another account or container), or no
 * valid blob name at all, is counted and, at the end, fails the plan with ManifestInvalid giving
 * the count and examples. ETags and sizes come from the download (the manifest does not carry
 * them): a listed blob that does not exist fails that image alone (BlobNotFound).
 */
import type { ContainerClient } from '@azure/storage-blob';
import { LakeInferError } from '../util/errors';
import { FingerprintSet } from '../util/fingerprints';
import { rangedBlob } from './blobs';
import { storageError } from './clients';
import { matchesExtension, type BlobPage, type BlobRef } from './listing';
import { MAX_BLOB_NAME, nameProblem } from './names';

export interface ManifestSpec {
  blob: string;
  format?: 'csv' | 'jsonl' | 'parquet';
  column?: string | number;
  header?: boolean;
}

export interface ManifestFilters {
  prefix?: string;
  extensions?: readonly string[];
  maxItems?: number;
}

/** What reading a manifest found, beside the blobs it planned. */
export interface ManifestStats {
  entries: number;
  planned: number;
  duplicates: number;
  /** Entries the filters (prefix, extensions, maxItems) left out. */
  filtered: number;
  invalid: number;
}

const PAGE = 1000;
const HEADER_NAMES = new Set(['name', 'path', 'blob', 'blobname', 'url', 'uri', 'file']);
const EXAMPLES = 3;

export function manifestFormat(m: ManifestSpec): 'csv' | 'jsonl' | 'parquet' {
  if (m.format) return m.format;
  if (/\.csv$/i.test(m.blob)) return 'csv';
  if (/\.parquet$/i.test(m.blob)) return 'parquet';
  return 'jsonl';
}

/** UTF-8 text of a blob, chunk by chunk as the download arrives (`what` names it in a storage error). */
export async function* textChunks(c: ContainerClient, blob: string, what = 'reading the manifest'): AsyncGenerator<string> {
  let body: NodeJS.ReadableStream | undefined;
  try {
    body = (await c.getBlobClient(blob).download()).readableStreamBody;
  } catch (err) {
    throw storageError(err, what, `${c.containerName}/${blob}`);
  }
  if (!body) return;
  const decoder = new TextDecoder('utf-8');
  for await (const chunk of body) yield decoder.decode(chunk as Buffer, { stream: true });
  const rest = decoder.decode();
  if (rest) yield rest;
}

/** Lines of a text stream (LF or CRLF), the last one even without a newline. */
export async function* lines(chunks: AsyncIterable<string>): AsyncGenerator<string> {
  let carry = '';
  for await (const chunk of chunks) {
    const parts = (carry + chunk).split('\n');
    carry = parts.pop()!;
    for (const p of parts) yield p.endsWith('\r') ? p.slice(0, -1) : p;
  }
  if (carry) yield carry.endsWith('\r') ? carry.slice(0, -1) : carry;
}

/** CSV records (RFC 4180: quoted fields, "" inside quotes, newlines inside quotes) of a text stream. */
export async function* csvRecords(chunks: AsyncIterable<string>): AsyncGenerator<string[]> {
  let field = '';
  let record: string[] = [];
  let quoted = false;
  let afterQuote = false;
  let any = false;
  for await (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++) {
      const ch = chunk[i]!;
      any = true;
      if (quoted) {
        if (ch === '"') {
          quoted = false;
          afterQuote = true;
        } else field += ch;
        continue;
      }
      if (ch === '"') {
        // A quote right after a closing quote is an escaped quote ("").
        if (afterQuote) field += '"';
        quoted = true;
        afterQuote = false;
      } else if (ch === ',') {
        record.push(field);
        field = '';
        afterQuote = false;
      } else if (ch === '\n') {
        record.push(field.endsWith('\r') && !afterQuote ? field.slice(0, -1) : field);
        yield record;
        record = [];
        field = '';
        afterQuote = false;
        any = false;
      } else if (ch === '\r' && afterQuote) {
        // CRLF after a quoted field
      } else {
        field += ch;
        afterQuote = false;
      }
    }
  }
  if (any) {
    record.push(field);
    yield record;
  }
}

/** The raw entries (names or URLs) of a manifest, in order; undefined for an entry with no name. */
async function* entries(c: ContainerClient, m: ManifestSpec): AsyncGenerator<string | undefined> {
  const format = manifestFormat(m);
  if (format === 'csv') {
    let index = typeof m.column === 'number' ? m.column : 0;
    let first = true;
    for await (const rec of csvRecords(textChunks(c, m.blob))) {
      if (rec.length === 1 && rec[0] === '') continue; // blank line
      if (first) {
        first = false;
        const header = m.header ?? (typeof m.column === 'string' || HEADER_NAMES.has((rec[0] ?? '').trim().toLowerCase()));
        if (header) {
          if (typeof m.column === 'string') {
            index = rec.findIndex((h) => h.trim() === m.column);
            if (index < 0) throw new LakeInferError('ManifestInvalid', `manifest '${m.blob}' has no column '${m.column}' (its header: ${rec.slice(0, 10).join(', ')})`, { target: 'input.manifest.column' });
          }
          continue;
        }
      }
      yield rec[index];
    }
    return;
  }
  const column = typeof m.column === 'string' ? m.column : 'name';
  if (format === 'jsonl') {
    for await (const line of lines(textChunks(c, m.blob))) {
      if (line.trim() === '') continue;
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        yield undefined;
        continue;
      }
      if (typeof v === 'string') yield v;
      else if (v && typeof v === 'object' && typeof (v as Record<string, unknown>)[column] === 'string') yield (v as Record<string, string>)[column];
      else yield undefined;
    }
    return;
  }
  yield* parquetEntries(c, m.blob, column);
}

/** One column of a Parquet manifest, a row group at a time, read by ranges. */
async function* parquetEntries(c: ContainerClient, blob: string, column: string): AsyncGenerator<string | undefined> {
  const { parquetMetadataAsync, parquetReadObjects } = await import('hyparquet');
  const file = await rangedBlob(c, blob, 'reading the manifest');
  let metadata;
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (err) {
    throw new LakeInferError('ManifestInvalid', `manifest '${blob}' is not a readable Parquet file: ${(err as Error).message}`, { target: 'input.manifest.blob' });
  }
  const names = metadata.schema.map((s) => s.name);
  if (!names.includes(column)) throw new LakeInferError('ManifestInvalid', `manifest '${blob}' has no column '${column}' (its columns: ${names.slice(1, 11).join(', ')})`, { target: 'input.manifest.column' });
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    const rows = (await parquetReadObjects({ file, metadata, columns: [column], rowStart, rowEnd })) as Record<string, unknown>[];
    for (const r of rows) yield typeof r[column] === 'string' ? (r[column] as string) : undefined;
    rowStart = rowEnd;
  }
}

/**
 * The blob name an entry stands for in `input`: a name as written, or a URL of a blob in the input
 * container (same account and container; query strings such as a SAS dropped). Undefined when the
 * entry names something else.
 */
export function entryName(input: ContainerClient, entry: string): { name: string } | { outside: string } | { invalid: string } {
  const e = entry.trim();
  if (e === '') return { invalid: 'an empty name' };
  let name = e;
  if (/^https?:\/\//i.test(e)) {
    const base = new URL(input.url);
    let u: URL;
    try {
      u = new URL(e);
    } catch {
      return { invalid: `'${e}' (not a URL)` };
    }
    const containerPath = `${base.pathname.replace(/\/$/, '')}/`;
    if (u.origin !== base.origin || !u.pathname.startsWith(containerPath)) return { outside: e.replace(/\?.*$/, '') };
    try {
      name = decodeURIComponent(u.pathname.slice(containerPath.length));
    } catch {
      return { invalid: `'${e}' (bad percent-encoding)` };
    }
  }
  const problem = nameProblem(name) ?? (name.length > MAX_BLOB_NAME ? `is over ${MAX_BLOB_NAME} characters` : undefined) ?? (name.endsWith('/') ? 'names a folder' : undefined);
  if (problem) return { invalid: `${JSON.stringify(name.slice(0, 100))} (${problem})` };
  return { name };
}

/**
 * The manifest's blobs as pages of references (ETag and size unknown: empty and 0), filtered and
 * deduplicated; `stats` is filled in as it goes. Throws ManifestInvalid at the end when entries
 * named blobs outside the container or no blob at all.
 */
export async function* manifestPages(manifestContainer: ContainerClient, input: ContainerClient, m: ManifestSpec, filters: ManifestFilters, stats: ManifestStats): AsyncGenerator<BlobPage> {
  const seen = new FingerprintSet();
  const max = filters.maxItems ?? Number.POSITIVE_INFINITY;
  const outside: string[] = [];
  const invalid: string[] = [];
  let outsideCount = 0;
  let page: BlobRef[] = [];
  for await (const entry of entries(manifestContainer, m)) {
    stats.entries++;
    const r = entry === undefined ? { invalid: `entry ${stats.entries} (no blob name in it)` } : entryName(input, entry);
    if ('outside' in r) {
      outsideCount++;
      if (outside.length < EXAMPLES) outside.push(r.outside);
      continue;
    }
    if ('invalid' in r) {
      stats.invalid++;
      if (invalid.length < EXAMPLES) invalid.push(r.invalid);
      continue;
    }
    if ((filters.prefix && !r.name.startsWith(filters.prefix)) || !matchesExtension(r.name, filters.extensions) || stats.planned >= max) {
      stats.filtered++;
      continue;
    }
    if (!seen.add(r.name)) {
      stats.duplicates++;
      continue;
    }
    stats.planned++;
    page.push({ name: r.name, etag: '', size: 0 });
    if (page.length >= PAGE) {
      yield { items: page, continuationToken: undefined };
      page = [];
    }
  }
  if (outsideCount > 0 || stats.invalid > 0) {
    const parts = [
      outsideCount > 0 ? `${outsideCount} of ${stats.entries} entries name blobs outside container '${input.containerName}' of this account (e.g. ${outside.join(', ')})` : '',
      stats.invalid > 0 ? `${stats.invalid} entries name no valid blob (e.g. ${invalid.join('; ')})` : '',
    ].filter(Boolean);
    throw new LakeInferError('ManifestInvalid', `manifest '${m.blob}': ${parts.join('; ')}; fix the manifest (names or URLs of blobs in '${input.containerName}')`, { target: 'input.manifest' });
  }
  if (page.length > 0) yield { items: page, continuationToken: undefined };
}
