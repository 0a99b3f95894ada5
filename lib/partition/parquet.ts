/**
 * Results as a Parquet dataset: each partition piece writes `results.parquet/part-<n>-<from>.parquet`
 * under the job's folder, a folder Spark, Databricks, Synapse, Fabric, DuckDB and pandas read as one
 * table. One row per detection (or per class of a classifier), one row for an image with none, one
 * row per failed image; snappy-compressed (hyparquet-writer: pure JavaScript, ~1 MB with its reader,
 * no native build). The schema is RESULT_COLUMNS, documented in the README.
 */
import type { FailureRecord, ImageResult } from './parts';

export type ColumnType = 'STRING' | 'INT32' | 'DOUBLE';

/** Column name, type, and what it holds (README "Parquet results" is this table). */
export const RESULT_COLUMNS: readonly { name: string; type: ColumnType; doc: string }[] = [
  { name: 'job_id', type: 'STRING', doc: 'the job' },
  { name: 'image', type: 'STRING', doc: 'input blob name' },
  { name: 'image_container', type: 'STRING', doc: 'input container' },
  { name: 'image_etag', type: 'STRING', doc: 'ETag of the input blob that was read' },
  { name: 'status', type: 'STRING', doc: "'ok' or 'failed'" },
  { name: 'kind', type: 'STRING', doc: "'detection', 'class' (classifier), 'none' (an image without detections) or 'failure'" },
  { name: 'width', type: 'INT32', doc: 'image width in pixels (after EXIF orientation); null on failure' },
  { name: 'height', type: 'INT32', doc: 'image height in pixels; null on failure' },
  { name: 'detection_index', type: 'INT32', doc: 'position of the detection (or class rank) in the image, from 0; null for none/failure' },
  { name: 'category_id', type: 'INT32', doc: "dataset category id (COCO's official ids for COCO models)" },
  { name: 'label', type: 'STRING', doc: 'class name' },
  { name: 'score', type: 'DOUBLE', doc: 'confidence' },
  { name: 'bbox_x', type: 'DOUBLE', doc: 'box left, original-image pixels (COCO bbox [x, y, w, h])' },
  { name: 'bbox_y', type: 'DOUBLE', doc: 'box top' },
  { name: 'bbox_w', type: 'DOUBLE', doc: 'box width' },
  { name: 'bbox_h', type: 'DOUBLE', doc: 'box height' },
  { name: 'mask_rle', type: 'STRING', doc: "instance mask as a COCO compressed RLE 'counts' string of size [height, width] (pycocotools decodes it)" },
  { name: 'mask_area', type: 'INT32', doc: 'mask area in pixels' },
  { name: 'polygon', type: 'STRING', doc: 'text detection: the quadrilateral as JSON [[x, y], ...], clockwise from the top-left' },
  { name: 'model_name', type: 'STRING', doc: 'model' },
  { name: 'model_etag', type: 'STRING', doc: 'ETag of the model.onnx used (one per job)' },
  { name: 'download_ms', type: 'DOUBLE', doc: 'time to download the image' },
  { name: 'decode_ms', type: 'DOUBLE', doc: 'decode and preprocess' },
  { name: 'infer_ms', type: 'DOUBLE', doc: 'onnxruntime share of its batch' },
  { name: 'post_ms', type: 'DOUBLE', doc: 'postprocessing' },
  { name: 'error_stage', type: 'STRING', doc: 'failed images: download, decode, infer, postprocess or write' },
  { name: 'error_code', type: 'STRING', doc: 'failed images: the error code (ImageDecodeFailed, ...)' },
  { name: 'error_message', type: 'STRING', doc: 'failed images: the message' },
  { name: 'media', type: 'STRING', doc: "'image', or 'video' for a row of a video frame" },
  { name: 'frame_index', type: 'INT32', doc: "video frames: the frame's index in the video (presentation order, as cv2.VideoCapture numbers frames); null for images" },
  { name: 'frame_time_s', type: 'DOUBLE', doc: "video frames: the frame's time from the video's first frame, in seconds (its presentation timestamp); null for images" },
];

type Row = Record<string, string | number | null>;

