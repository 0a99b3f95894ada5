/**
 * Inference worker thread: holds one onnxruntime session, runs batches and the adapter's
 * postprocessing off the main thread (session.run blocks its thread for the whole inference).
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { ADAPTER_IMPLS, type ImageMeta } from './adapters';
import { outputsByRole, resolveRoles, type Roles, type Shapes } from './adapters/roles';
import type { ImageInference, TensorView } from './postprocess';
import type { InferParams, ModelSpec } from './spec';

export interface WorkerInit {
  modelPath: string;
  spec: ModelSpec;
  intraOpThreads: number;
}

export interface ReadyMessage {
  type: 'ready';
  inputName: string;
  inputShape: (number | string)[];
  outputNames: string[];
  /** Output name per adapter role, when the model's metadata decides it (else decided on the first run). */
  roles?: Roles;
}

export interface RunMessage {
  type: 'run';
  id: number;
  batch: Float32Array;
  n: number;
  h: number;
  w: number;
  metas: ImageMeta[];
  params: InferParams;
}

export type ImageOutcome = { ok: true; result: ImageInference } | { ok: false; message: string };

export interface ResultMessage {
  type: 'result';
  id: number;
  outcomes: ImageOutcome[];
  runMs: number;
  postMs: number;
}

export interface ErrorMessage {
  type: 'error';
  id?: number;
  message: string;
}

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('worker.ts must run in a worker thread');
  const init = workerData as WorkerInit;
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(init.modelPath, {
      intraOpNumThreads: init.intraOpThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
  } catch (err) {
    port.postMessage({ type: 'error', message: `could not load the ONNX model: ${(err as Error).message}` } satisfies ErrorMessage);
    return;
  }
  const inputName = init.spec.input.name ?? session.inputNames[0]!;
  if (!session.inputNames.includes(inputName)) {
    port.postMessage({ type: 'error', message: `model has no input '${inputName}' (it has ${session.inputNames.join(', ')})` } satisfies ErrorMessage);
    return;
  }
  const meta = session.inputMetadata.find((m) => m.name === inputName);
  const inputShape = meta && meta.isTensor ? [...meta.shape] : [];
  const declared: Shapes = Object.fromEntries(session.outputMetadata.map((m) => [m.name, m.isTensor ? [...m.shape] : []]));
  let roles: Roles | undefined;
  try {
    roles = resolveRoles(init.spec.adapter, init.spec, declared);
  } catch (err) {
    port.postMessage({ type: 'error', message: (err as Error).message } satisfies ErrorMessage);
    return;
  }
  port.postMessage({ type: 'ready', inputName, inputShape, outputNames: [...session.outputNames], ...(roles ? { roles } : {}) } satisfies ReadyMessage);
  const adapter = ADAPTER_IMPLS[init.spec.adapter];

  port.on('message', async (msg: RunMessage) => {
    try {
      const t0 = performance.now();
      const feeds = { [inputName]: new ort.Tensor('float32', msg.batch, [msg.n, 3, msg.h, msg.w]) };
      const results = await session.run(feeds);
      const t1 = performance.now();
      // Symbolic dimensions left the roles open at load time: the first run's shapes decide them.
      const resolved = outputsByRole(init.spec.adapter, init.spec, results, roles);
      roles = resolved.roles;
      const outputs: Record<string, TensorView> = {};
      for (const [role, t] of Object.entries(resolved.outputs)) {
        if (t.type !== 'float32') throw new Error(`output '${roles[role]}' (${role}) is ${t.type}, expected float32`);
        outputs[role] = { data: t.data as Float32Array, dims: [...t.dims] };
      }
      const outcomes: ImageOutcome[] = msg.metas.map((m, b) => {
        try {
          return { ok: true, result: adapter(outputs, b, m, init.spec, msg.params) };
        } catch (err) {
          return { ok: false, message: (err as Error).message };
        }
      });
      port.postMessage({ type: 'result', id: msg.id, outcomes, runMs: t1 - t0, postMs: performance.now() - t1 } satisfies ResultMessage);
    } catch (err) {
      port.postMessage({ type: 'error', id: msg.id, message: (err as Error).message } satisfies ErrorMessage);
    }
  });
}

void main();
