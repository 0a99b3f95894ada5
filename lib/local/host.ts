/**
 * The local host: the same function code as on Azure, without Core Tools.
 * - storage: an embedded Azurite (or one given);
 * - HTTP: a server on 127.0.0.1 serving the registered HTTP functions at /api/<route>;
 * - Durable: the client endpoints the handlers call (/runtime/webhooks/durabletask/...: start,
 *   status, terminate), orchestrations replayed by the real SDK (DurableEngine), their state kept
 *   in storage so a restarted host finishes what a killed one started;
 * - activities on a pool of worker processes, with the orchestrator's retry options honoured.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpRequest, InvocationContext, type HttpResponseInit } from '@azure/functions';
import { BlobServiceClient } from '@azure/storage-blob';
import type { InstanceStatus } from '../api';
import { resetSettingsCache } from '../config';
import { resetDataService } from '../storage';
import { ActivityPool } from './activityPool';
import { startAzurite, type AzuriteInstance } from './azurite';
import { DurableEngine, type InstanceRecord } from './durable';
import { defaultFunctionFiles, loadFunctions, type RegisteredFunction } from './functionsHost';
import { InstanceStore } from './state';

export interface LocalHostOptions {
  /** Port on 127.0.0.1; 0 picks a free one. */
  port?: number;
  /** Use this storage (a connection string) instead of starting Azurite. */
  storageConnectionString?: string;
  /** Azurite data folder (kept between runs); a temp folder when omitted. */
  azuriteLocation?: string;
  /** Activity worker processes (like instances). */
  activityProcesses?: number;
  /** Extra settings for the functions (MODELS_CONTAINER, INFER_WORKERS, ...). */
  settings?: Record<string, string>;
  log?: (msg: string) => void;
  /** Where activity processes' output goes (default: this process's stdout/stderr). */
  activityOutput?: (line: string) => void;
  /** Fault injection for the reliability suite: this share of activity attempts has its process killed. */
  faults?: { activityCrashRate: number; seed?: number };
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

const DURABLE_PREFIX = '/runtime/webhooks/durabletask/';

/** A small deterministic PRNG (mulberry32) for reproducible fault injection. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function routeRegex(route: string): { re: RegExp; names: string[] } {
  const names: string[] = [];
  const pattern = route
    .replace(/^\//, '')
    .split('/')
    .map((seg) => {
      const m = /^\{([A-Za-z0-9_]+)(?::[^}]*)?(\?)?\}$/.exec(seg);
      if (!m) return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      names.push(m[1]!);
      return m[2] ? '([^/]*)' : '([^/]+)';
    })
    .join('/');
  return { re: new RegExp(`^${pattern}/?$`), names };
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8', ...headers });
  res.end(text);
}

/** The durable extension's instance status payload (what DurableClient.getStatus parses). */
function statusPayload(s: InstanceStatus, name: string): Record<string, unknown> {
  return {
    name,
    instanceId: s.instanceId,
    runtimeStatus: s.runtimeStatus,
    input: s.input ?? null,
    customStatus: s.customStatus ?? null,
    output: s.output ?? null,
    createdTime: s.createdTime,
    lastUpdatedTime: s.lastUpdatedTime,
  };
}

