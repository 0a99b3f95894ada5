import type { InferParams, ModelSpec } from '../spec';
import type { Transform } from '../preprocess';
import type { ImageInference, TensorView } from '../postprocess';

export interface ImageMeta {
  /** Original size after EXIF orientation. */
  width: number;
  height: number;
  transform: Transform;
}

/**
 * Turns a batch's outputs into one image's result. Outputs are keyed by role (adapters/roles.ts
 * resolves them once per model). Pure: no I/O.
 */
export type Adapter = (outputs: Readonly<Record<string, TensorView>>, b: number, meta: ImageMeta, spec: ModelSpec, params: InferParams) => ImageInference;
