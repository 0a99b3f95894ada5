/**
 * Reading Parquet in tests with an independent implementation: parquet-wasm (the Rust `parquet`
 * crate compiled to WebAssembly) into Apache Arrow, not the JavaScript library that wrote the files.
 */
import { tableFromIPC } from 'apache-arrow';
import { readParquet } from 'parquet-wasm';

/** Every row of a Parquet file as plain objects, by an independent implementation. */
export function readParquetRows(buf: Uint8Array): { columns: { name: string; type: string; nullable: boolean }[]; rows: Record<string, unknown>[] } {
  const table = tableFromIPC(readParquet(buf).intoIPCStream());
  return {
    columns: table.schema.fields.map((f) => ({ name: f.name, type: String(f.type), nullable: f.nullable })),
    rows: table.toArray().map((r) => r.toJSON() as Record<string, unknown>),
  };
}

/** The codec of every column chunk, from the file footer (hyparquet's metadata reader). */
export async function codecs(buf: Uint8Array): Promise<string[]> {
  const { parquetMetadata } = await import('hyparquet');
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
  return parquetMetadata(ab).row_groups.flatMap((g) => g.columns.map((c) => String(c.meta_data?.codec)));
}

