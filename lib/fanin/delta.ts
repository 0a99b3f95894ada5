/**
 * Results as a Delta table: `_delta_log/<version>.json` commits (Delta protocol, reader 1 /
 * writer 2) over the Parquet parts the partitions wrote, so Spark/Databricks/Fabric and delta-rs
 * read the folder as a table with versions and history, while plain Parquet readers (which skip
 * `_`-prefixed folders) read the parts as before. Two kinds of table:
 *
 * - a job's own (`<jobPrefix>results.parquet/`): each finalize commits the difference between the
 *   table's files and the parts the job's partitions name;
 * - a table shared by jobs (`output.table`), partitioned by `job_id`: the parts of a job live in
 *   `job_id=<jobId>/` under the table, and its finalize commits the difference within its own
 *   partition only (other jobs' files are never removed).
 *
 * `add` carries the part's size and statistics (numRecords, nullCount, min/max of numeric and short
 * string columns), `remove` a part no partition names any more (an earlier run's or split's): a
 * continuous job's batches are atomic appends, a resumed or restarted job's rewritten parts replace
 * its old ones in one commit (a reader never sees two runs' rows). Nothing changed: no commit. The
 * first commit holds the protocol and the metadata (the schema of RESULT_COLUMNS). Commits are
 * created only if absent (If-None-Match: *): of two writers of one version exactly one wins; the
 * other reads the log again and commits what is still missing. Every CHECKPOINT_EVERY versions a
 * checkpoint (Parquet, the protocol's classic checkpoint schema) and `_last_checkpoint` are
 * written, so readers (and this code) start from it instead of replaying every commit. The parts a
 * commit removes are deleted only after it is committed (by finalize).
 */
import { createHash } from 'node:crypto';
import type { ContainerClient } from '@azure/storage-blob';
import { LakeInferError } from '../util/errors';
import { RESULT_COLUMNS, type ColumnType } from '../partition/parquet';
import { readBlob, readJson, writeBlob, writeJson } from '../storage';

export const DELTA_LOG = '_delta_log/';
/** A checkpoint every this many versions (Delta's default interval). */
export const CHECKPOINT_EVERY = 10;
/** How long a shared table keeps a removed file for readers of older versions (Delta's default, one week). */
export const DELETED_FILE_RETENTION_MS = 7 * 24 * 3600 * 1000;

export interface DeltaFile {
  /** Relative to the table's folder. */
  path: string;
  size: number;
  rows: number;
  /** Delta statistics (JSON); absent: the row count only. */
  stats?: string;
}

export interface DeltaCommit {
  /** The table's version after this finalize. */
  version: number;
  /** Whether this finalize wrote a commit. */
  committed: boolean;
  added: number;
  removed: number;
  /** Whether it also wrote a checkpoint. */
  checkpoint?: boolean;
}

interface AddAction {
  path: string;
  partitionValues: Record<string, string>;
  size: number;
  modificationTime: number;
  dataChange: boolean;
  stats?: string;
}

interface MetaData {
  id: string;
  name?: string;
  format: { provider: string; options: Record<string, string> };
  schemaString: string;
  partitionColumns: string[];
  configuration: Record<string, string>;
  createdTime?: number;
}

export interface DeltaState {
  version: number;
  /** Active files by path (decoded), with their add actions. */
  adds: Map<string, AddAction>;
  /** Files removed (tombstones), by path, with when (ms): kept for readers of older versions until the retention passes. */
  removed: Map<string, number>;
  protocol?: { minReaderVersion: number; minWriterVersion: number };
  metaData?: MetaData;
}

const DELTA_TYPE: Record<ColumnType, string> = { STRING: 'string', INT32: 'integer', DOUBLE: 'double' };

export function deltaSchemaString(): string {
  return JSON.stringify({ type: 'struct', fields: RESULT_COLUMNS.map((c) => ({ name: c.name, type: DELTA_TYPE[c.type], nullable: true, metadata: { comment: c.doc } })) });
}

const pad = (version: number): string => String(version).padStart(20, '0');
export const commitName = (version: number): string => `${DELTA_LOG}${pad(version)}.json`;
export const checkpointName = (version: number): string => `${DELTA_LOG}${pad(version)}.checkpoint.parquet`;
export const LAST_CHECKPOINT = `${DELTA_LOG}_last_checkpoint`;

