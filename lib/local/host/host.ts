/**
 * The local host: the same function code as on Azure, without Core Tools.
 * - storage: an embedded Azurite (or one given);
 * - HTTP: a server on 127.0.0.1 serving the registered HTTP functions at /api/<route>;
 * - Durable: the client endpoints the handlers call (/runtime/webhooks/durabletask/...: start,
 *   status, terminate), orchestrations replayed by the real SDK (DurableEngine), their state kept
 *   in storage so a restarted host finishes what a killed one started;
 * - activities on a pool of worker processes, with the orchestrator's retry options honoured.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BlobServiceClient } from '@azure/storage-blob';
import { resetSettingsCache } from '../../util/config';
import { isLakeInferError } from '../../util/errors';
import { ORCHESTRATOR, parseOrchestratorInput } from '../../orchestration/orchestrator';
import { resetDataService } from '../../storage';
import { ActivityPool } from '../functions/activityPool';
import { startAzurite, type AzuriteInstance } from '../azurite/azurite';
import { readLock, writeLock } from '../azurite/lock';
import { DurableEngine, type EngineOptions, type InstanceRecord } from '../durable/engine';
import { DURABLE_PREFIX, durableEndpoints } from '../durable/endpoints';
import { defaultFunctionFiles, loadFunctions, type RegisteredFunction } from '../functions/functionsHost';
import { RequestError, send } from '../functions/http';
import { httpTriggers } from '../functions/httpTriggers';
import { seeded } from '../durable/random';
import { InstanceStore } from '../durable/state';
import { instanceCores } from '../../util/cores';
import { startArrivalScanner } from './arrivalScanner';

export interface LocalHostOptions {
  /** Port on 127.0.0.1; 0 picks a free one. */
  port?: number;
  /** Use this storage (a connection string) instead of starting Azurite. */
  storageConnectionString?: string;
  /** Azurite data folder (kept between runs); a temp folder when omitted. */
  azuriteLocation?: string;
  /** The embedded Azurite's ports (0 or absent: free ones). */
  azuritePorts?: { blobPort?: number; queuePort?: number; tablePort?: number };
  /** Activity worker processes (like instances). */
  activityProcesses?: number;
  /** Extra settings for the functions (MODELS_CONTAINER, INFER_WORKERS, ...). */
  settings?: Record<string, string>;
  log?: (msg: string) => void;
  /** Where activity processes' output goes (default: this process's stdout/stderr). */
  activityOutput?: (line: string) => void;
  /** Fault injection for the reliability suite: this share of activity attempts has its process killed. */
  faults?: { activityCrashRate: number; seed?: number };
  /**
   * The Durable engine's strictness (see EngineOptions): delivery batches, at-least-once re-runs,
   * functionTimeout scale, redelivery of lost activities (default: visible again after 10 s, not
   * Azure's 5 minutes, so that a local crash costs little time).
   */
  durable?: Pick<EngineOptions, 'batch' | 'seed' | 'functionTimeoutMs' | 'timeoutScale' | 'duplicateRate' | 'visibilityTimeoutMs' | 'maxDequeueCount'>;
  /** The embedded storage emulator died and could not be restarted (default: log it). */
  onFatal?: (err: Error) => void;
}

export interface LocalHost {
  url: string;
  connectionString: string;
  engine: DurableEngine;
  pool: ActivityPool;
  functions: ReadonlyMap<string, RegisteredFunction>;
  azurite?: AzuriteInstance;
  stop(): Promise<void>;
}

