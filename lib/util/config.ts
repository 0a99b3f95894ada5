/**
 * Settings: every app setting lakeinfer reads is declared once in SETTINGS (name, meaning, default),
 * read once by loadSettings(), typed and validated. The same names are used locally
 * (local.settings.json, the local host) and on Azure (app settings provisioned by infra/).
 */
import { LakeInferError } from './errors';

export interface SettingDef {
  name: string;
  description: string;
  /** Default used when unset; undefined means no default. */
  default?: string;
  /** Who reads it: our code, or only the Functions host / Azure SDK. */
  readBy: 'lakeinfer' | 'host' | 'azure-sdk';
}

/** The single source of truth for setting names (README table and infra are checked against it). */
export const SETTINGS: readonly SettingDef[] = [
  { name: 'AzureWebJobsStorage', description: 'Host storage: Durable Functions task hub (queues, tables, leases). Connection string locally; `AzureWebJobsStorage__accountName` with managed identity on Azure.', readBy: 'host' },
  { name: 'TASK_HUB_NAME', description: 'Durable task hub name (host.json reads it as %TASK_HUB_NAME%).', default: 'lakeinfer', readBy: 'host' },
  { name: 'DATA_STORAGE', description: 'Data account (input, output and models containers) as a connection string. Local/Azurite.', readBy: 'lakeinfer' },
  { name: 'DATA_STORAGE__serviceUri', description: 'Data account blob endpoint (https://<account>.blob.core.windows.net); authenticates with DefaultAzureCredential (managed identity).', readBy: 'lakeinfer' },
  { name: 'DATA_STORAGE__clientId', description: 'Client id of the user-assigned managed identity used for DATA_STORAGE__serviceUri.', readBy: 'lakeinfer' },
  { name: 'DATA_STORAGE_SECRET_URI', description: 'Key Vault secret URI (https://<vault>.vault.azure.net/secrets/<name>[/<version>]) whose value is the data connection string.', readBy: 'lakeinfer' },
  { name: 'MODELS_CONTAINER', description: 'Container holding <model>/model.onnx and <model>/model.json.', default: 'models', readBy: 'lakeinfer' },
  { name: 'INPUT_CONTAINERS', description: 'Comma-separated containers a job may read images from (those the app\'s identity may read); unset or empty: any. A job naming another is refused with 400 on input.container.', readBy: 'lakeinfer' },
  { name: 'OUTPUT_CONTAINERS', description: 'Comma-separated containers a job may write to (those the app\'s identity may write); unset or empty: any. A job naming another is refused with 400 on output.container.', readBy: 'lakeinfer' },
  { name: 'INFER_WORKERS', description: 'Inference worker threads per instance (each holds one ONNX session); 0: one per core of the instance (measured best: see README, Benchmarks).', default: '0', readBy: 'lakeinfer' },
  { name: 'ORT_INTRA_OP_THREADS', description: 'onnxruntime intra-op threads per session; 0: the instance\'s cores divided among the workers (at least 1).', default: '0', readBy: 'lakeinfer' },
  { name: 'INFER_BATCH_SIZE', description: 'Images per session.run when the model has a dynamic batch dimension (1: measured fastest per image on CPU; batch 4 was 15-35% slower, see README, Benchmarks).', default: '1', readBy: 'lakeinfer' },
  { name: 'IO_CONCURRENCY', description: 'Concurrent blob downloads/uploads per partition.', default: '8', readBy: 'lakeinfer' },
  { name: 'MAX_IMAGE_BYTES', description: 'Largest input blob accepted, in bytes; larger blobs fail with ImageTooLarge.', default: String(64 * 1024 * 1024), readBy: 'lakeinfer' },
  { name: 'MAX_IMAGE_PIXELS', description: 'Largest decoded image accepted (width x height); guards against decompression bombs.', default: String(100_000_000), readBy: 'lakeinfer' },
  { name: 'MODEL_CACHE_MAX_BYTES', description: 'Most bytes of downloaded ONNX files kept on an instance\'s local disk (least recently used go first).', default: String(2 * 1024 ** 3), readBy: 'lakeinfer' },
  { name: 'PARTITION_TIME_BUDGET_SECONDS', description: 'A partition stops taking new images after this long and returns what it finished; the orchestrator runs the rest as a continuation (keep it well inside host.json functionTimeout, 30 min).', default: '1200', readBy: 'lakeinfer' },
  { name: 'PLAN_CHUNK_ITEMS', description: 'Blobs one planning step lists: the partitions it planned start while the next step lists on (a listing of millions of blobs does not hold the job back).', default: '100000', readBy: 'lakeinfer' },
  { name: 'INSTANCE_MEMORY_MB', description: 'Memory of one instance, for the GB-seconds in the manifest and report (Flex Consumption: 2048 or 4096; infra/ sets it).', default: '2048', readBy: 'lakeinfer' },
  { name: 'PRICE_PER_GB_SECOND', description: 'Price of one GB-second in USD, for the cost estimate (Flex Consumption on demand).', default: '0.000026', readBy: 'lakeinfer' },
  { name: 'AZURE_CLIENT_ID', description: 'Read by DefaultAzureCredential to pick the user-assigned managed identity.', readBy: 'azure-sdk' },
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', description: 'Application Insights for the host (provisioned by infra/).', readBy: 'host' },
  { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', description: 'Entra ID authentication of telemetry with the managed identity (provisioned by infra/).', readBy: 'host' },
];

export type DataConnection =
  | { kind: 'connectionString'; connectionString: string }
  | { kind: 'serviceUri'; serviceUri: string; clientId?: string }
  | { kind: 'keyVaultSecret'; vaultUrl: string; secretName: string; secretVersion?: string };

export interface Settings {
  taskHub: string;
  data: DataConnection;
  modelsContainer: string;
  /** Containers jobs may read from / write to; empty: any. */
  inputContainers: string[];
  outputContainers: string[];
  inferWorkers: number;
  ortIntraOpThreads: number;
  inferBatchSize: number;
  ioConcurrency: number;
  maxImageBytes: number;
  maxImagePixels: number;
  modelCacheMaxBytes: number;
  partitionBudgetSeconds: number;
  planChunkItems: number;
  instanceMemoryMB: number;
  pricePerGbSecond: number;
}

type Env = Record<string, string | undefined>;

function raw(env: Env, name: string): string | undefined {
  const v = env[name];
  if (v === undefined) return undefined;
  const t = v.trim();
  return t === '' ? undefined : t;
}

function withDefault(env: Env, name: string): string | undefined {
  return raw(env, name) ?? SETTINGS.find((s) => s.name === name)?.default;
}

function intSetting(env: Env, name: string, min: number, max: number): number {
  const v = withDefault(env, name);
  if (v === undefined) throw new LakeInferError('ConfigMissing', `setting ${name} is required`, { target: name });
  if (!/^-?\d+$/.test(v)) {
    throw new LakeInferError('ConfigInvalid', `setting ${name} must be an integer between ${min} and ${max}, got '${v}'`, { target: name });
  }
  const n = Number(v);
  if (n < min || n > max) {
    throw new LakeInferError('ConfigInvalid', `setting ${name} must be between ${min} and ${max}, got ${n}`, { target: name });
  }
  return n;
}

function numberSetting(env: Env, name: string, min: number, max: number): number {
  const v = withDefault(env, name)!;
  const n = Number(v);
  if (!/^\d+(\.\d+)?([eE]-?\d+)?$/.test(v) || !Number.isFinite(n) || n < min || n > max) {
    throw new LakeInferError('ConfigInvalid', `setting ${name} must be a number between ${min} and ${max}, got '${v}'`, { target: name });
  }
  return n;
}

const CONTAINER_RE = /^(?!-)(?!.*--)[a-z0-9-]{3,63}(?<!-)$/;

export function validateContainerName(name: string, target: string): string {
  if (!CONTAINER_RE.test(name)) {
    throw new LakeInferError(
      'ConfigInvalid',
      `${target} must be a valid container name (3-63 lowercase letters, digits and single hyphens), got '${name}'`,
      { target },
    );
  }
  return name;
}

export function parseSecretUri(uri: string, target = 'DATA_STORAGE_SECRET_URI'): { vaultUrl: string; secretName: string; secretVersion?: string } {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new LakeInferError('ConfigInvalid', `${target} must be a URL like https://<vault>.vault.azure.net/secrets/<name>, got '${uri}'`, { target });
  }
  const parts = url.pathname.split('/').filter((p) => p !== '');
  if (url.protocol !== 'https:' || parts.length < 2 || parts.length > 3 || parts[0] !== 'secrets') {
    throw new LakeInferError('ConfigInvalid', `${target} must be https://<vault>/secrets/<name>[/<version>], got '${uri}'`, { target });
  }
  const out: { vaultUrl: string; secretName: string; secretVersion?: string } = { vaultUrl: url.origin, secretName: parts[1]! };
  if (parts[2] !== undefined) out.secretVersion = parts[2];
  return out;
}

