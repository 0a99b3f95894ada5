/**
 * Embedded Azurite: starts the real Azurite (blob, queue, table) as a child process on loopback
 * ports (free ones unless given) in a data folder (a temp one unless given), and stops it. Used by
 * the tests and by the local host.
 *
 * The child (process.ts) dies with its parent, saving its metadata on the way out, and
 * answers flush requests. A data folder is served by one emulator at a time (lock.ts): a
 * second host on a folder in use is refused, and a restart waits for a predecessor still saving.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireLock, readLock, releaseLock, writeLock } from './lock';

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
  /** Saves Azurite's metadata now: everything it acknowledged so far survives its death. */
  flush(): Promise<void>;
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
  /** Called when Azurite exits without being stopped (killed, crashed). */
  onUnexpectedExit?: (how: string) => void;
  /**
   * Serve HTTPS with this PEM certificate and key and accept Entra ID bearer tokens (Azurite's
   * `--oauth basic`: audience, issuer and lifetime checked, signature not): how tests exercise the
   * token credential path, which the storage SDK allows over TLS only.
   */
  tls?: { cert: string; key: string };
}

export function connectionStringFor(blobPort: number, queuePort: number, tablePort: number, host = '127.0.0.1', scheme: 'http' | 'https' = 'http'): string {
  return [
    `DefaultEndpointsProtocol=${scheme}`,
    `AccountName=${DEV_ACCOUNT}`,
    `AccountKey=${DEV_KEY}`,
    `BlobEndpoint=${scheme}://${host}:${blobPort}/${DEV_ACCOUNT}`,
    `QueueEndpoint=${scheme}://${host}:${queuePort}/${DEV_ACCOUNT}`,
    `TableEndpoint=${scheme}://${host}:${tablePort}/${DEV_ACCOUNT}`,
  ].join(';');
}

export async function startAzurite(opts: AzuriteOptions = {}): Promise<AzuriteInstance> {
  const ownLocation = opts.location === undefined;
  const location = opts.location ?? (await mkdtemp(join(tmpdir(), 'lakeinfer-azurite-')));
  if (!ownLocation) {
    await mkdir(location, { recursive: true });
    await acquireLock(location, (m) => console.error(`lakeinfer: ${m}`));
  }
  try {
    return await launch(opts, location, ownLocation);
  } catch (err) {
    if (!ownLocation) releaseLock(location);
    throw err;
  }
}

async function launch(opts: AzuriteOptions, location: string, ownLocation: boolean): Promise<AzuriteInstance> {
  const args = [
    '--blobHost', '127.0.0.1', '--blobPort', String(opts.blobPort ?? 0),
    '--queueHost', '127.0.0.1', '--queuePort', String(opts.queuePort ?? 0),
    '--tableHost', '127.0.0.1', '--tablePort', String(opts.tablePort ?? 0),
    '--location', location,
    '--disableTelemetry', '--skipApiVersionCheck', '--loose',
    // No access log: a line per request written to a pipe nobody reads cost the emulator about a
    // tenth of its CPU (lines that say nothing the host does not log itself).
    '--silent',
    ...(opts.tls ? ['--cert', opts.tls.cert, '--key', opts.tls.key, '--oauth', 'basic'] : []),
  ];
  const scheme = opts.tls ? 'https' : 'http';
  const child = fork(join(__dirname, 'process.js'), args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
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
      for (const m of output.matchAll(/Azurite (Blob|Queue|Table) service is successfully listening at https?:\/\/127\.0\.0\.1:(\d+)/g)) {
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
  let stopped = false;
  child.once('exit', (code, signal) => {
    if (!stopped) opts.onUnexpectedExit?.(signal ?? `exit code ${code}`);
  });
  let nextFlush = 1;
  const flushes = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  child.on('message', (m: { type?: string; id?: number; error?: string }) => {
    const f = m.type === 'flushed' ? flushes.get(m.id!) : undefined;
    if (!f) return;
    flushes.delete(m.id!);
    if (m.error) f.reject(new Error(`the storage emulator could not save its state: ${m.error}`));
    else f.resolve();
  });
  child.on('exit', () => {
    for (const f of flushes.values()) f.reject(new Error('the storage emulator exited'));
    flushes.clear();
  });

  const blobPort = ports['Blob']!;
  const queuePort = ports['Queue']!;
  const tablePort = ports['Table']!;
  if (!ownLocation) {
    const held = readLock(location);
    writeLock(location, { ...held, hostPid: process.pid, emulatorPid: child.pid!, ports: { blob: blobPort, queue: queuePort, table: tablePort }, startedAt: held?.startedAt ?? new Date().toISOString() });
  }
  return {
    blobPort,
    queuePort,
    tablePort,
    location,
    blobEndpoint: `${scheme}://127.0.0.1:${blobPort}/${DEV_ACCOUNT}`,
    connectionString: connectionStringFor(blobPort, queuePort, tablePort, '127.0.0.1', scheme),
    process: child,
    flush() {
      if (child.exitCode !== null || child.signalCode !== null || !child.connected) return Promise.reject(new Error('the storage emulator is not running'));
      return new Promise<void>((resolve, reject) => {
        const id = nextFlush++;
        flushes.set(id, { resolve, reject });
        child.send({ type: 'flush', id });
      });
    },
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
      else if (!ownLocation) releaseLock(location);
    },
  };
}

/** Runs `fn` against a fresh emulator in a temporary folder, stopped (and removed) afterwards. */
export async function withAzurite<T>(fn: (azurite: AzuriteInstance) => Promise<T>, opts: Omit<AzuriteOptions, 'location'> = {}): Promise<T> {
  const azurite = await startAzurite(opts);
  try {
    return await fn(azurite);
  } finally {
    await azurite.stop();
  }
}