export async function startLocalHost(opts: LocalHostOptions = {}): Promise<LocalHost> {
  const log = opts.log ?? ((m: string) => console.log(m));
  const fatal = opts.onFatal ?? ((err: Error) => log(`lakeinfer local host: ${err.message}`));
  let azurite: AzuriteInstance | undefined;
  let cs = opts.storageConnectionString;
  let stopping = false;
  /** Bumped when the emulator dies and when it is back: a request that spans either is not acknowledged. */
  let emulatorEpoch = 0;
  // Set once the engine exists: what to do once the emulator came back.
  let reloadState: () => Promise<void> = async () => undefined;
  // Set once the activity processes exist: the emulator died and will come back with its last saved
  // state, so no activity may go on with what it read since (it would write it into that state).
  let abortWork: () => void = () => undefined;
  // Set once the engine exists: the emulator died, so no orchestration outcome may be recorded or
  // saved until the saved state is reloaded (a save retried into the restarted emulator would
  // record outcomes whose data, such as a plan's files, was lost with the emulator's unsaved state).
  let fenceState: () => void = () => undefined;
  if (!cs) {
    // The emulator is a child that dies with this process (saving what it acknowledged). Should it
    // die alone, it loses what it had not saved yet (it saves every 5 s and before each job start or
    // cancel is acknowledged): it is restarted on the same ports and folder, and the engine goes
    // back to the instance records it saved, so that each job replays from a state its data agrees with.
    const start = (ports: { blobPort?: number; queuePort?: number; tablePort?: number } = {}): Promise<AzuriteInstance> =>
      startAzurite({
        ...(opts.azuriteLocation ? { location: opts.azuriteLocation } : {}),
        ...ports,
        onUnexpectedExit: (how) => {
          if (stopping) return;
          emulatorEpoch++;
          log(`lakeinfer local host: the storage emulator exited unexpectedly (${how}); restarting it`);
          fenceState();
          abortWork();
          const was = azurite!;
          start({ blobPort: was.blobPort, queuePort: was.queuePort, tablePort: was.tablePort }).then(
            async (next) => {
              azurite = next;
              await reloadState();
              emulatorEpoch++;
              log('lakeinfer local host: the storage emulator is back');
            },
            (err: unknown) => fatal(new Error(`the storage emulator died and could not be restarted: ${(err as Error).message}`)),
          );
        },
      });
    azurite = await start(opts.azuritePorts ?? {});
    cs = azurite.connectionString;
  }
  const size = opts.activityProcesses ?? 2;
  const settings: Record<string, string> = {
    AzureWebJobsStorage: cs,
    DATA_STORAGE: cs,
    TASK_HUB_NAME: 'lakeinfer',
    // The activity processes stand for instances sharing this machine's cores.
    ...localInferenceLayout(instanceCores(), size),
    ...opts.settings,
  };
  Object.assign(process.env, settings);
  resetSettingsCache();
  resetDataService();

  const functions = loadFunctions(defaultFunctionFiles());
  const service = BlobServiceClient.fromConnectionString(cs);
  const store = new InstanceStore(service.getContainerClient(`${(settings['TASK_HUB_NAME'] ?? 'lakeinfer').toLowerCase()}-local-instances`));
  await store.init();
  const pool = new ActivityPool({ size, env: { ...process.env, ...settings }, log, ...(opts.activityOutput ? { output: opts.activityOutput } : {}) });
  const rand = seeded(opts.faults?.seed ?? 1);
  const engine = new DurableEngine(functions, {
    visibilityTimeoutMs: 10_000,
    ...opts.durable,
    maxConcurrentActivities: size,
    runActivity: async (name, input, _attempt, _run, signal) => {
      const result = await pool.run(name, input, { signal, ...(opts.faults && rand() < opts.faults.activityCrashRate ? { crashAfterMs: Math.floor(rand() * 30) } : {}) });
      // A plan names the job's model: the other processes load it while the first partitions are scheduled.
      const planned = name === 'planJob' ? (result as { ok?: boolean; value?: { model?: { name: string; etag: string; jsonEtag: string } } }) : undefined;
      if (planned?.ok && planned.value?.model) pool.preload(planned.value.model);
      return result;
    },
    onChange: (rec: InstanceRecord) => store.save(rec),
    onPurge: (id: string) => store.delete(id),
    log: (m) => log(m),
  });
  for (const rec of await store.loadAll()) {
    engine.resume(rec);
    if (rec.runtimeStatus === 'Running' || rec.runtimeStatus === 'Pending') log(`resumed ${rec.name} ${rec.instanceId}`);
  }
  fenceState = () => {
    engine.suspend();
    store.fence();
  };
  abortWork = () => pool.abortAll(new Error('the storage emulator died: the activity runs again from the saved state'));
  reloadState = async () => {
    await store.init();
    const saved = await store.loadAll();
    // What ran since the emulator died ran on state that is gone; the saved state decides from here.
    abortWork();
    engine.reload(saved);
  };

  let baseUrl = '';
  const clientData = (): Record<string, unknown> => ({
    taskHubName: settings['TASK_HUB_NAME'],
    creationUrls: {},
    managementUrls: {},
    baseUrl: `${baseUrl}${DURABLE_PREFIX}`,
    requiredQueryStringParameters: '',
    rpcBaseUrl: `${baseUrl}${DURABLE_PREFIX}`,
    httpBaseUrl: `${baseUrl}${DURABLE_PREFIX}`,
  });

  // In --data mode what is acknowledged must survive this process's death: the emulator saves its
  // metadata before a job start or cancel is answered (its own shutdown covers everything else).
  // A request during which the emulator died (or came back) is not acknowledged: what it wrote may
  // have gone with the emulator's unsaved state, or have been replaced by the saved state reloaded.
  const persistent = azurite !== undefined && opts.azuriteLocation !== undefined;
  // (The epoch is odd from the emulator's death until it is back with the engine's state reloaded.)
  const restarted = (): RequestError => new RequestError(503, 'StorageRestarted', 'the storage emulator restarted while this request was served, so what it wrote may be gone: send it again (a job request is idempotent per jobId)', '(request)');
  const acknowledgement = (): (() => Promise<void>) => {
    const began = emulatorEpoch;
    if (began % 2 === 1) throw restarted();
    return async () => {
      if (emulatorEpoch !== began) throw restarted();
      await azurite!.flush().catch(() => Promise.reject(restarted()));
      if (emulatorEpoch !== began) throw restarted();
    };
  };
  const durable = durableEndpoints(engine, () => baseUrl, {
    validate: (name, input) => {
      if (name !== ORCHESTRATOR) return;
      // A job starts from its request; a resume state ({ state }) comes only from the engine itself
      // (continueAsNew), never from a request, which could forge counts or a plan.
      if (typeof input === 'object' && input !== null && 'state' in input) throw new RequestError(400, 'InvalidRequest', 'an orchestration starts from { "job": ... }; a resume state is the engine\'s own, never a request\'s', 'state');
      let parsed: ReturnType<typeof parseOrchestratorInput>;
      try {
        parsed = parseOrchestratorInput(input);
      } catch (err) {
        if (isLakeInferError(err)) throw new RequestError(400, err.code, err.message, err.target);
        throw err;
      }
      // The activity processes start loading the job's model (its current version, which the plan
      // is about to pin) while the plan is made: cold starts overlap with planning.
      pool.preload({ name: 'job' in parsed ? parsed.job.model.name : parsed.state.job.model.name });
    },
    ...(persistent ? { acknowledgement } : {}),
  });
  const api = httpTriggers(functions, clientData, log, persistent ? acknowledgement : undefined);

  const server: Server = createServer((req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', baseUrl || 'http://127.0.0.1');
    } catch {
      return send(res, 400, { error: { code: 'InvalidRequest', message: 'malformed request URL' } });
    }
    const work = url.pathname.startsWith(DURABLE_PREFIX) ? durable(req, res, url) : url.pathname.startsWith('/api/') ? api(req, res, url) : Promise.resolve(send(res, 404, { message: 'not found' }));
    work.catch((err: unknown) => {
      if (err instanceof RequestError) {
        if (!res.headersSent) send(res, err.status, err.body(), err.status === 413 ? { connection: 'close' } : {});
        return;
      }
      log(`error serving ${req.method} ${url.pathname}: ${(err as Error).stack ?? err}`);
      if (!res.headersSent) send(res, 500, { error: { code: 'Internal', message: (err as Error).message } });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // The folder's lock names this host's API too, so a second host on the folder can say where it is.
  if (azurite && opts.azuriteLocation) {
    const held = readLock(opts.azuriteLocation);
    if (held?.hostPid === process.pid) writeLock(opts.azuriteLocation, { ...held, api: baseUrl });
  }

  // Continuous jobs: the input prefixes are scanned for blobs that landed (Event Grid's part on Azure).
  const scanner = startArrivalScanner(() => engine.records(), () => BlobServiceClient.fromConnectionString(azurite?.connectionString ?? cs), log);

  return {
    url: baseUrl,
    connectionString: cs,
    engine,
    pool,
    functions,
    /** The embedded emulator now (a new instance after a restart). */
    get azurite() {
      return azurite;
    },
    async stop() {
      stopping = true;
      await scanner.stop();
      engine.close();
      await new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections?.();
      await pool.close();
      await azurite?.stop({ keepData: opts.azuriteLocation !== undefined });
    },
  };
}

/**
 * INFER_WORKERS and ORT_INTRA_OP_THREADS for `processes` activity processes on one machine of
 * `cores` cores: the cores shared among the processes, one single-threaded session per core (what
 * an instance of that many cores gets by default).
 */
export function localInferenceLayout(cores: number, processes: number): { INFER_WORKERS: string; ORT_INTRA_OP_THREADS: string } {
  const perProcess = Math.max(1, Math.floor(cores / Math.max(1, processes)));
  return { INFER_WORKERS: String(perProcess), ORT_INTRA_OP_THREADS: '1' };
}