export async function startLocalHost(opts: LocalHostOptions = {}): Promise<LocalHost> {
  const log = opts.log ?? ((m: string) => console.log(m));
  let azurite: AzuriteInstance | undefined;
  let cs = opts.storageConnectionString;
  if (!cs) {
    azurite = await startAzurite(opts.azuriteLocation ? { location: opts.azuriteLocation } : {});
    cs = azurite.connectionString;
  }
  const settings: Record<string, string> = {
    AzureWebJobsStorage: cs,
    DATA_STORAGE: cs,
    TASK_HUB_NAME: 'lakeinfer',
    ...opts.settings,
  };
  Object.assign(process.env, settings);
  resetSettingsCache();
  resetDataService();

  const functions = loadFunctions(defaultFunctionFiles());
  const service = BlobServiceClient.fromConnectionString(cs);
  const store = new InstanceStore(service.getContainerClient(`${(settings['TASK_HUB_NAME'] ?? 'lakeinfer').toLowerCase()}-local-instances`));
  await store.init();
  const size = opts.activityProcesses ?? 2;
  const pool = new ActivityPool({ size, env: { ...process.env, ...settings }, log, ...(opts.activityOutput ? { output: opts.activityOutput } : {}) });
  const rand = seeded(opts.faults?.seed ?? 1);
  const engine = new DurableEngine(functions, {
    maxConcurrentActivities: size,
    runActivity: (name, input) => pool.run(name, input, opts.faults && rand() < opts.faults.activityCrashRate ? { crashAfterMs: Math.floor(rand() * 30) } : {}),
    onChange: (rec: InstanceRecord) => store.save(rec),
    log: (m) => log(m),
  });
  for (const rec of await store.loadAll()) {
    engine.resume(rec);
    if (rec.runtimeStatus === 'Running' || rec.runtimeStatus === 'Pending') log(`resumed ${rec.name} ${rec.instanceId}`);
  }

  const http = [...functions.values()]
    .filter((f) => f.trigger.type === 'httpTrigger')
    .map((f) => ({ f, methods: (f.trigger.methods ?? ['GET', 'POST']).map((m) => m.toUpperCase()), ...routeRegex(String(f.trigger.route ?? f.name)) }));

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

  async function durable(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const path = url.pathname.slice(DURABLE_PREFIX.length);
    let m = /^orchestrators\/([^/]+)(?:\/([^/]+))?$/.exec(path);
    if (m && req.method === 'POST') {
      const name = decodeURIComponent(m[1]!);
      const id = m[2] ? decodeURIComponent(m[2]) : randomUUID().replace(/-/g, '');
      const text = (await readBody(req)).toString('utf8');
      const existing = await engine.status(id);
      if (existing && ['Running', 'Pending'].includes(existing.runtimeStatus)) return send(res, 409, { message: `an instance with ID '${id}' already exists` });
      await engine.start(name, id, text === '' ? null : JSON.parse(text));
      return send(res, 202, { id, statusQueryGetUri: `${baseUrl}${DURABLE_PREFIX}instances/${id}` });
    }
    m = /^instances\/([^/]+)\/terminate$/.exec(path);
    if (m && req.method === 'POST') {
      const id = decodeURIComponent(m[1]!);
      const s = await engine.status(id);
      if (!s) return send(res, 404, { message: `no instance '${id}'` });
      if (!['Running', 'Pending'].includes(s.runtimeStatus)) return send(res, 410, { message: `instance '${id}' is ${s.runtimeStatus}` });
      await engine.terminate(id, url.searchParams.get('reason') ?? '');
      return send(res, 202, undefined);
    }
    m = /^instances\/([^/]+)$/.exec(path);
    if (m && req.method === 'GET') {
      const id = decodeURIComponent(m[1]!);
      const s = await engine.status(id);
      if (!s) return send(res, 404, { message: `no instance '${id}'` });
      const payload = statusPayload(s, engine.record(id)?.name ?? '');
      if (url.searchParams.get('showInput') !== 'true') payload['input'] = null;
      return send(res, ['Running', 'Pending'].includes(s.runtimeStatus) ? 202 : 200, payload);
    }
    return send(res, 404, { message: `no durable endpoint ${req.method} ${url.pathname}` });
  }

  async function api(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const rel = url.pathname.slice('/api/'.length);
    for (const h of http) {
      const m = h.re.exec(rel);
      if (!m) continue;
      if (!h.methods.includes(req.method ?? 'GET')) continue;
      const params: Record<string, string> = {};
      h.names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1] ?? '')));
      const body = await readBody(req);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      const request = new HttpRequest({ method: req.method ?? 'GET', url: url.href, headers, params, query: Object.fromEntries(url.searchParams), ...(body.length ? { body: { bytes: body } } : {}) });
      const extraInputs = Object.entries(h.f.bindings)
        .filter(([, b]) => b.direction === 'in' && !/trigger$/i.test(b.type))
        .map(([name, b]) => ({ ...b, name }));
      const context = new InvocationContext({
        invocationId: randomUUID(),
        functionName: h.f.name,
        logHandler: (level, ...args) => log(`[${h.f.name}] ${level}: ${args.join(' ')}`),
        options: { trigger: { ...h.f.trigger, type: h.f.trigger.type }, extraInputs, extraOutputs: [] },
      });
      for (const b of extraInputs) if (b.type === 'durableClient' || b.type === 'orchestrationClient') context.extraInputs.set(b.name, clientData());
      const out = (await h.f.handler(request, context)) as HttpResponseInit | undefined;
      const hdrs: Record<string, string> = {};
      if (out?.headers) for (const [k, v] of Object.entries(out.headers as Record<string, string>)) hdrs[k] = String(v);
      if (out?.jsonBody !== undefined) return send(res, out.status ?? 200, out.jsonBody, hdrs);
      return send(res, out?.status ?? 200, typeof out?.body === 'string' ? out.body : '', hdrs);
    }
    return send(res, 404, { error: { code: 'NotFound', message: `no function serves ${req.method} ${url.pathname}` } });
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', baseUrl || 'http://127.0.0.1');
    const work = url.pathname.startsWith(DURABLE_PREFIX) ? durable(req, res, url) : url.pathname.startsWith('/api/') ? api(req, res, url) : Promise.resolve(send(res, 404, { message: 'not found' }));
    work.catch((err: unknown) => {
      log(`error serving ${req.method} ${url.pathname}: ${(err as Error).stack ?? err}`);
      if (!res.headersSent) send(res, 500, { error: { code: 'Internal', message: (err as Error).message } });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: baseUrl,
    connectionString: cs,
    engine,
    pool,
    functions,
    ...(azurite ? { azurite } : {}),
    async stop() {
      engine.close();
      await new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections?.();
      await pool.close();
      await azurite?.stop({ keepData: opts.azuriteLocation !== undefined });
    },
  };
}
