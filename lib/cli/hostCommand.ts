/**
 * `lakeinfer host`: the local host until Ctrl+C. With --data DIR its storage lives in DIR and
 * keeps its ports across restarts (saved in DIR/lakeinfer-host.json; Azurite's standard 10000-10002
 * the first time when free), so a saved connection string keeps working. It prints a connection
 * string that works: the emulator's account is Azurite's public development account, whose key is
 * documented by Microsoft and is no secret (real keys are masked everywhere else).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { maskConnectionString } from '../storage';
import { DEV_ACCOUNT } from '../local/azurite/azurite';
import { alive, FolderInUseError, readLock } from '../local/azurite/lock';
import { startLocalHost } from '../local/host/host';
import { flag, UsageError, type Args } from './args';

export const PORTS_FILE = 'lakeinfer-host.json';
const STANDARD = { blob: 10000, queue: 10001, table: 10002 };

interface SavedPorts {
  api: number;
  blob: number;
  queue: number;
  table: number;
}

function free(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = createServer();
    s.once('error', () => r(false));
    s.listen(port, '127.0.0.1', () => s.close(() => r(true)));
  });
}

function portFlag(a: Args, name: string): number | undefined {
  const v = flag(a, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`--${name} must be a port number (0-65535), got '${v}'`);
  return n;
}

/** The ports to use: flags, then the data folder's saved ones, then the standard ones if free. */
async function choosePorts(a: Args, data: string | undefined): Promise<{ ports: SavedPorts; from: string }> {
  const saved = data && existsSync(join(data, PORTS_FILE)) ? (JSON.parse(readFileSync(join(data, PORTS_FILE), 'utf8')) as Partial<SavedPorts>) : undefined;
  const api = portFlag(a, 'port') ?? saved?.api ?? 7071;
  const blobFlag = portFlag(a, 'blob-port');
  if (blobFlag !== undefined) return { ports: { api, blob: blobFlag, queue: blobFlag ? blobFlag + 1 : 0, table: blobFlag ? blobFlag + 2 : 0 }, from: '--blob-port' };
  if (saved?.blob) {
    for (const [what, p] of [['blob', saved.blob], ['queue', saved.queue], ['table', saved.table]] as const) {
      if (p && !(await free(p))) throw new UsageError(`the ${what} port ${p} saved in ${join(data!, PORTS_FILE)} is in use by another program; stop it, or start with --blob-port N (queue and table take N+1 and N+2) and update your saved connection strings`);
    }
    return { ports: { api, blob: saved.blob, queue: saved.queue ?? 0, table: saved.table ?? 0 }, from: `saved in ${join(data!, PORTS_FILE)}` };
  }
  if (data && (await free(STANDARD.blob)) && (await free(STANDARD.queue)) && (await free(STANDARD.table))) return { ports: { api, ...STANDARD }, from: "Azurite's standard ports" };
  return { ports: { api, blob: 0, queue: 0, table: 0 }, from: 'free ports' };
}

export async function hostCommand(a: Args, env: NodeJS.ProcessEnv, out: (s: string) => void): Promise<number> {
  const dataFlag = flag(a, 'data');
  const data = dataFlag === undefined ? undefined : resolve(dataFlag);
  if (data) mkdirSync(data, { recursive: true });
  const storage = flag(a, 'storage');
  const processes = Number(flag(a, 'processes') ?? 2);
  if (!Number.isInteger(processes) || processes < 1 || processes > 64) throw new UsageError(`--processes must be a whole number from 1 to 64, got '${flag(a, 'processes')}'`);
  // A folder in use is named before anything else (its saved ports are busy for that very reason).
  const held = data ? readLock(data) : undefined;
  if (data && held && held.hostPid !== process.pid && alive(held.hostPid)) throw new UsageError(new FolderInUseError(data, held).message);
  const { ports, from } = await choosePorts(a, data);
  if (!(await free(ports.api))) throw new UsageError(`port ${ports.api} on 127.0.0.1 is in use (another lakeinfer host?): stop it, or start this one with --port N (then pass --url http://127.0.0.1:N to the other commands)`);
  let host;
  try {
    host = await startLocalHost({
      port: ports.api,
      activityProcesses: processes,
      ...(data ? { azuriteLocation: data } : {}),
      ...(storage === undefined ? { azuritePorts: { blobPort: ports.blob, queuePort: ports.queue, tablePort: ports.table } } : { storageConnectionString: storage }),
      settings: { MODELS_CONTAINER: env['MODELS_CONTAINER'] ?? 'models' },
      onFatal: (err) => {
        console.error(`lakeinfer: ${err.message}`);
        process.exit(1);
      },
    });
  } catch (err) {
    if (err instanceof FolderInUseError) throw new UsageError(err.message);
    throw err;
  }
  const az = host.azurite;
  if (data && az) writeFileSync(join(data, PORTS_FILE), `${JSON.stringify({ api: ports.api, blob: az.blobPort, queue: az.queuePort, table: az.tablePort } satisfies SavedPorts, null, 2)}\n`);
  out(`lakeinfer local host at ${host.url}`);
  if (az) {
    out(`storage: Azurite at ${az.blobEndpoint} (${from}${data ? `; data in ${data}` : '; in a temporary folder, gone when the host stops: use --data DIR to keep it'})`);
    out(`  account ${DEV_ACCOUNT} is Azurite's public development account (its key is documented by Microsoft, not a secret). In another terminal:`);
    out(`  export DATA_STORAGE='${az.connectionString}'`);
  } else {
    out(`storage: ${maskConnectionString(host.connectionString)}`);
  }
  out('Ctrl+C to stop');
  await new Promise<void>((r) => {
    process.once('SIGINT', r);
    process.once('SIGTERM', r);
  });
  await host.stop();
  return 0;
}
