/**
 * Azurite's own command-line entry, run in a child process of the local host (forked, with an IPC
 * channel) and tied to the host's life:
 * - Azurite keeps its metadata in memory (LokiJS) and saves it every 5 s. When the host dies, by
 *   kill -9 too, the IPC channel closes and Azurite shuts down gracefully here, saving everything
 *   it acknowledged, then exits: no orphan keeps the data folder.
 * - A { type: 'flush', id } message saves every metadata database now and answers
 *   { type: 'flushed', id }: the host flushes before it acknowledges a job.
 * - The data folder's lock (lock.ts) names this process while it runs: one emulator per
 *   folder, and a restarted host waits for a shutting-down predecessor.
 * - Put Block From URL, which Azurite lacks, is added (blockFromUrl.ts).
 * - Look-ups use the blob-name index (see below): requests stay fast in folders of 100,000 blobs.
 * Arguments are Azurite's own.
 */
import { rmSync } from 'node:fs';
import { Server, type IncomingMessage, type ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { installPutBlockFromUrl } from './blockFromUrl';
import { LOCK_FILE, readLock } from './lock';

interface LokiDb {
  saveDatabase(callback: (err?: unknown) => void): void;
}

const azuriteRoot = dirname(require.resolve('azurite/package.json'));
const lokiPath = require.resolve('lokijs', { paths: [azuriteRoot] });

// Every LokiJS database Azurite opens is remembered (a subclass put in place of the module before
// Azurite loads it), so that 'flush' can save them all.
const databases = new Set<LokiDb>();
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Loki = require(lokiPath) as new (...args: unknown[]) => LokiDb;
class TrackedLoki extends Loki {
  constructor(...args: unknown[]) {
    super(...args);
    databases.add(this);
  }
}
require.cache[lokiPath]!.exports = TrackedLoki;

// LokiJS uses a binary index only for the first property of a query object, and Azurite's queries
// start with accountName (the same for every document): each blob or block look-up scanned every
// blob or block of the account, so requests slowed down as a folder grew (writing 30,000 blobs took
// 9 minutes). An equality query that names an indexed blob or block name is answered here from that
// index instead: the candidates with that name, checked against the query's other properties.
// Same documents (the properties of a query object are all ANDed); a find lists them in insertion
// order, a findOne returns one of them, as before.
type Doc = Record<string, unknown>;
interface Coll {
  data: Doc[];
  binaryIndices: Record<string, { values: number[] } | undefined>;
  adaptiveBinaryIndices: boolean;
  ensureIndex(prop: string): void;
  calculateRange(op: string, prop: string, value: unknown): [number, number];
}
interface ResultsetThis {
  collection: Coll;
  filterInitialized: boolean;
  filteredrows: number[];
}
const SELECTIVE = ['name', 'blobName'];
const Resultset = (Loki as unknown as { Resultset: { prototype: { find: (this: ResultsetThis, query: unknown, firstOnly?: boolean) => unknown } } }).Resultset;
const find = Resultset.prototype.find;
Resultset.prototype.find = function (query: unknown, firstOnly?: boolean) {
  if (!this.filterInitialized && query && typeof query === 'object' && !Array.isArray(query)) {
    const q = query as Doc;
    const keys = Object.keys(q);
    const key = SELECTIVE.find((k) => k in q && this.collection.binaryIndices[k] !== undefined);
    const plain = keys.every((k) => !k.startsWith('$') && !k.includes('.') && (q[k] === null || typeof q[k] !== 'object'));
    if (keys.length > 1 && key !== undefined && typeof q[key] === 'string' && plain) {
      const coll = this.collection;
      if (coll.adaptiveBinaryIndices !== true) coll.ensureIndex(key);
      const rows: number[] = [];
      if (coll.data.length > 0) {
        const [lo, hi] = coll.calculateRange('$eq', key, q[key]);
        const values = coll.binaryIndices[key]!.values;
        for (let i = lo; i <= hi; i++) {
          const row = values[i]!;
          const doc = coll.data[row]!;
          if (keys.every((k) => doc[k] === q[k])) {
            rows.push(row);
            if (firstOnly) break;
          }
        }
      }
      this.filteredrows = rows.sort((x, y) => x - y);
      this.filterInitialized = true;
      return this;
    }
  }
  return find.call(this, query, firstOnly);
};

// The host took the data folder's lock before starting this process and names it there once it
// is up; this process removes the lock on its way out only while the lock still names it.
const location = process.argv[process.argv.indexOf('--location') + 1];
process.on('exit', () => {
  if (location && readLock(location)?.emulatorPid === process.pid) rmSync(join(location, LOCK_FILE), { force: true });
});

function flush(): Promise<void> {
  return Promise.all([...databases].map((db) => new Promise<void>((resolve, reject) => db.saveDatabase((err) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve()))))).then(() => undefined);
}

