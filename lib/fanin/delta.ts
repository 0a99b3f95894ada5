/**
 * The job's Parquet dataset as a Delta table: `results.parquet/_delta_log/<version>.json` commits
 * (Delta protocol, reader 1 / writer 2) over the same part files, so Spark/Databricks/Fabric and
 * delta-rs read the folder as a table with versions and history, while plain Parquet readers
 * (which skip `_`-prefixed folders) read it as before.
 *
 * - Each finalize commits the difference between the table's files and the parts the partitions
 *   name: `add` for new parts (size, numRecords statistics), `remove` for parts no partition names
 *   any more (an earlier run's or split's). A continuous job's batches are atomic appends; a
 *   resumed job's rewritten parts replace its old ones in one commit, so a reader never sees two
 *   runs' rows. Nothing changed: no commit.
 * - The first commit holds the protocol and the metadata (the schema of RESULT_COLUMNS).
 * - Commits are created only if absent (If-None-Match: *): of two writers of one version exactly
 *   one wins; the other reads the log again and commits what is still missing.
 * - The part files a commit removes are deleted only after it is committed (by finalize).
 * Not written: checkpoints (readers replay the JSON commits; a job's table has one commit per
 * finalize), a table shared across jobs, column statistics beyond the row count.
 */
import { createHash } from 'node:crypto';
import type { ContainerClient } from '@azure/storage-blob';
import { LakeInferError } from '../util/errors';
import { RESULT_COLUMNS, type ColumnType } from '../partition/parquet';
import { readBlob, writeBlob } from '../storage';

export const DELTA_LOG = '_delta_log/';

export interface DeltaFile {
  /** Relative to the table's folder. */
  path: string;
  size: number;
  rows: number;
}

export interface DeltaCommit {
  /** The table's version after this finalize (undefined: no table yet and nothing to commit). */
  version: number;
  /** Whether this finalize wrote a commit. */
  committed: boolean;
  added: number;
  removed: number;
}

const DELTA_TYPE: Record<ColumnType, string> = { STRING: 'string', INT32: 'integer', DOUBLE: 'double' };

export function deltaSchemaString(): string {
  return JSON.stringify({ type: 'struct', fields: RESULT_COLUMNS.map((c) => ({ name: c.name, type: DELTA_TYPE[c.type], nullable: true, metadata: { comment: c.doc } })) });
}

export const commitName = (version: number): string => `${DELTA_LOG}${String(version).padStart(20, '0')}.json`;

/** The table's latest version and its active files (replaying its JSON commits in order). */
export async function readDeltaLog(output: ContainerClient, table: string): Promise<{ version: number; files: Set<string> }> {
  const versions: number[] = [];
  for await (const b of output.listBlobsFlat({ prefix: `${table}${DELTA_LOG}` })) {
    const m = /^(\d{20})\.json$/.exec(b.name.slice(table.length + DELTA_LOG.length));
    if (m) versions.push(Number(m[1]));
  }
  versions.sort((a, b) => a - b);
  const files = new Set<string>();
  versions.forEach((v, i) => {
    if (v !== i) throw new LakeInferError('PlanInvalid', `the Delta log of ${table} misses version ${i} (it has ${versions.slice(0, 5).join(', ')}...)`);
  });
  for (const v of versions) {
    const blob = await readBlob(output, `${table}${commitName(v)}`);
    for (const line of (blob?.data.toString('utf8') ?? '').split('\n')) {
      if (!line.trim()) continue;
      const action = JSON.parse(line) as { add?: { path: string }; remove?: { path: string } };
      if (action.add) files.add(decodeURIComponent(action.add.path));
      if (action.remove) files.delete(decodeURIComponent(action.remove.path));
    }
  }
  return { version: versions.length - 1, files };
}

/** A stable table id per job folder (the metaData id). */
function tableId(table: string): string {
  const h = createHash('sha1').update(table).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * Commits `want` as the table's active files (one commit for the whole difference), retrying
 * when another writer took the version.
 */
export async function commitDelta(output: ContainerClient, table: string, want: readonly DeltaFile[], info: { jobId: string; operation: string; now: number }): Promise<DeltaCommit> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const { version, files } = await readDeltaLog(output, table);
    const wanted = new Set(want.map((f) => f.path));
    const adds = want.filter((f) => !files.has(f.path));
    const removes = [...files].filter((p) => !wanted.has(p));
    if (version >= 0 && adds.length === 0 && removes.length === 0) return { version, committed: false, added: 0, removed: 0 };
    const next = version + 1;
    const lines: unknown[] = [{ commitInfo: { timestamp: info.now, operation: info.operation, operationParameters: { jobId: info.jobId }, engineInfo: 'lakeinfer', isBlindAppend: removes.length === 0 } }];
    if (next === 0) {
      lines.push({ protocol: { minReaderVersion: 1, minWriterVersion: 2 } });
      lines.push({ metaData: { id: tableId(table), name: info.jobId, format: { provider: 'parquet', options: {} }, schemaString: deltaSchemaString(), partitionColumns: [], configuration: {}, createdTime: info.now } });
    }
    for (const p of removes) lines.push({ remove: { path: encodePath(p), deletionTimestamp: info.now, dataChange: true } });
    for (const f of adds) lines.push({ add: { path: encodePath(f.path), partitionValues: {}, size: f.size, modificationTime: info.now, dataChange: true, stats: JSON.stringify({ numRecords: f.rows }) } });
    const body = `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`;
    const written = await writeBlob(output, `${table}${commitName(next)}`, body, { ifNotExists: true, contentType: 'application/json' });
    if (written !== false) return { version: next, committed: true, added: adds.length, removed: removes.length };
    // Another writer committed this version first: read the log again.
  }
  throw new LakeInferError('StorageUnavailable', `could not commit to the Delta log of ${table}: 20 other commits came first`, { retryable: true });
}

/** Delta paths are URIs relative to the table (RFC 2396 escaping). */
function encodePath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}
