/**
 * One onnxruntime session on its own worker thread for the bare ceiling (bench/run.ts): sessions
 * on one thread do not run at once in onnxruntime-node, so parallel sessions need threads, as the
 * pipeline's inference workers have.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

interface Init {
  onnx: Uint8Array;
  threads: number;
  batches: { data: Float32Array; shape: number[] }[];
}

async function main(): Promise<void> {
  const init = workerData as Init;
  const s = await ort.InferenceSession.create(init.onnx, { graphOptimizationLevel: 'all', executionMode: 'sequential', intraOpNumThreads: init.threads });
  const name = s.inputNames[0]!;
  const first = init.batches[0]!;
  await s.run({ [name]: new ort.Tensor('float32', first.data, first.shape) }); // warm-up
  parentPort!.postMessage('ready');
  parentPort!.once('message', () => {
    void (async () => {
      for (const b of init.batches) await s.run({ [name]: new ort.Tensor('float32', b.data, b.shape) });
      await s.release();
      parentPort!.postMessage('done');
    })();
  });
}

if (parentPort) void main();