/** One piece's items in plan order: results (ok or reused) and failures (with the plan's ETag). */
export type ParquetItem = { result: ImageResult } | { failure: FailureRecord; container: string; etag: string };

function resultRows(jobId: string, r: ImageResult): Row[] {
  const base: Row = {
    job_id: jobId,
    image: r.source.name,
    image_container: r.source.container,
    image_etag: r.source.etag,
    status: 'ok',
    media: r.frame ? 'video' : 'image',
    frame_index: r.frame ? r.frame.index : null,
    frame_time_s: r.frame ? r.frame.time : null,
    width: r.width,
    height: r.height,
    model_name: r.model.name,
    model_etag: r.model.etag,
    download_ms: r.timings.downloadMs,
    decode_ms: r.timings.decodeMs,
    infer_ms: r.timings.inferMs,
    post_ms: r.timings.postMs,
  };
  if (r.detections.length > 0) {
    return r.detections.map((d, i) => ({
      ...base,
      kind: 'detection',
      detection_index: i,
      category_id: d.category_id,
      label: d.label,
      score: d.score,
      bbox_x: d.bbox[0],
      bbox_y: d.bbox[1],
      bbox_w: d.bbox[2],
      bbox_h: d.bbox[3],
      mask_rle: d.segmentation ? d.segmentation.counts : null,
      mask_area: d.area ?? null,
      polygon: d.polygon ? JSON.stringify(d.polygon) : null,
    }));
  }
  if (r.classes && r.classes.length > 0) {
    return r.classes.map((c, i) => ({ ...base, kind: 'class', detection_index: i, category_id: c.category_id, label: c.label, score: c.score }));
  }
  return [{ ...base, kind: 'none' }];
}

function failureRow(jobId: string, f: FailureRecord, container: string, etag: string, model: { name: string; etag: string }): Row {
  return { job_id: jobId, image: f.blob, image_container: container, image_etag: etag, status: 'failed', kind: 'failure', media: f.frame !== undefined || f.stage === 'probe' ? 'video' : 'image', frame_index: f.frame ?? null, model_name: model.name, model_etag: model.etag, error_stage: f.stage, error_code: f.code, error_message: f.message };
}

/** The rows of one piece, in plan order. */
export function parquetRows(jobId: string, items: ParquetItem[], model: { name: string; etag: string }): Row[] {
  const rows: Row[] = [];
  for (const it of items) {
    if ('result' in it) rows.push(...resultRows(jobId, it.result));
    else rows.push(failureRow(jobId, it.failure, it.container, it.etag, model));
  }
  return rows;
}

// hyparquet-writer is an ES module; this project is CommonJS: load it once, on first use.
interface Writer {
  parquetWriteBuffer(o: { columnData: { name: string; type: ColumnType; nullable: boolean; data: (string | number | null)[] }[]; codec: 'SNAPPY'; statistics: boolean; kvMetadata: { key: string; value: string }[] }): ArrayBuffer;
}
let writer: Promise<Writer> | undefined;

/**
 * The rows as one snappy-compressed Parquet file with RESULT_COLUMNS (every column nullable). At
 * least one row: a row-less file from this writer is not read by every engine (arrow-rs refuses
 * it), and a dataset part must be readable by all of them. A piece always has a row per image.
 */
export async function parquetFile(rows: Row[], metadata: Record<string, string> = {}): Promise<Buffer> {
  if (rows.length === 0) throw new Error('a Parquet part needs at least one row');
  writer ??= import('hyparquet-writer') as Promise<Writer>;
  const { parquetWriteBuffer } = await writer;
  const columnData = RESULT_COLUMNS.map((c) => ({
    name: c.name,
    type: c.type,
    nullable: true,
    data: rows.map((r) => {
      const v = r[c.name];
      return v === undefined ? null : v;
    }),
  }));
  const buf = parquetWriteBuffer({ columnData, codec: 'SNAPPY', statistics: true, kvMetadata: Object.entries(metadata).map(([key, value]) => ({ key, value })) });
  return Buffer.from(buf);
}