export function parseDataConnection(env: Env): DataConnection {
  const cs = raw(env, 'DATA_STORAGE');
  const uri = raw(env, 'DATA_STORAGE__serviceUri') ?? raw(env, 'DATA_STORAGE__blobServiceUri');
  const secret = raw(env, 'DATA_STORAGE_SECRET_URI');
  const given = [cs && 'DATA_STORAGE', uri && 'DATA_STORAGE__serviceUri', secret && 'DATA_STORAGE_SECRET_URI'].filter(Boolean);
  if (given.length === 0) {
    throw new LakeInferError(
      'ConfigMissing',
      'no data storage connection: set DATA_STORAGE (connection string), DATA_STORAGE__serviceUri (managed identity) or DATA_STORAGE_SECRET_URI (Key Vault secret)',
      { target: 'DATA_STORAGE' },
    );
  }
  if (given.length > 1) {
    throw new LakeInferError('ConfigInvalid', `set only one data storage connection, found ${given.join(' and ')}`, { target: String(given[1]) });
  }
  if (cs !== undefined) {
    if (!/AccountName=|BlobEndpoint=|UseDevelopmentStorage=true/i.test(cs)) {
      throw new LakeInferError('ConfigInvalid', 'setting DATA_STORAGE is not a storage connection string (no AccountName or BlobEndpoint)', { target: 'DATA_STORAGE' });
    }
    return { kind: 'connectionString', connectionString: cs };
  }
  if (uri !== undefined) {
    let u: URL;
    try {
      u = new URL(uri);
    } catch {
      throw new LakeInferError('ConfigInvalid', `setting DATA_STORAGE__serviceUri must be a URL, got '${uri}'`, { target: 'DATA_STORAGE__serviceUri' });
    }
    if (u.protocol !== 'https:' && u.hostname !== '127.0.0.1' && u.hostname !== 'localhost') {
      throw new LakeInferError('ConfigInvalid', `setting DATA_STORAGE__serviceUri must use https (token credentials are never sent in clear), got '${uri}'`, { target: 'DATA_STORAGE__serviceUri' });
    }
    const clientId = raw(env, 'DATA_STORAGE__clientId');
    return clientId === undefined ? { kind: 'serviceUri', serviceUri: uri } : { kind: 'serviceUri', serviceUri: uri, clientId };
  }
  return { kind: 'keyVaultSecret', ...parseSecretUri(secret!) };
}

