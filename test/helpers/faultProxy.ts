import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { seeded } from '../../lib/local/durable/random';

export interface FaultProxy {
  port: number;
  /** Requests answered with a fault instead of being forwarded. */
  injected: { status500: number; status503: number; reset: number; forwarded: number };
  close(): Promise<void>;
}

/**
 * A loopback HTTP proxy in front of Azurite that fails `rate` of the requests (seeded): 500, 503,
 * or a reset connection, each decided before forwarding, so the storage never half-applies one.
 */
export async function startFaultProxy(targetPort: number, rate: number, seed = 7): Promise<FaultProxy> {
  const rand = seeded(seed);
  const injected = { status500: 0, status503: 0, reset: 0, forwarded: 0 };
  const server: Server = createServer((req, res) => {
    if (rand() < rate) {
      const kind = Math.floor(rand() * 3);
      req.resume();
      if (kind === 0) {
        injected.status500++;
        res.writeHead(500, { 'content-type': 'application/xml', 'x-ms-error-code': 'InternalError' });
        res.end('<?xml version="1.0" encoding="utf-8"?><Error><Code>InternalError</Code><Message>injected fault</Message></Error>');
      } else if (kind === 1) {
        injected.status503++;
        res.writeHead(503, { 'content-type': 'application/xml', 'x-ms-error-code': 'ServerBusy' });
        res.end('<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>injected fault</Message></Error>');
      } else {
        injected.reset++;
        req.socket.destroy();
      }
      return;
    }
    injected.forwarded++;
    const up = request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => req.socket.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    injected,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
