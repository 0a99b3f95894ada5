/**
 * Models: `<name>/model.onnx` + `<name>/model.json` in the models container, loaded lazily, once
 * per process and version, and served by an InferenceEngine of worker threads.
 *
 * A version is the pair of ETags (model.onnx, model.json). A job pins the version its plan saw:
 * its partitions ask for exactly that one, downloaded with If-Match, so a model replaced during a
 * job is a ModelChanged error, never a second model in one job. The ONNX files are kept on local
 * disk by version (shared by the processes of an instance), least recently used first out past
 * maxCacheBytes; a download that fails, or a file ONNX Runtime cannot load, is removed.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, utimes, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { LakeInferError, restStatus } from '../util/errors';
import { normalizeEtag, storageError } from '../storage';
import { collectStream } from '../storage/blobs';
import { InferenceEngine, type EngineOptions } from './engine';
import { parseModelSpec, type ModelSpec } from './spec';

/** One version of a model: the ETags of its two blobs. */
export interface ModelVersion {
  etag: string;
  jsonEtag: string;
}

export interface LoadedModel extends ModelVersion {
  name: string;
  spec: ModelSpec;
  engine: InferenceEngine;
  /** The ONNX file on local disk. */
  file: string;
}

export interface ModelCacheOptions extends EngineOptions {
  /** Local folder for downloaded ONNX files (default: <tmp>/lakeinfer-models). */
  cacheDir?: string;
  /** Most bytes of ONNX files kept on disk (default 2 GiB). */
  maxCacheBytes?: number;
}

export function validateModelName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(name) || name.includes('..')) {
    throw new LakeInferError('InvalidRequest', `model.name must be 1-100 characters of A-Z a-z 0-9 . _ - (no '..'), got '${name}'`, { target: 'model.name' });
  }
  return name;
}

function changed(name: string, what: string, pinned: string, err?: unknown): LakeInferError {
  return new LakeInferError(
    'ModelChanged',
    `model '${name}' was replaced after this job was planned (${what} ETag ${pinned} is gone); a job uses one model version: resubmit the job with "restart": true to run the new one`,
    { target: 'model.name', ...(err === undefined ? {} : { cause: err }) },
  );
}

export class ModelCache {
  private readonly loaded = new Map<string, Promise<LoadedModel>>();
  private readonly dir: string;

  constructor(private readonly opts: ModelCacheOptions) {
    this.dir = opts.cacheDir ?? join(tmpdir(), 'lakeinfer-models');
  }

  /** The version now in storage. */
  async current(models: ContainerClient, name: string): Promise<ModelVersion> {
    validateModelName(name);
    const head = async (file: string): Promise<string> => {
      try {
        return normalizeEtag((await models.getBlobClient(`${name}/${file}`).getProperties()).etag);
      } catch (err) {
        if (restStatus(err) === 404 && file === 'model.onnx') {
          throw new LakeInferError('ModelNotFound', `model '${name}' not found: no ${name}/model.onnx in container '${models.containerName}'`, { target: 'model.name' });
        }
        if (restStatus(err) === 404) throw new LakeInferError('ModelInvalid', `model '${name}' has no ${name}/model.json in container '${models.containerName}'`, { target: 'model.name' });
        throw storageError(err, 'reading model properties', `${models.containerName}/${name}/${file}`);
      }
    };
    const [etag, jsonEtag] = await Promise.all([head('model.onnx'), head('model.json')]);
    return { etag, jsonEtag };
  }

  /**
   * The model: the pinned version when given (ModelChanged if storage no longer has it and this
   * process does not hold it), else the current one. `validate` also runs a probe inference (at plan time).
   */
  async get(models: ContainerClient, name: string, pin?: ModelVersion, opts: { validate?: boolean } = {}): Promise<LoadedModel> {
    const version = pin ?? (await this.current(models, name));
    const key = `${models.url}|${name}|${version.etag}|${version.jsonEtag}`;
    let loading = this.loaded.get(key);
    if (!loading) {
      loading = this.load(models, name, version, pin !== undefined);
      this.loaded.set(key, loading);
      loading.catch(() => {
        if (this.loaded.get(key) === loading) this.loaded.delete(key);
      });
    }
    const m = await loading;
    if (opts.validate) {
      // A version (ONNX file and model.json) is checked once per instance: a marker by both ETags.
      const marker = `${m.file}.${createHash('sha256').update(m.jsonEtag).digest('hex').slice(0, 16)}.validated`;
      if (!(await stat(marker).catch(() => undefined))) {
        await m.engine.validate();
        await writeFile(marker, new Date().toISOString()).catch(() => undefined);
      }
    }
    return m;
  }

