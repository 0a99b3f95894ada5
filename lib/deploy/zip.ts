/**
 * A small streaming ZIP writer (deflate, CRC-32, 32-bit sizes) and a central-directory reader:
 * enough to build and check the Function App package without a zip tool on the machine.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { deflateRawSync, inflateRawSync } from 'node:zlib';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

interface Entry {
  name: Buffer;
  crc: number;
  compressed: number;
  size: number;
  method: number;
  offset: number;
  mode: number;
}

export class ZipWriter {
  private readonly out: WriteStream;
  private readonly entries: Entry[] = [];
  private offset = 0;

  constructor(path: string) {
    this.out = createWriteStream(path);
  }

  private write(b: Buffer): Promise<void> {
    this.offset += b.length;
    return new Promise((resolve, reject) => this.out.write(b, (err) => (err ? reject(err) : resolve())));
  }

  /** Adds a file; `mode` keeps the executable bit of native binaries. */
  async add(name: string, data: Buffer, mode = 0o644): Promise<void> {
    const nameBuf = Buffer.from(name.replace(/\\/g, '/'), 'utf8');
    const deflated = data.length > 64 ? deflateRawSync(data, { level: 6 }) : undefined;
    const useDeflate = deflated !== undefined && deflated.length < data.length;
    const body = useDeflate ? deflated : data;
    if (data.length > 0xfffffffe || this.offset > 0xfffffffe) throw new Error('package too large for a 32-bit zip');
    const e: Entry = { name: nameBuf, crc: crc32(data), compressed: body.length, size: data.length, method: useDeflate ? 8 : 0, offset: this.offset, mode };
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(20, 4);
    h.writeUInt16LE(0x0800, 6); // UTF-8 names
    h.writeUInt16LE(e.method, 8);
    h.writeUInt16LE(0, 10);
    h.writeUInt16LE(0x21, 12); // 1980-01-01: reproducible packages
    h.writeUInt32LE(e.crc, 14);
    h.writeUInt32LE(e.compressed, 18);
    h.writeUInt32LE(e.size, 22);
    h.writeUInt16LE(nameBuf.length, 26);
    h.writeUInt16LE(0, 28);
    await this.write(h);
    await this.write(nameBuf);
    await this.write(body);
    this.entries.push(e);
  }

  async addFile(name: string, path: string, mode?: number): Promise<void> {
    await this.add(name, await readFile(path), mode);
  }

  async close(): Promise<{ entries: number; bytes: number }> {
    const start = this.offset;
    for (const e of this.entries) {
      const c = Buffer.alloc(46);
      c.writeUInt32LE(0x02014b50, 0);
      c.writeUInt16LE((3 << 8) | 20, 4); // made by Unix: external attributes carry the mode
      c.writeUInt16LE(20, 6);
      c.writeUInt16LE(0x0800, 8);
      c.writeUInt16LE(e.method, 10);
      c.writeUInt16LE(0, 12);
      c.writeUInt16LE(0x21, 14);
      c.writeUInt32LE(e.crc, 16);
      c.writeUInt32LE(e.compressed, 20);
      c.writeUInt32LE(e.size, 24);
      c.writeUInt16LE(e.name.length, 28);
      c.writeUInt16LE(0, 30);
      c.writeUInt16LE(0, 32);
      c.writeUInt16LE(0, 34);
      c.writeUInt16LE(0, 36);
      c.writeUInt32LE(((0o100000 | e.mode) << 16) >>> 0, 38);
      c.writeUInt32LE(e.offset, 42);
      await this.write(c);
      await this.write(e.name);
    }
    const size = this.offset - start;
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(this.entries.length, 8);
    end.writeUInt16LE(this.entries.length, 10);
    end.writeUInt32LE(size, 12);
    end.writeUInt32LE(start, 16);
    await this.write(end);
    await new Promise<void>((r) => this.out.end(() => r()));
    return { entries: this.entries.length, bytes: this.offset };
  }
}

export interface ZipEntryInfo {
  name: string;
  size: number;
  compressed: number;
  mode: number;
}

interface CentralEntry extends ZipEntryInfo {
  method: number;
  offset: number;
}

/** The entries of a zip's central directory. */
function* centralDirectory(buf: Buffer): Generator<CentralEntry> {
  const eocd = buf.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip file');
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  for (let i = 0; i < count; i++) {
    if (buf.readUInt32LE(p) !== 0x02014b50) throw new Error('bad central directory');
    const n = buf.readUInt16LE(p + 28);
    yield {
      name: buf.toString('utf8', p + 46, p + 46 + n),
      method: buf.readUInt16LE(p + 10),
      compressed: buf.readUInt32LE(p + 20),
      size: buf.readUInt32LE(p + 24),
      mode: (buf.readUInt32LE(p + 38) >>> 16) & 0o777,
      offset: buf.readUInt32LE(p + 42),
    };
    p += 46 + n + buf.readUInt16LE(p + 30) + buf.readUInt16LE(p + 32);
  }
}

/** Lists a zip's entries from its central directory. */
export async function listZip(path: string): Promise<ZipEntryInfo[]> {
  return [...centralDirectory(await readFile(path))].map(({ name, size, compressed, mode }) => ({ name, size, compressed, mode }));
}

/** Extracts every entry (stored or deflated) under `dir`. */
export async function extractZip(path: string, dir: string): Promise<number> {
  const buf = await readFile(path);
  const root = resolve(dir);
  let count = 0;
  for (const e of centralDirectory(buf)) {
    const target = resolve(join(root, e.name));
    if (!target.startsWith(root + sep)) throw new Error(`zip entry escapes the target folder: ${e.name}`);
    if (e.name.endsWith('/')) {
      await mkdir(target, { recursive: true }); // a folder entry (other zippers write them)
      continue;
    }
    const at = e.offset + 30 + buf.readUInt16LE(e.offset + 26) + buf.readUInt16LE(e.offset + 28);
    const body = buf.subarray(at, at + e.compressed);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, e.method === 8 ? inflateRawSync(body) : body);
    if (e.mode) await chmod(target, e.mode);
    count++;
  }
  return count;
}