/** Applies one commit's actions to the state. */
function apply(state: DeltaState, text: string): void {
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const a = JSON.parse(line) as { add?: AddAction; remove?: { path: string; deletionTimestamp?: number }; metaData?: MetaData; protocol?: DeltaState['protocol'] };
    if (a.add) {
      state.adds.set(decodeURIComponent(a.add.path), a.add);
      state.removed.delete(decodeURIComponent(a.add.path));
    }
    if (a.remove) {
      state.adds.delete(decodeURIComponent(a.remove.path));
      state.removed.set(decodeURIComponent(a.remove.path), Number(a.remove.deletionTimestamp ?? 0));
    }
    if (a.metaData) state.metaData = a.metaData;
    if (a.protocol) state.protocol = a.protocol;
  }
}

/** A map as the checkpoint stores it (Parquet MAP: a list of key/value pairs, or an object). */
function mapOf(v: unknown): Record<string, string> {
  if (!v) return {};
  if (Array.isArray(v)) return Object.fromEntries(v.map((kv: { key: string; value: string }) => [kv.key, kv.value]));
  return v as Record<string, string>;
}

/** The state a checkpoint holds (read with hyparquet, a row group at a time). */
async function readCheckpoint(output: ContainerClient, table: string, version: number): Promise<DeltaState | undefined> {
  const got = await readBlob(output, `${table}${checkpointName(version)}`);
  if (!got) return undefined;
  const { parquetReadObjects } = await import('hyparquet');
  const buf = got.data;
  const file = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
  const rows = (await parquetReadObjects({ file })) as { add?: AddAction | null; remove?: { path: string; deletionTimestamp?: unknown } | null; metaData?: MetaData | null; protocol?: DeltaState['protocol'] | null }[];
  const state: DeltaState = { version, adds: new Map(), removed: new Map() };
  for (const r of rows) {
    if (r.add) {
      const add = { ...r.add, partitionValues: mapOf(r.add.partitionValues), size: Number(r.add.size), modificationTime: Number(r.add.modificationTime) };
      state.adds.set(decodeURIComponent(add.path), add);
    }
    if (r.remove) state.removed.set(decodeURIComponent(r.remove.path), Number(r.remove.deletionTimestamp ?? 0));
    if (r.metaData) state.metaData = { ...r.metaData, format: { provider: r.metaData.format?.provider ?? 'parquet', options: mapOf(r.metaData.format?.options) }, partitionColumns: r.metaData.partitionColumns ?? [], configuration: mapOf(r.metaData.configuration), ...(r.metaData.createdTime !== undefined && r.metaData.createdTime !== null ? { createdTime: Number(r.metaData.createdTime) } : {}) };
    if (r.protocol) state.protocol = { minReaderVersion: Number(r.protocol.minReaderVersion), minWriterVersion: Number(r.protocol.minWriterVersion) };
  }
  return state;
}

/** The table's latest state: from its last checkpoint (if any), then the JSON commits after it. */
export async function readDeltaState(output: ContainerClient, table: string): Promise<DeltaState> {
  const versions: number[] = [];
  for await (const b of output.listBlobsFlat({ prefix: `${table}${DELTA_LOG}` })) {
    const m = /^(\d{20})\.json$/.exec(b.name.slice(table.length + DELTA_LOG.length));
    if (m) versions.push(Number(m[1]));
  }
  versions.sort((a, b) => a - b);
  const last = await readJson<{ version: number }>(output, `${table}${LAST_CHECKPOINT}`).catch(() => undefined);
  const fromCheckpoint = last && Number.isInteger(last.version) && versions.includes(last.version) ? await readCheckpoint(output, table, last.version) : undefined;
  const state: DeltaState = fromCheckpoint ?? { version: -1, adds: new Map(), removed: new Map() };
  const todo = versions.filter((v) => v > state.version);
  todo.forEach((v, i) => {
    if (v !== state.version + 1 + i) throw new LakeInferError('PlanInvalid', `the Delta log of ${table} misses version ${state.version + 1 + i} (it has ${versions.slice(0, 5).join(', ')}...)`);
  });
  for (const v of todo) apply(state, (await readBlob(output, `${table}${commitName(v)}`))?.data.toString('utf8') ?? '');
  state.version = versions.length ? versions[versions.length - 1]! : -1;
  return state;
}