// The answer to a flush goes back only while the host is there: a save that ends after the host
// died (kill -9 during a job start) must not answer it. process.send on a closed channel emits
// 'error' on the process, which crashed this emulator before its shutdown save: every write it
// acknowledged after that save began was lost (found by the kill loop in CI).
const answer = (m: { type: 'flushed'; id?: number; error?: string }): void => {
  if (process.connected) process.send?.(m, undefined, {}, () => undefined);
};
process.on('message', (msg: { type?: string; id?: number }) => {
  if (msg?.type !== 'flush') return;
  flush().then(
    () => answer({ type: 'flushed', id: msg.id }),
    (err: unknown) => answer({ type: 'flushed', id: msg.id, error: (err as Error).message }),
  );
});
// Once the parent is gone its end of the stdout/stderr pipes is too: Azurite's shutdown messages
// must not kill the process (EPIPE) before it has saved.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
// The parent is gone (exited or killed): shut down as on Ctrl+C, which saves the metadata. A
// watchdog ends the process should anything keep it alive once the servers are closed.
// Azurite's own shutdown closes its metadata stores (saving them) while requests already in its
// pipeline still run: one of those could insert its blob after the save and answer 201, an
// acknowledgement the restarted emulator no longer has. So the shutdown starts only once no request
// is in flight; from the moment the parent is gone every new request is answered 503 (ServerBusy,
// which clients retry against the next emulator) instead of being acknowledged.
let draining = false;
let inFlight = 0;
let drained: (() => void) | undefined;
const open = new Set<ServerResponse>();
const emit = Server.prototype.emit;
Server.prototype.emit = function (this: Server, event: string | symbol, ...args: unknown[]): boolean {
  if (event !== 'request') return (emit as (this: Server, e: string | symbol, ...a: unknown[]) => boolean).call(this, event, ...args);
  const res = args[1] as ServerResponse;
  if (draining) {
    res.writeHead(503, { 'x-ms-error-code': 'ServerBusy', connection: 'close' });
    res.end();
    (args[0] as IncomingMessage).resume();
    return true;
  }
  inFlight++;
  open.add(res);
  res.once('close', () => {
    open.delete(res);
    if (--inFlight === 0) drained?.();
  });
  return (emit as (this: Server, e: string | symbol, ...a: unknown[]) => boolean).call(this, event, ...args);
} as typeof Server.prototype.emit;

process.on('disconnect', () => {
  draining = true;
  setTimeout(() => process.exit(0), 60_000).unref();
  let done = false;
  // Saved first (after any save in progress, which LokiJS queues behind), then Azurite's own
  // shutdown, which saves again only what is still unsaved.
  const shutdown = (): void => {
    if (done) return;
    done = true;
    const term = (): void => void process.kill(process.pid, 'SIGTERM');
    flush().then(term, term);
  };
  if (inFlight === 0) return shutdown();
  drained = shutdown;
  // A request still unanswered after 10 s (a client stalled mid-upload) is cut off, unanswered,
  // so that nothing is acknowledged after the save.
  setTimeout(() => {
    for (const res of open) res.socket?.destroy();
    shutdown();
  }, 10_000).unref();
});

// Put Block From URL, which Azurite lacks and finalize uses (see blockFromUrl.ts).
installPutBlockFromUrl(azuriteRoot);
// eslint-disable-next-line @typescript-eslint/no-require-imports
require(join(azuriteRoot, 'dist', 'src', 'azurite.js'));
