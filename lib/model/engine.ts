/**
 * InferenceEngine: a pool of worker threads, each with its own onnxruntime session of one model.
 * Requests queue up while workers are busy and are sent as batches (same input size and params,
 * up to the batch size the model allows), so batching happens exactly when there is a backlog.
 */
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { LakeInferError } from '../util/errors';
import type { ImageMeta } from './adapters';
import type { ImageInference } from './postprocess';
import type { Prepared } from './preprocess';
import type { InferParams, ModelSpec } from './spec';
import type { ErrorMessage, ProbedMessage, ProbeMessage, ReadyMessage, ResultMessage, RunMessage, WorkerInit } from './worker';

export interface EngineOptions {
  workers: number;
  /** onnxruntime intra-op threads per session (0: onnxruntime decides). */
  intraOpThreads: number;
  /** Largest batch for models with a dynamic batch dimension. */
  batchSize: number;
}

export interface InferOutcome {
  result: ImageInference;
  /** This image's share of the batch's session.run, and its own postprocessing. */
  runMs: number;
  postMs: number;
  batch: number;
}

interface Pending {
  prepared: Prepared;
  params: InferParams;
  key: string;
  resolve: (o: InferOutcome) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  busy: Pending[] | undefined;
  runId: number;
}

export class InferenceEngine {
  readonly inputName: string;
  readonly inputShape: (number | string)[];
  readonly outputNames: string[];
  /** Images per session.run: fixed by the model (often 1) or the configured batch size. */
  readonly maxBatch: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private closed = false;
  private nextId = 1;
  private readonly probes = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  /** Batches run so far and images in them (for tests and stats). */
  readonly stats = { batches: 0, images: 0, maxBatchSeen: 0 };

  private constructor(
    private readonly init: WorkerInit,
    ready: ReadyMessage,
    batchSize: number,
  ) {
    this.inputName = ready.inputName;
    this.inputShape = ready.inputShape;
    this.outputNames = ready.outputNames;
    const b = ready.inputShape[0];
    this.maxBatch = typeof b === 'number' && b > 0 ? b : batchSize;
  }

  static async create(modelPath: string, spec: ModelSpec, opts: EngineOptions): Promise<InferenceEngine> {
    const init: WorkerInit = { modelPath, spec, intraOpThreads: opts.intraOpThreads };
    const first = await startWorker(init);
    const engine = new InferenceEngine(init, first.ready, opts.batchSize);
    try {
      engine.checkInputShape(spec);
      engine.adopt(first.worker);
      const more = await Promise.all(Array.from({ length: Math.max(0, opts.workers - 1) }, () => startWorker(init)));
      for (const m of more) engine.adopt(m.worker);
    } catch (err) {
      await engine.close();
      await first.worker.terminate();
      throw err;
    }
    return engine;
  }

  private checkInputShape(spec: ModelSpec): void {
    const shape = this.inputShape;
    if (shape.length !== 4) {
      if (shape.length === 0) return; // unknown: trust model.json
      throw new LakeInferError('ModelInvalid', `model input '${this.inputName}' has ${shape.length} dimensions, expected 4 (N, 3, H, W)`);
    }
    const [, c, h, w] = shape;
    if (typeof c === 'number' && c !== 3) throw new LakeInferError('ModelInvalid', `model input '${this.inputName}' has ${c} channels, expected 3`);
    if (spec.input.resize !== 'fit32') {
      if (typeof h === 'number' && h !== spec.input.height) {
        throw new LakeInferError('ModelInvalid', `model.json input.height is ${spec.input.height} but the model expects ${h}`, { target: 'input.height' });
      }
      if (typeof w === 'number' && w !== spec.input.width) {
        throw new LakeInferError('ModelInvalid', `model.json input.width is ${spec.input.width} but the model expects ${w}`, { target: 'input.width' });
      }
    }
  }

  private adopt(worker: Worker): void {
    const slot: Slot = { worker, busy: undefined, runId: 0 };
    this.slots.push(slot);
    worker.on('message', (msg: ResultMessage | ErrorMessage | ProbedMessage) => this.onMessage(slot, msg));
    worker.on('error', (err) => this.onCrash(slot, err));
    worker.on('exit', (code) => {
      if (!this.closed) this.onCrash(slot, new Error(`inference worker exited with code ${code}`));
    });
    this.dispatch();
  }

  /** Queues one preprocessed image; resolves with its result when its batch has run. */
  infer(prepared: Prepared, params: InferParams = {}): Promise<InferOutcome> {
    if (this.closed) return Promise.reject(new LakeInferError('InferenceFailed', 'inference engine is closed', { retryable: true }));
    return new Promise<InferOutcome>((resolve, reject) => {
      const key = `${prepared.transform.inW}x${prepared.transform.inH}|${JSON.stringify(params)}`;
      this.queue.push({ prepared, params, key, resolve, reject });
      this.dispatch();
    });
  }

