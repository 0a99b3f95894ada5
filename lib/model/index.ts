/**
 * Models: `<name>/model.onnx` + `<name>/model.json` in the models container. Loaded lazily, once
 * per process, cached by the ONNX blob's ETag (a new upload is picked up, an unchanged one is not
 * downloaded again), and served by an InferenceEngine of worker threads.
 */
import { createHash } from 'node:crypto';
import { mkdir, rename, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { LakeInferError, restStatus } from '../errors';
import { normalizeEtag, readBlob, storageError } from '../storage';
import { InferenceEngine, type EngineOptions } from './engine';
import { round1, type ImageInference } from './postprocess';
import { prepareImage, type DecodeLimits, type RgbImage } from './preprocess';
import { parseModelSpec, type InferParams, type ModelSpec } from './spec';

export interface LoadedModel {
  name: string;
  /** ETag of model.onnx when loaded. */
  etag: string;
  spec: ModelSpec;
  engine: InferenceEngine;
  /** Bytes of model.onnx. */
  size: number;
}

export function validateModelName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(name) || name.includes('..')) {
    throw new LakeInferError('InvalidRequest', `model.name must be 1-100 characters of A-Z a-z 0-9 . _ - (no '..'), got '${name}'`, { target: 'model.name' });
  }
  return name;
}

export class ModelCache {
  private readonly loaded = new Map<string, Promise<LoadedModel>>();

  constructor(
    private readonly opts: EngineOptions & { cacheDir?: string },
  ) {}

  /** The model, loading or reloading it when model.onnx's ETag changed. */
  async get(models: ContainerClient, name: string): Promise<LoadedModel> {
    validateModelName(name);
    const onnx = models.getBlobClient(`${name}/model.onnx`);
    let etag: string;
    let size: number;
    try {
      const props = await onnx.getProperties();
      etag = normalizeEtag(props.etag);
      size = props.contentLength ?? 0;
    } catch (err) {
      if (restStatus(err) === 404) {
        throw new LakeInferError('ModelNotFound', `model '${name}' not found: no ${name}/model.onnx in container '${models.containerName}'`, { target: 'model.name' });
      }
      throw storageError(err, 'reading model properties', `${models.containerName}/${name}/model.onnx`);
    }
    const key = `${models.url}|${name}`;
    const current = this.loaded.get(key);
    if (current) {
      const m = await current.catch(() => undefined);
      if (m && m.etag === etag) return m;
      if (m) {
        this.loaded.delete(key);
        void m.engine.close();
      }
    }
    const loading = this.load(models, name, etag, size);
    this.loaded.set(key, loading);
    loading.catch(() => {
      if (this.loaded.get(key) === loading) this.loaded.delete(key);
    });
    return loading;
  }

  private async load(models: ContainerClient, name: string, etag: string, size: number): Promise<LoadedModel> {
    const json = await readBlob(models, `${name}/model.json`);
    if (json === undefined) {
      throw new LakeInferError('ModelInvalid', `model '${name}' has no ${name}/model.json in container '${models.containerName}'`, { target: 'model.name' });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(json.data.toString('utf8'));
    } catch (err) {
      throw new LakeInferError('ModelInvalid', `${name}/model.json is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    const spec = parseModelSpec(parsed, `${name}/model.json`);
    const dir = this.opts.cacheDir ?? join(tmpdir(), 'lakeinfer-models');
    await mkdir(dir, { recursive: true });
    const file = join(dir, `${createHash('sha256').update(`${models.url}|${name}|${etag}`).digest('hex').slice(0, 32)}.onnx`);
    const have = await stat(file).catch(() => undefined);
    if (!have || have.size !== size) {
      const part = `${file}.${process.pid}.${Date.now()}.part`;
      try {
        // ifMatch: the file we cache is exactly the version whose ETag keys it.
        await models.getBlobClient(`${name}/model.onnx`).downloadToFile(part, 0, undefined, { conditions: { ifMatch: `"${etag}"` } });
      } catch (err) {
        throw storageError(err, 'downloading model', `${models.containerName}/${name}/model.onnx`);
      }
      await rename(part, file);
    }
    const engine = await InferenceEngine.create(file, spec, this.opts);
    return { name, etag, spec, engine, size };
  }

  async close(): Promise<void> {
    const all = [...this.loaded.values()];
    this.loaded.clear();
    await Promise.all(all.map((p) => p.then((m) => m.engine.close()).catch(() => undefined)));
  }
}

export interface ImageTimings {
  decodeMs: number;
  inferMs: number;
  postMs: number;
  /** Time waiting for a free worker (queueing), included in neither of the above. */
  queueMs: number;
  batch: number;
}

export interface AnalyzedImage extends ImageInference {
  width: number;
  height: number;
  format: string;
  timings: ImageTimings;
  /** The decoded image, when preprocessing decoded it whole (for the overlay). */
  pixels?: RgbImage;
}

/** Decode + preprocess + infer + postprocess one image. Bad images throw a per-image LakeInferError. */
export async function analyzeImage(data: Buffer, model: Pick<LoadedModel, 'spec' | 'engine'>, params: InferParams, limits: DecodeLimits): Promise<AnalyzedImage> {
  const t0 = performance.now();
  const prepared = await prepareImage(data, model.spec.input, limits);
  const t1 = performance.now();
  const out = await model.engine.infer(prepared, params);
  const total = performance.now() - t1;
  return {
    ...out.result,
    width: prepared.width,
    height: prepared.height,
    format: prepared.format,
    ...(prepared.pixels ? { pixels: prepared.pixels } : {}),
    timings: {
      decodeMs: round1(t1 - t0),
      inferMs: round1(out.runMs),
      postMs: round1(out.postMs),
      queueMs: round1(Math.max(0, total - out.runMs * out.batch - out.postMs * out.batch)),
      batch: out.batch,
    },
  };
}

export { InferenceEngine } from './engine';
export type { EngineOptions } from './engine';
export { parseModelSpec } from './spec';
export type { ModelSpec, InferParams } from './spec';