/** The table's latest version and its active files. */
export async function readDeltaLog(output: ContainerClient, table: string): Promise<{ version: number; files: Set<string> }> {
  const s = await readDeltaState(output, table);
  return { version: s.version, files: new Set(s.adds.keys()) };
}

/** A stable table id per table folder (the metaData id). */
function tableId(table: string): string {
  const h = createHash('sha1').update(table).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export interface CommitInfo {
  jobId: string;
  operation: string;
  now: number;
  /** A table shared by jobs: this job's partition (job_id) is the scope of its commit. */
  partitioned?: boolean;
  /** The table's name in its metadata (a job's table: the jobId). */
  name?: string;
}

/**
 * Commits `want` as the active files (of the whole table, or of the job's partition of a shared
 * table) in one commit for the whole difference, retrying when another writer took the version.
 */
export async function commitDelta(output: ContainerClient, table: string, want: readonly DeltaFile[], info: CommitInfo): Promise<DeltaCommit> {
  const mine = (a: AddAction): boolean => !info.partitioned || a.partitionValues?.['job_id'] === info.jobId;
  for (let attempt = 0; attempt < 20; attempt++) {
    const state = await readDeltaState(output, table);
    const { version } = state;
    if (state.metaData && (state.metaData.partitionColumns.includes('job_id') !== Boolean(info.partitioned))) {
      throw new LakeInferError('OutputConflict', `the Delta table at '${table}' is ${info.partitioned ? 'not partitioned by job_id (a job\'s own table)' : 'a table shared by jobs (partitioned by job_id)'}; choose another output.table.path`, { target: 'output.table' });
    }
    const wanted = new Set(want.map((f) => f.path));
    const adds = want.filter((f) => !state.adds.has(f.path));
    const removes = [...state.adds.values()].filter((a) => mine(a) && !wanted.has(decodeURIComponent(a.path))).map((a) => decodeURIComponent(a.path));
    if (version >= 0 && adds.length === 0 && removes.length === 0) return { version, committed: false, added: 0, removed: 0 };
    const next = version + 1;
    const partitionValues: Record<string, string> = info.partitioned ? { job_id: info.jobId } : {};
    const lines: unknown[] = [{ commitInfo: { timestamp: info.now, operation: info.operation, operationParameters: { jobId: info.jobId }, engineInfo: 'lakeinfer', isBlindAppend: removes.length === 0 } }];
    const protocol = { minReaderVersion: 1, minWriterVersion: 2 };
    const metaData: MetaData = { id: tableId(table), name: info.name ?? info.jobId, format: { provider: 'parquet', options: {} }, schemaString: deltaSchemaString(), partitionColumns: info.partitioned ? ['job_id'] : [], configuration: {}, createdTime: info.now };
    if (next === 0) lines.push({ protocol }, { metaData });
    for (const p of removes) lines.push({ remove: { path: encodePath(p), deletionTimestamp: info.now, dataChange: true, partitionValues } });
    const added: AddAction[] = adds.map((f) => ({ path: encodePath(f.path), partitionValues, size: f.size, modificationTime: info.now, dataChange: true, stats: f.stats ?? JSON.stringify({ numRecords: f.rows }) }));
    for (const a of added) lines.push({ add: a });
    const body = `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`;
    const written = await writeBlob(output, `${table}${commitName(next)}`, body, { ifNotExists: true, contentType: 'application/json' });
    if (written === false) continue; // another writer committed this version first: read the log again
    let checkpoint = false;
    if (next > 0 && next % CHECKPOINT_EVERY === 0) {
      for (const p of removes) {
        state.adds.delete(p);
        state.removed.set(p, info.now);
      }
      for (const a of added) state.adds.set(decodeURIComponent(a.path), a);
      await writeCheckpoint(output, table, { version: next, adds: state.adds, removed: state.removed, protocol: state.protocol ?? protocol, metaData: state.metaData ?? metaData }, info.now);
      checkpoint = true;
    }
    return { version: next, committed: true, added: adds.length, removed: removes.length, ...(checkpoint ? { checkpoint } : {}) };
  }
  throw new LakeInferError('StorageUnavailable', `could not commit to the Delta log of ${table}: 20 other commits came first`, { retryable: true });
}

// hyparquet-writer is an ES module; this project is CommonJS: loaded on first use.
interface NestedWriter {
  parquetWriteBuffer(o: { columnData: { name: string; data: unknown[] }[]; schema: unknown[]; codec: 'SNAPPY'; statistics: boolean }): ArrayBuffer;
}

/**
 * The classic checkpoint: one Parquet file whose rows are the protocol, the metadata and an `add`
 * (dataChange false) per active file, in the checkpoint schema of the Delta protocol (struct
 * columns add, remove, metaData, protocol; maps as key_value groups), then `_last_checkpoint`.
 */
export async function writeCheckpoint(output: ContainerClient, table: string, state: Required<Pick<DeltaState, 'version' | 'adds' | 'removed' | 'protocol' | 'metaData'>>, now = Date.now()): Promise<void> {
  const { parquetWriteBuffer } = (await import('hyparquet-writer')) as unknown as NestedWriter;
  const S = (name: string, rep = 'OPTIONAL') => ({ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: rep });
  const L = (name: string) => ({ name, type: 'INT64', repetition_type: 'OPTIONAL' });
  const B = (name: string) => ({ name, type: 'BOOLEAN', repetition_type: 'OPTIONAL' });
  const I = (name: string) => ({ name, type: 'INT32', repetition_type: 'OPTIONAL' });
  const map = (name: string) => [{ name, repetition_type: 'OPTIONAL', converted_type: 'MAP', num_children: 1 }, { name: 'key_value', repetition_type: 'REPEATED', num_children: 2 }, S('key', 'REQUIRED'), S('value')];
  const list = (name: string) => [{ name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 }, { name: 'list', repetition_type: 'REPEATED', num_children: 1 }, S('element')];
  const schema = [
    { name: 'spark_schema', num_children: 4 },
    { name: 'add', repetition_type: 'OPTIONAL', num_children: 6 }, S('path'), ...map('partitionValues'), L('size'), L('modificationTime'), B('dataChange'), S('stats'),
    { name: 'remove', repetition_type: 'OPTIONAL', num_children: 3 }, S('path'), L('deletionTimestamp'), B('dataChange'),
    { name: 'metaData', repetition_type: 'OPTIONAL', num_children: 8 }, S('id'), S('name'), { name: 'format', repetition_type: 'OPTIONAL', num_children: 2 }, S('provider'), ...map('options'), S('schemaString'), ...list('partitionColumns'), ...map('configuration'), L('createdTime'), S('description'),
    { name: 'protocol', repetition_type: 'OPTIONAL', num_children: 2 }, I('minReaderVersion'), I('minWriterVersion'),
  ];
  const m = state.metaData;
  const rows: Record<string, unknown>[] = [
    { protocol: state.protocol },
    { metaData: { id: m.id, name: m.name ?? null, format: { provider: m.format.provider, options: m.format.options }, schemaString: m.schemaString, partitionColumns: m.partitionColumns, configuration: m.configuration, createdTime: m.createdTime === undefined ? null : BigInt(m.createdTime), description: null } },
    ...[...state.adds.values()].map((a) => ({ add: { path: a.path, partitionValues: a.partitionValues ?? {}, size: BigInt(a.size), modificationTime: BigInt(a.modificationTime), dataChange: false, stats: a.stats ?? null } })),
    // Tombstones within the retention: a reader of an older version (and a later clean-up) knows them.
    ...[...state.removed].filter(([, at]) => at >= now - DELETED_FILE_RETENTION_MS).map(([path, at]) => ({ remove: { path: encodePath(path), deletionTimestamp: BigInt(at), dataChange: false } })),
  ];
  const columnData = ['add', 'remove', 'metaData', 'protocol'].map((name) => ({ name, data: rows.map((r) => r[name] ?? null) }));
  const buf = Buffer.from(parquetWriteBuffer({ columnData, schema, codec: 'SNAPPY', statistics: false }));
  await writeBlob(output, `${table}${checkpointName(state.version)}`, buf);
  // _last_checkpoint moves forward only (a slower writer of an older checkpoint leaves it).
  const last = await readJson<{ version: number }>(output, `${table}${LAST_CHECKPOINT}`).catch(() => undefined);
  if (!last || !(last.version >= state.version)) await writeJson(output, `${table}${LAST_CHECKPOINT}`, { version: state.version, size: rows.length });
}

/** Delta paths are URIs relative to the table (RFC 2396 escaping). */
function encodePath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}
