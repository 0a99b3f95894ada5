/**
 * Inference worker thread: holds one onnxruntime session, runs batches and the adapter's
 * postprocessing off the main thread (session.run blocks its thread for the whole inference).
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { ADAPTER_IMPLS, CLASS_COUNT, type ImageMeta } from './adapters';
import { normalizer } from './preprocess';
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

export type ImageOutcome = { ok: true; result: ImageInference } | { ok: false; message: string; code?: 'ModelOutputInvalid' };

/** Plan-time check: one inference on a plain grey image (see InferenceEngine.validate). */
export interface ProbeMessage {
  type: 'probe';
  id: number;
}

export interface ProbedMessage {
  type: 'probed';
  id: number;
  error?: string;
}

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

  /** Outputs of image b that are NaN or infinite: such outputs are no result. */
  const nonFinite = (outputs: Record<string, TensorView>, b: number, n: number): string | undefined => {
    for (const [role, t] of Object.entries(outputs)) {
      const per = t.dims[0] === n && t.dims.length > 1 ? t.data.length / n : t.data.length;
      const from = per === t.data.length ? 0 : b * per;
      for (let i = from; i < from + per; i++) if (!Number.isFinite(t.data[i]!)) return `the model's '${role}' output has NaN or infinite values for this image`;
    }
    return undefined;
  };

  /** The grey image the probe feeds: the model's own size where fixed, else model.json's (64 px for fit32). */
  const probe = async (): Promise<void> => {
    const dim = (d: number | string | undefined, fallback: number): number => (typeof d === 'number' && d > 0 ? d : fallback);
    const fit = init.spec.input.resize === 'fit32';
    const h = dim(inputShape[2], fit ? 64 : init.spec.input.height);
    const w = dim(inputShape[3], fit ? 64 : init.spec.input.width);
    const n = dim(inputShape[0], 1);
    const norm = normalizer(init.spec.input);
    const data = new Float32Array(n * 3 * h * w);
    for (let c = 0; c < 3; c++) {
      const v = norm(c, init.spec.input.pad);
      if (!Number.isFinite(v)) throw new Error(`model.json input normalisation gives ${v} for channel ${c} (check scale, divisor, mean and std)`);
      for (let b = 0; b < n; b++) data.fill(v, (b * 3 + c) * h * w, (b * 3 + c + 1) * h * w);
    }
    const results = await session.run({ [inputName]: new ort.Tensor('float32', data, [n, 3, h, w]) });
    const resolved = outputsByRole(init.spec.adapter, init.spec, results, roles);
    roles = resolved.roles;
    const outputs: Record<string, TensorView> = {};
    for (const [role, t] of Object.entries(resolved.outputs)) {
      if (t.type !== 'float32') throw new Error(`output '${roles[role]}' (${role}) is ${t.type}, expected float32`);
      outputs[role] = { data: t.data as Float32Array, dims: [...t.dims] };
    }
    const bad = nonFinite(outputs, 0, n);
    if (bad) throw new Error(`on a plain grey image ${bad}`);
    const classes = CLASS_COUNT[init.spec.adapter](outputs);
    if (init.spec.labels.length > 0 && init.spec.labels.length !== classes) {
      throw new Error(`model.json lists ${init.spec.labels.length} labels but the model scores ${classes} classes${init.spec.adapter === 'yolact' ? ' (besides background)' : ''}`);
    }
    const meta: ImageMeta = { width: w, height: h, transform: { scaleX: 1, scaleY: 1, padX: 0, padY: 0, inW: w, inH: h } };
    adapter(outputs, 0, meta, init.spec, {});
  };

  port.on('message', async (msg: RunMessage | ProbeMessage) => {
    if (msg.type === 'probe') {
      try {
        await probe();
        port.postMessage({ type: 'probed', id: msg.id } satisfies ProbedMessage);
      } catch (err) {
        port.postMessage({ type: 'probed', id: msg.id, error: (err as Error).message } satisfies ProbedMessage);
      }
      return;
    }
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
        const bad = nonFinite(outputs, b, msg.n);
        if (bad) return { ok: false, message: bad, code: 'ModelOutputInvalid' };
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
