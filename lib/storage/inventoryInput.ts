/**
 * Input from an Azure Blob Inventory run: instead of listing a container of millions of blobs,
 * read what the account's inventory rule already listed. A run writes, in its destination
 * container under `YYYY/MM/DD/HH-MM-SS/<ruleName>/`, one or more CSV or Parquet files and
 * `<ruleName>-manifest.json` naming them (`files[].blob`, relative to the destination container),
 * with the rule's `format`, `objectType` and `schemaFields`, the run's `status` and the account's
 * `endpoint` (learn.microsoft.com: Azure Storage blob inventory, "Inventory output").
 *
 * Each row's `Name` is the container and the blob name (`images/2026/a.jpg`): rows of other
 * containers are skipped, and so are deleted blobs, snapshots and non-current versions when the
 * rule included them. Name, size (Content-Length), last-modified, ETag and Content-MD5 come from
 * the inventory when its schema has them (Name is always there); the prefix, extension and
 * modified-time filters apply as to a listing. Streamed: a CSV file as it downloads, a Parquet one a
 * row group at a time; repeats dropped by 64-bit fingerprints.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { LakeInferError } from '../util/errors';
import { FingerprintSet } from '../util/fingerprints';
import { rangedBlob, readJson } from './blobs';
import { matchesExtension, timeFilter, type BlobPage, type BlobRef } from './listing';
import { csvRecords, textChunks } from './manifestInput';
import { nameProblem } from './names';

export interface InventorySpec {
  /** The inventory rule's destination container. */
  container: string;
  /** The run's manifest: `YYYY/MM/DD/HH-MM-SS/<ruleName>/<ruleName>-manifest.json`. */
  manifestBlob: string;
}

export interface InventoryFilters {
  prefix?: string;
  extensions?: readonly string[];
  maxItems?: number;
  modifiedSince?: string;
  modifiedBefore?: string;
}

/** What reading an inventory run found, beside the blobs it planned. */
export interface InventoryStats {
  rows: number;
  planned: number;
  /** Rows of other containers of the account. */
  otherContainers: number;
  /** Deleted blobs, snapshots and non-current versions. */
  notCurrent: number;
  filtered: number;
  duplicates: number;
  invalid: number;
}

/** The run's manifest, as Azure writes it. */
export interface InventoryManifest {
  destinationContainer?: string;
  endpoint?: string;
  files: { blob: string; size?: number }[];
  inventoryCompletionTime?: string;
  inventoryStartTime?: string;
  ruleDefinition?: { format?: string; objectType?: string; schemaFields?: string[] };
  ruleName?: string;
  status?: string;
  summary?: { objectCount?: number; totalObjectSize?: number };
  version?: string;
}

const PAGE = 1000;

function invalid(spec: InventorySpec, why: string, target = 'input.inventory.manifestBlob'): LakeInferError {
  return new LakeInferError('ManifestInvalid', `inventory manifest '${spec.container}/${spec.manifestBlob}': ${why}`, { target });
}

/** Reads and checks the run's manifest: a blob inventory of this account that succeeded. */
export async function readInventoryManifest(c: ContainerClient, input: ContainerClient, spec: InventorySpec): Promise<InventoryManifest> {
  let m: InventoryManifest | undefined;
  try {
    m = await readJson<InventoryManifest>(c, spec.manifestBlob);
  } catch (err) {
    throw invalid(spec, `not readable as JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (!m) throw new LakeInferError('BlobNotFound', `inventory manifest '${spec.container}/${spec.manifestBlob}' does not exist`, { target: 'input.inventory.manifestBlob' });
  if (!Array.isArray(m.files) || m.files.some((f) => typeof f?.blob !== 'string')) throw invalid(spec, 'has no list of files (files[].blob)');
  if (m.status !== undefined && m.status !== 'Succeeded') throw invalid(spec, `the run's status is '${m.status}', not 'Succeeded': its files may not list every blob; use a run that succeeded`);
  const objectType = m.ruleDefinition?.objectType;
  if (objectType !== undefined && objectType !== 'blob') throw invalid(spec, `the rule inventories ${objectType}s, not blobs (objectType 'blob')`);
  const format = m.ruleDefinition?.format;
  if (format !== undefined && format !== 'csv' && format !== 'parquet') throw invalid(spec, `format '${format}' is neither csv nor parquet`);
  if (m.endpoint) {
    const account = m.endpoint.replace(/\/+$/, '');
    if (!input.url.startsWith(`${account}/`)) throw invalid(spec, `it inventories the account at ${account}, not the one holding '${input.containerName}'`);
  }
  return m;
}

/** One inventory file's rows as records keyed by schema field (lower-cased), strings or numbers. */
async function* rowsOf(c: ContainerClient, blob: string, format: 'csv' | 'parquet'): AsyncGenerator<Record<string, unknown>> {
  if (format === 'csv') {
    let header: string[] | undefined;
    for await (const rec of csvRecords(textChunks(c, blob, 'reading the inventory'))) {
      if (rec.length === 1 && rec[0] === '') continue;
      if (!header) {
        // The first row of every inventory CSV file is the schema row.
        header = rec.map((h) => h.trim().toLowerCase());
        continue;
      }
      const row: Record<string, unknown> = {};
      header.forEach((h, i) => (row[h] = rec[i]));
      yield row;
    }
    return;
  }
  const { parquetMetadataAsync, parquetReadObjects } = await import('hyparquet');
  const file = await rangedBlob(c, blob, 'reading the inventory');
  const metadata = await parquetMetadataAsync(file).catch((err: unknown) => {
    throw new LakeInferError('ManifestInvalid', `inventory file '${blob}' is not a readable Parquet file: ${(err as Error).message}`, { target: 'input.inventory' });
  });
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    for (const r of (await parquetReadObjects({ file, metadata, rowStart, rowEnd })) as Record<string, unknown>[]) {
      const row: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(r)) row[k.toLowerCase()] = v;
      yield row;
    }
    rowStart = rowEnd;
  }
}

