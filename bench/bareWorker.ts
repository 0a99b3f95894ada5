/**
 * One onnxruntime session on its own worker thread for the bare ceiling (bench/run.ts): sessions
 * on one thread do not run at once in onnxruntime-node, so parallel sessions need threads, as the
 * pipeline's inference workers have. Errors (a batch the model does not take) come back as
 * messages, and the thread ends by itself after releasing its session: terminating a thread inside
 * an onnxruntime call aborts the process.
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
  let s: ort.InferenceSession | undefined;
  try {
    s = await ort.InferenceSession.create(init.onnx, { graphOptimizationLevel: 'all', executionMode: 'sequential', intraOpNumThreads: init.threads });
    const name = s.inputNames[0]!;
    // Warm-up on every input shape it will time (onnxruntime plans memory per new shape).
    const seen = new Set<string>();
    for (const b of init.batches) {
      if (seen.has(b.shape.join('x'))) continue;
      seen.add(b.shape.join('x'));
      await s.run({ [name]: new ort.Tensor('float32', b.data, b.shape) });
    }
    parentPort!.postMessage({ type: 'ready' });
    await new Promise((r) => parentPort!.once('message', r));
    for (const b of init.batches) await s.run({ [name]: new ort.Tensor('float32', b.data, b.shape) });
    parentPort!.postMessage({ type: 'done' });
  } catch (err) {
    parentPort!.postMessage({ type: 'error', message: (err as Error).message });
  } finally {
    await s?.release();
    parentPort!.close();
  }
}

if (parentPort) void main();