/**
 * A Parquet file with RESULT_COLUMNS and no rows (no row groups): the part a dataset with no rows
 * holds, so readers see the schema and 0 rows instead of "no files found". hyparquet-writer
 * encodes the empty row_groups list with no element type (0) or BYTE, which arrow-rs (DuckDB's and
 * pyarrow's readers are as strict) refuses ("Expected list element type of Struct"); the thrift
 * compact header is corrected to an empty list of structs (same length, so offsets hold).
 */
export async function emptyParquetFile(metadata: Record<string, string> = {}): Promise<Buffer> {
  writer ??= import('hyparquet-writer') as Promise<Writer>;
  const { parquetWriteBuffer } = await writer;
  const columnData = RESULT_COLUMNS.map((c) => ({ name: c.name, type: c.type, nullable: true, data: [] as null[] }));
  const buf = Buffer.from(parquetWriteBuffer({ columnData, codec: 'SNAPPY', statistics: true, kvMetadata: Object.entries(metadata).map(([key, value]) => ({ key, value })) }));
  // FileMetaData: ... field 3 num_rows = 0 (header 0x16, zigzag 0x00), field 4 row_groups: list header.
  const footerLen = buf.readUInt32LE(buf.length - 8);
  const footerStart = buf.length - 8 - footerLen;
  const footer = buf.subarray(footerStart, buf.length - 8);
  let at = footer.indexOf(Buffer.from([0x16, 0x00, 0x19, 0x00]));
  if (at < 0) at = footer.indexOf(Buffer.from([0x16, 0x00, 0x19, 0x03]));
  if (at < 0) throw new Error('unexpected footer from hyparquet-writer: cannot mark its empty row_groups list as a list of structs');
  buf[footerStart + at + 3] = 0x0c;
  return buf;
}

/** String columns whose min/max go into Delta statistics (short values; readers skip files by them). */
const STAT_STRINGS = new Set(['job_id', 'image_container', 'status', 'kind', 'label', 'model_name', 'media', 'error_stage', 'error_code']);
/** Longest string a min/max keeps (a longer value leaves its column without min/max: no truncation). */
const STAT_STRING_MAX = 64;

/**
 * A part's Delta statistics (the `stats` of its `add` action): numRecords, nullCount of every
 * column, and minValues/maxValues of the numeric columns and of short string columns (compared as
 * UTF-8 bytes, as Spark and delta-rs compare them), so that readers can skip files.
 */
export function deltaStats(rows: readonly Row[]): string {
  const nullCount: Record<string, number> = {};
  const minValues: Record<string, string | number> = {};
  const maxValues: Record<string, string | number> = {};
  for (const c of RESULT_COLUMNS) {
    let nulls = 0;
    let lo: string | number | undefined;
    let hi: string | number | undefined;
    let skip = c.type === 'STRING' && !STAT_STRINGS.has(c.name);
    for (const r of rows) {
      const v = r[c.name];
      if (v === null || v === undefined) {
        nulls++;
        continue;
      }
      if (skip) continue;
      if (typeof v === 'number') {
        if (!Number.isFinite(v)) {
          skip = true;
          continue;
        }
        if (lo === undefined || v < (lo as number)) lo = v;
        if (hi === undefined || v > (hi as number)) hi = v;
      } else {
        if (v.length > STAT_STRING_MAX) {
          skip = true;
          continue;
        }
        if (lo === undefined || Buffer.compare(Buffer.from(v), Buffer.from(lo as string)) < 0) lo = v;
        if (hi === undefined || Buffer.compare(Buffer.from(v), Buffer.from(hi as string)) > 0) hi = v;
      }
    }
    nullCount[c.name] = nulls;
    if (!skip && lo !== undefined && hi !== undefined) {
      minValues[c.name] = lo;
      maxValues[c.name] = hi;
    }
  }
  return JSON.stringify({ numRecords: rows.length, minValues, maxValues, nullCount });
}

/** The part of a dataset that has no rows yet (removed by finalize once real parts exist). */
export const EMPTY_PART = 'results.parquet/part-empty.parquet';

/** Where a piece's part goes, relative to the job folder: `results.parquet/part-00042-000000.parquet`. */
export function parquetPartName(n: number, from: number): string {
  return `results.parquet/part-${String(n).padStart(5, '0')}-${String(from).padStart(6, '0')}.parquet`;
}

export const PARQUET_DATASET = 'results.parquet/';