const text = (v: unknown): string | undefined => (v === undefined || v === null ? undefined : typeof v === 'string' ? v : String(v));

/** A time field: a CSV string, or Parquet's timestamp_millis (a Date, a number or a bigint of ms). */
function timeOf(v: unknown): Date | undefined {
  if (v instanceof Date) return v;
  if (typeof v === 'number' || typeof v === 'bigint') return new Date(Number(v));
  if (typeof v === 'string' && v.trim()) {
    const t = Date.parse(v);
    return Number.isFinite(t) ? new Date(t) : undefined;
  }
  return undefined;
}

const isTrue = (v: unknown): boolean => v === true || (typeof v === 'string' && v.trim().toLowerCase() === 'true');

/** The inventory's blobs of the input container as pages of references, filtered and deduplicated. */
export async function* inventoryPages(inventory: ContainerClient, input: ContainerClient, spec: InventorySpec, filters: InventoryFilters, stats: InventoryStats): AsyncGenerator<BlobPage> {
  const m = await readInventoryManifest(inventory, input, spec);
  const format = (m.ruleDefinition?.format ?? (m.files[0]?.blob.toLowerCase().endsWith('.parquet') ? 'parquet' : 'csv')) as 'csv' | 'parquet';
  const mine = `${input.containerName}/`;
  const inTime = timeFilter(filters);
  const seen = new FingerprintSet();
  const max = filters.maxItems ?? Number.POSITIVE_INFINITY;
  let page: BlobRef[] = [];
  for (const f of m.files) {
    for await (const row of rowsOf(inventory, f.blob, format)) {
      stats.rows++;
      const full = text(row['name']);
      if (full === undefined || !full.startsWith(mine)) {
        if (full === undefined) stats.invalid++;
        else stats.otherContainers++;
        continue;
      }
      if (isTrue(row['deleted']) || (text(row['snapshot']) ?? '') !== '' || text(row['iscurrentversion'])?.toLowerCase() === 'false' || row['iscurrentversion'] === false) {
        stats.notCurrent++;
        continue;
      }
      if (isTrue(row['hdi_isfolder'])) {
        // A folder of a hierarchical-namespace account, not a file.
        stats.filtered++;
        continue;
      }
      const name = full.slice(mine.length);
      if (name === '' || name.endsWith('/') || nameProblem(name) !== undefined) {
        stats.invalid++;
        continue;
      }
      if ((filters.prefix && !name.startsWith(filters.prefix)) || !matchesExtension(name, filters.extensions) || !inTime(timeOf(row['last-modified'])) || stats.planned >= max) {
        stats.filtered++;
        continue;
      }
      if (!seen.add(name)) {
        stats.duplicates++;
        continue;
      }
      stats.planned++;
      const md5 = text(row['content-md5']);
      page.push({ name, etag: (text(row['etag']) ?? '').replace(/^"|"$/g, ''), size: Number(text(row['content-length']) ?? 0) || 0, ...(md5 ? { md5 } : {}) });
      if (page.length >= PAGE) {
        yield { items: page, continuationToken: undefined };
        page = [];
      }
    }
  }
  if (page.length > 0) yield { items: page, continuationToken: undefined };
}
