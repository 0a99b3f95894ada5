/**
 * Embedded Azurite: starts the real Azurite (blob, queue, table) as a child process on free
 * loopback ports in a temp folder, and stops it. Used by the tests and by the local host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Azurite's well-known development account (public, documented by Microsoft; not a secret). */
export const DEV_ACCOUNT = 'devstoreaccount1';
export const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteInstance {
  blobPort: number;
  queuePort: number;
  tablePort: number;
  location: string;
  blobEndpoint: string;
  /** Connection string with blob, queue and table endpoints. */
  connectionString: string;
  process: ChildProcess;
  stop(opts?: { keepData?: boolean }): Promise<void>;
}

export interface AzuriteOptions {
  /** Data folder; a new temp folder (removed on stop) when omitted. */
  location?: string;
  /** Fixed ports (0 = any free port). */
  blobPort?: number;
  queuePort?: number;
  tablePort?: number;
  startTimeoutMs?: number;
}

export function connectionStringFor(blobPort: number, queuePort: number, tablePort: number, host = '127.0.0.1'): string {
  return [
    'DefaultEndpointsProtocol=http',
    `AccountName=${DEV_ACCOUNT}`,
    `AccountKey=${DEV_KEY}`,
    `BlobEndpoint=http://${host}:${blobPort}/${DEV_ACCOUNT}`,
    `QueueEndpoint=http://${host}:${queuePort}/${DEV_ACCOUNT}`,
    `TableEndpoint=http://${host}:${tablePort}/${DEV_ACCOUNT}`,
  ].join(';');
}

export async function startAzurite(opts: AzuriteOptions = {}): Promise<AzuriteInstance> {
  const ownLocation = opts.location === undefined;
  const location = opts.location ?? (await mkdtemp(join(tmpdir(), 'lakeinfer-azurite-')));
  const script = require.resolve('azurite/dist/src/azurite.js');
  const args = [
    script,
    '--blobHost', '127.0.0.1', '--blobPort', String(opts.blobPort ?? 0),
    '--queueHost', '127.0.0.1', '--queuePort', String(opts.queuePort ?? 0),
    '--tableHost', '127.0.0.1', '--tablePort', String(opts.tablePort ?? 0),
    '--location', location,
    '--disableTelemetry', '--skipApiVersionCheck', '--loose',
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const ports: Record<string, number> = {};
  let output = '';

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`Azurite did not start within ${opts.startTimeoutMs ?? 30_000} ms:\n${output}`)), opts.startTimeoutMs ?? 30_000);
    function fail(err: Error): void {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    }
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      for (const m of output.matchAll(/Azurite (Blob|Queue|Table) service is successfully listening at http:\/\/127\.0\.0\.1:(\d+)/g)) {
        ports[m[1]!] = Number(m[2]);
      }
      if (ports['Blob'] && ports['Queue'] && ports['Table']) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
    child.once('exit', (code) => fail(new Error(`Azurite exited with code ${code} before it was ready:\n${output}`)));
    child.once('error', (err) => fail(err));
  });
  // Keep draining the pipes so Azurite never blocks on a full one.
  child.stdout?.resume();
  child.stderr?.resume();
  child.removeAllListeners('exit');

  const blobPort = ports['Blob']!;
  const queuePort = ports['Queue']!;
  const tablePort = ports['Table']!;
  let stopped = false;
  return {
    blobPort,
    queuePort,
    tablePort,
    location,
    blobEndpoint: `http://127.0.0.1:${blobPort}/${DEV_ACCOUNT}`,
    connectionString: connectionStringFor(blobPort, queuePort, tablePort),
    process: child,
    async stop(stopOpts = {}) {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      if (ownLocation && !stopOpts.keepData) await rm(location, { recursive: true, force: true });
    },
  };
}
