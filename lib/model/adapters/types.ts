import type { InferParams, ModelSpec } from '../spec';
import type { Transform } from '../preprocess';
import type { ImageInference, TensorView } from '../postprocess';

export interface ImageMeta {
  /** Original size after EXIF orientation. */
  width: number;
  height: number;
  transform: Transform;
}

/** Turns a batch's outputs (by output name) into one image's result. Pure: no I/O. */
export type Adapter = (outputs: Readonly<Record<string, TensorView>>, b: number, meta: ImageMeta, spec: ModelSpec, params: InferParams) => ImageInference;

/**
 * Picks the output for a role: model.json's `outputs[role]`, else an output whose name contains
 * one of the hints, else the output at `fallbackIndex` in the model's order.
 */
export function outputFor(outputs: Readonly<Record<string, TensorView>>, spec: ModelSpec, role: string, hints: readonly string[], fallbackIndex: number): TensorView | undefined {
  const named = spec.outputs[role];
  if (named !== undefined) {
    const t = outputs[named];
    if (t === undefined) throw new Error(`model.json outputs.${role} names '${named}', which the model does not output (it has ${Object.keys(outputs).join(', ')})`);
    return t;
  }
  const names = Object.keys(outputs);
  const byName = names.find((n) => hints.some((h) => n.toLowerCase().includes(h)));
  if (byName !== undefined) return outputs[byName];
  const key = names[fallbackIndex];
  return key === undefined ? undefined : outputs[key];
}