  private async load(models: ContainerClient, name: string, v: ModelVersion, pinned: boolean): Promise<LoadedModel> {
    // model.json of exactly this version.
    let text: string;
    try {
      const res = await models.getBlobClient(`${name}/model.json`).download(0, undefined, { conditions: { ifMatch: `"${v.jsonEtag}"` } });
      text = (await collectStream(res.readableStreamBody!, 16 * 1024 * 1024))?.toString('utf8') ?? '';
    } catch (err) {
      if (restStatus(err) === 412 || (pinned && restStatus(err) === 404)) throw changed(name, 'model.json', v.jsonEtag, err);
      if (restStatus(err) === 404) throw new LakeInferError('ModelInvalid', `model '${name}' has no ${name}/model.json in container '${models.containerName}'`, { target: 'model.name' });
      throw storageError(err, 'downloading model.json', `${models.containerName}/${name}/model.json`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new LakeInferError('ModelInvalid', `${name}/model.json is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    const spec = parseModelSpec(parsed, `${name}/model.json`);

    await mkdir(this.dir, { recursive: true });
    const file = join(this.dir, `${createHash('sha256').update(`${models.url}|${name}|${v.etag}`).digest('hex').slice(0, 32)}.onnx`);
    // One process of the instance downloads a version; the others wait for its file (a lock older
    // than ten minutes is a dead process's and is taken over).
    const lock = `${file}.lock`;
    while (!(await stat(file).catch(() => undefined))) {
      let held: FileHandle;
      try {
        held = await open(lock, 'wx');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const age = await stat(lock).then((st) => Date.now() - st.mtimeMs, () => 0);
        if (age > 10 * 60_000) await rm(lock, { force: true });
        else await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      try {
        if (await stat(file).catch(() => undefined)) break;
        // Written under a temporary name and renamed: a file under the final name is complete.
        const part = `${file}.${process.pid}.${Date.now()}.part`;
        try {
          await models.getBlobClient(`${name}/model.onnx`).downloadToFile(part, 0, undefined, { conditions: { ifMatch: `"${v.etag}"` } });
          await rename(part, file);
        } catch (err) {
          await rm(part, { force: true });
          if (restStatus(err) === 412 || (pinned && restStatus(err) === 404)) throw changed(name, 'model.onnx', v.etag, err);
          throw storageError(err, 'downloading model', `${models.containerName}/${name}/model.onnx`);
        }
      } finally {
        await held.close();
        await rm(lock, { force: true });
      }
    }
    let engine: InferenceEngine;
    try {
      engine = await InferenceEngine.create(file, spec, this.opts);
    } catch (err) {
      // A file ONNX Runtime cannot load is not kept for the next attempt.
      if ((err as LakeInferError).code === 'ModelInvalid') await rm(file, { force: true });
      throw err;
    }
    const now = new Date();
    await utimes(file, now, now).catch(() => undefined);
    await this.prune(file).catch(() => undefined);
    return { name, ...v, spec, engine, file };
  }

  /** Least recently used ONNX files out until the folder fits maxCacheBytes (never `keep`). */
  private async prune(keep: string): Promise<void> {
    const max = this.opts.maxCacheBytes ?? 2 * 1024 ** 3;
    const files = await Promise.all(
      (await readdir(this.dir))
        .filter((f) => f.endsWith('.onnx'))
        .map(async (f) => {
          const path = join(this.dir, f);
          const st = await stat(path).catch(() => undefined);
          return { path, size: st?.size ?? 0, used: st?.mtimeMs ?? 0 };
        }),
    );
    let total = files.reduce((a, f) => a + f.size, 0);
    for (const f of files.sort((a, b) => a.used - b.used)) {
      if (total <= max) break;
      if (f.path === keep) continue;
      await rm(f.path, { force: true });
      for (const other of await readdir(this.dir)) if (other.startsWith(`${f.path.slice(this.dir.length + 1)}.`) && other.endsWith('.validated')) await rm(join(this.dir, other), { force: true });
      total -= f.size;
    }
  }

  async close(): Promise<void> {
    const all = [...this.loaded.values()];
    this.loaded.clear();
    await Promise.all(all.map((p) => p.then((m) => m.engine.close()).catch(() => undefined)));
  }
}