function validateTaskHub(name: string): string {
  if (!/^[A-Za-z][A-Za-z0-9]{2,44}$/.test(name)) {
    throw new LakeInferError('ConfigInvalid', `setting TASK_HUB_NAME must be 3-45 letters and digits starting with a letter, got '${name}'`, { target: 'TASK_HUB_NAME' });
  }
  return name;
}

/**
 * Inference layout on an instance with `cores` cores: INFER_WORKERS sessions (0: one per core) with
 * ORT_INTRA_OP_THREADS threads each (0: the cores shared among them). Measured on 2 cores (README,
 * Benchmarks): one session per core with one thread each beats one session with every core
 * (PP-OCRv4 12.0 vs 10.5 images/s through the pipeline): onnxruntime's intra-op threads synchronise
 * per operator (100 vs 86 CPU ms per image), and two sessions overlap one image's pre- and
 * postprocessing with another's inference.
 */
export function inferenceLayout(s: Pick<Settings, 'inferWorkers' | 'ortIntraOpThreads'>, cores: number): { workers: number; intraOpThreads: number } {
  const c = Math.max(1, Math.floor(cores));
  const workers = s.inferWorkers > 0 ? s.inferWorkers : c;
  return { workers, intraOpThreads: s.ortIntraOpThreads > 0 ? s.ortIntraOpThreads : Math.max(1, Math.floor(c / workers)) };
}

/** A comma-separated list of container names (empty when unset). */
function containerList(env: Env, name: string): string[] {
  const v = raw(env, name);
  if (v === undefined) return [];
  return [...new Set(v.split(',').map((c) => c.trim()).filter((c) => c !== '').map((c) => validateContainerName(c, name)))];
}

/** Reads and validates every setting. Throws LakeInferError naming the first wrong or missing setting. */
export function loadSettings(env: Env = process.env): Settings {
  return {
    taskHub: validateTaskHub(withDefault(env, 'TASK_HUB_NAME')!),
    data: parseDataConnection(env),
    modelsContainer: validateContainerName(withDefault(env, 'MODELS_CONTAINER')!, 'MODELS_CONTAINER'),
    inputContainers: containerList(env, 'INPUT_CONTAINERS'),
    outputContainers: containerList(env, 'OUTPUT_CONTAINERS'),
    inferWorkers: intSetting(env, 'INFER_WORKERS', 0, 64),
    ortIntraOpThreads: intSetting(env, 'ORT_INTRA_OP_THREADS', 0, 256),
    inferBatchSize: intSetting(env, 'INFER_BATCH_SIZE', 1, 256),
    ioConcurrency: intSetting(env, 'IO_CONCURRENCY', 1, 256),
    maxImageBytes: intSetting(env, 'MAX_IMAGE_BYTES', 1024, 2 ** 31 - 1),
    maxImagePixels: intSetting(env, 'MAX_IMAGE_PIXELS', 1, 2 ** 31 - 1),
    modelCacheMaxBytes: intSetting(env, 'MODEL_CACHE_MAX_BYTES', 1024 * 1024, Number.MAX_SAFE_INTEGER),
    partitionBudgetSeconds: numberSetting(env, 'PARTITION_TIME_BUDGET_SECONDS', 0.001, 86_400),
    planChunkItems: intSetting(env, 'PLAN_CHUNK_ITEMS', 1, 10_000_000),
    instanceMemoryMB: intSetting(env, 'INSTANCE_MEMORY_MB', 128, 65536),
    pricePerGbSecond: numberSetting(env, 'PRICE_PER_GB_SECOND', 0, 1),
  };
}

let cached: Settings | undefined;
/** Settings of this process, read on first use. */
export function settings(): Settings {
  cached ??= loadSettings();
  return cached;
}
/** For tests and the local host, which change the environment between runs. */
export function resetSettingsCache(): void {
  cached = undefined;
}
