/**
 * One blob as a loopback HTTP URL for ffmpeg: range requests (`bytes=N-`, `bytes=N-M`) become
 * ranged reads of the blob, so ffmpeg reads only what it seeks to and nothing of a 10 GB video
 * lands in memory or on disk beyond what it asks for. The URL carries a random token and serves
 * that one blob only, on 127.0.0.1, for as long as the caller holds it.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Reads bytes [offset, offset + count) of the blob (count undefined: to its end). */
export type RangeRead = (offset: number, count: number | undefined) => Promise<NodeJS.ReadableStream>;

export interface BlobUrl {
  url: string;
  /** Bytes served so far (what ffmpeg read). */
  readonly bytesServed: number;
  close(): Promise<void>;
}

export async function serveBlob(size: number, read: RangeRead): Promise<BlobUrl> {
  const token = randomBytes(12).toString('hex');
  const state = { served: 0 };
  const server: Server = createServer((req, res) => {
    if (req.url !== `/${token}` || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404).end();
      return;
    }
    let start = 0;
    let end = size - 1;
    const range = req.headers.range;
    const m = range ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
    if (range && !m) {
      res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
      return;
    }
    if (m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      if (start >= size || start > end) {
        res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
        return;
      }
    }
    const count = end - start + 1;
    const headers = { 'accept-ranges': 'bytes', 'content-length': String(Math.max(0, count)), 'content-type': 'application/octet-stream', ...(m ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}) };
    if (req.method === 'HEAD' || size === 0) {
      res.writeHead(m ? 206 : 200, headers).end();
      return;
    }
    read(start, end === size - 1 ? undefined : count).then(
      (body) => {
        res.writeHead(m ? 206 : 200, headers);
        const stream = body as NodeJS.ReadableStream & { destroy?: () => void };
        res.once('close', () => stream.destroy?.());
        stream.on('data', (c: Buffer) => (state.served += c.length));
        stream.on('error', () => res.destroy());
        stream.pipe(res);
      },
      () => res.writeHead(502).end(),
    );
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/${token}`,
    get bytesServed() {
      return state.served;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