  get pending(): number {
    return this.queue.length;
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.busy) continue;
      const head = this.queue.shift()!;
      const batch = [head];
      for (let i = 0; i < this.queue.length && batch.length < this.maxBatch; ) {
        if (this.queue[i]!.key === head.key) batch.push(...this.queue.splice(i, 1));
        else i++;
      }
      this.send(slot, batch);
    }
  }

  private send(slot: Slot, batch: Pending[]): void {
    const { inW: w, inH: h } = batch[0]!.prepared.transform;
    const per = 3 * h * w;
    const data = new Float32Array(batch.length * per);
    batch.forEach((p, i) => data.set(p.prepared.tensor, i * per));
    const metas: ImageMeta[] = batch.map((p) => ({ width: p.prepared.width, height: p.prepared.height, transform: p.prepared.transform }));
    slot.busy = batch;
    slot.runId = this.nextId++;
    const msg: RunMessage = { type: 'run', id: slot.runId, batch: data, n: batch.length, h, w, metas, params: batch[0]!.params };
    slot.worker.postMessage(msg, [data.buffer]);
    this.stats.batches++;
    this.stats.images += batch.length;
    this.stats.maxBatchSeen = Math.max(this.stats.maxBatchSeen, batch.length);
  }

  /**
   * Plan-time check that the model and its model.json work together: one inference on a plain grey
   * image must give finite outputs with the shapes and class count the adapter needs, and the
   * adapter must accept them. Throws ModelInvalid saying what is wrong.
   */
  validate(): Promise<void> {
    const slot = this.slots[0];
    if (this.closed || !slot) return Promise.reject(new LakeInferError('InferenceFailed', 'inference engine is closed', { retryable: true }));
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.probes.set(id, { resolve, reject });
      slot.worker.postMessage({ type: 'probe', id } satisfies ProbeMessage);
    });
  }

  private onMessage(slot: Slot, msg: ResultMessage | ErrorMessage | ProbedMessage): void {
    if (msg.type === 'probed') {
      const p = this.probes.get(msg.id);
      this.probes.delete(msg.id);
      if (msg.error) p?.reject(new LakeInferError('ModelInvalid', `model check failed: ${msg.error}`, { target: 'model.name' }));
      else p?.resolve();
      return;
    }
    const batch = slot.busy;
    if (!batch || msg.id !== slot.runId) return;
    slot.busy = undefined;
    if (msg.type === 'error') {
      const err = new LakeInferError('InferenceFailed', `inference failed: ${msg.message}`);
      for (const p of batch) p.reject(err);
    } else {
      const n = batch.length;
      batch.forEach((p, i) => {
        const o = msg.outcomes[i]!;
        if (o.ok) p.resolve({ result: o.result, runMs: msg.runMs / n, postMs: msg.postMs / n, batch: n });
        else p.reject(o.code ? new LakeInferError(o.code, o.message) : new LakeInferError('InferenceFailed', `postprocessing failed: ${o.message}`));
      });
    }
    this.dispatch();
  }

  private onCrash(slot: Slot, err: Error): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    const batch = slot.busy;
    slot.busy = undefined;
    slot.worker.removeAllListeners();
    void slot.worker.terminate();
    // The images were fine as far as we know: the failure is retryable.
    for (const p of batch ?? []) p.reject(new LakeInferError('InferenceFailed', `inference worker crashed: ${err.message}`, { retryable: true, cause: err }));
    if (this.closed) return;
    startWorker(this.init).then(
      ({ worker }) => (this.closed ? void worker.terminate() : this.adopt(worker)),
      (e: Error) => {
        if (this.slots.length === 0) {
          const q = this.queue.splice(0);
          for (const p of q) p.reject(new LakeInferError('InferenceFailed', `no inference worker could be restarted: ${e.message}`, { retryable: true }));
        }
      },
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.probes.values()) p.reject(new LakeInferError('InferenceFailed', 'inference engine closed', { retryable: true }));
    this.probes.clear();
    const q = this.queue.splice(0);
    for (const p of q) p.reject(new LakeInferError('InferenceFailed', 'inference engine closed', { retryable: true }));
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }
}

function startWorker(init: WorkerInit): Promise<{ worker: Worker; ready: ReadyMessage }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(join(__dirname, 'worker.js'), { workerData: init });
    const onMsg = (msg: ReadyMessage | ErrorMessage): void => {
      cleanup();
      if (msg.type === 'ready') resolve({ worker, ready: msg });
      else {
        void worker.terminate();
        reject(new LakeInferError('ModelInvalid', msg.message));
      }
    };
    const onErr = (err: Error): void => {
      cleanup();
      reject(new LakeInferError('ModelInvalid', `inference worker failed to start: ${err.message}`, { cause: err }));
    };
    const onExit = (code: number): void => {
      cleanup();
      reject(new LakeInferError('ModelInvalid', `inference worker exited with code ${code} while loading the model`));
    };
    function cleanup(): void {
      worker.off('message', onMsg);
      worker.off('error', onErr);
      worker.off('exit', onExit);
    }
    worker.on('message', onMsg);
    worker.on('error', onErr);
    worker.on('exit', onExit);
  });
}
