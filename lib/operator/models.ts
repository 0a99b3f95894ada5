/**
 * `lakeinfer models add`: uploads <name>/model.onnx and <name>/model.json to the models container,
 * after checking them together on this machine as a job's plan will (model.json valid, the ONNX
 * loads, one inference on a grey image gives what the adapter needs), so a wrong pair fails here
 * with the reason and not later in a job.
 */
import { readFile } from 'node:fs/promises';
import type { ContainerClient } from '@azure/storage-blob';
import { LakeInferError } from '../util/errors';
import { CATALOG } from '../model/catalog';
import { InferenceEngine } from '../model/engine';
import { parseModelSpec, type ModelSpec } from '../model/spec';
import { writeBlob } from '../storage';

export interface AddModelOptions {
  /** model.json from the catalog entry with this id (its name replaced by the model's name). */
  fromCatalog?: string;
  /** model.json from this file. */
  jsonPath?: string;
  /** Skip the local load and probe inference (e.g. a model too large for this machine). */
  skipCheck?: boolean;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** The model.json to upload, validated (errors name the field). */
export async function modelJsonFor(name: string, o: AddModelOptions): Promise<ModelSpec> {
  if (!NAME.test(name)) throw new LakeInferError('InvalidRequest', `model name '${name}' must be 1-100 letters, digits, '.', '_' or '-'`, { target: 'name' });
  if (o.fromCatalog && o.jsonPath) throw new LakeInferError('InvalidRequest', 'give --from-catalog or --json, not both', { target: 'model.json' });
  let json: unknown;
  if (o.fromCatalog) {
    const entry = CATALOG[o.fromCatalog];
    if (!entry) throw new LakeInferError('InvalidRequest', `no catalog entry '${o.fromCatalog}' (known: ${Object.keys(CATALOG).join(', ')})`, { target: 'from-catalog' });
    json = { ...entry, name };
  } else if (o.jsonPath) {
    try {
      json = JSON.parse(await readFile(o.jsonPath, 'utf8'));
    } catch (err) {
      throw new LakeInferError('InvalidRequest', `${o.jsonPath}: ${(err as Error).message}`, { target: 'model.json' });
    }
  } else {
    throw new LakeInferError('InvalidRequest', 'say what model.json to use: --from-catalog <id> or --json <file>', { target: 'model.json' });
  }
  const spec = parseModelSpec(json, o.jsonPath ?? `catalog entry '${o.fromCatalog}'`);
  if (spec.name === undefined) return { ...spec, name };
  if (spec.name !== name) throw new LakeInferError('InvalidRequest', `model.json names '${spec.name}' but the model is added as '${name}'`, { target: 'name' });
  return spec;
}

export interface AddedModel {
  name: string;
  etag: string;
  jsonEtag: string;
  bytes: number;
}

export async function addModel(models: ContainerClient, name: string, onnxPath: string, o: AddModelOptions = {}): Promise<AddedModel> {
  const spec = await modelJsonFor(name, o);
  if (!o.skipCheck) {
    const engine = await InferenceEngine.create(onnxPath, spec, { workers: 1, intraOpThreads: 1, batchSize: 1 });
    try {
      await engine.validate();
    } finally {
      await engine.close();
    }
  }
  const onnx = await readFile(onnxPath);
  await models.createIfNotExists();
  // The ONNX first: a job pins both files by ETag, and model.json's arrival completes the pair.
  const put = async (file: string, body: Buffer): Promise<string> => {
    const etag = await writeBlob(models, `${name}/${file}`, body);
    if (etag === false) throw new Error(`${name}/${file} was not written`);
    return etag;
  };
  const etag = await put('model.onnx', onnx);
  const jsonEtag = await put('model.json', Buffer.from(`${JSON.stringify(spec, null, 2)}\n`));
  return { name, etag, jsonEtag, bytes: onnx.length };
}
