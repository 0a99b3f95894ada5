/**
 * model.json: how to feed a model and read its outputs. Validated with zod; errors name the field.
 */
import { z } from 'zod';
import { LakeInferError } from '../util/errors';
import { zodPath } from '../util/fieldPath';

export const ADAPTERS = ['yolact', 'yolov8-seg', 'classification', 'text-detection'] as const;
export type AdapterName = (typeof ADAPTERS)[number];

const triple = z.tuple([z.number(), z.number(), z.number()]);

export const InputSpecSchema = z.object({
  /** Input tensor name; default the model's first input. */
  name: z.string().min(1).optional(),
  width: z.number().int().min(1).max(8192),
  height: z.number().int().min(1).max(8192),
  /**
   * stretch: resize to width x height ignoring aspect (YOLACT);
   * letterbox: keep aspect, pad with `pad` (YOLO);
   * fit32: keep aspect, longest side at most maxSide, each side rounded to a multiple of 32 (DBNet); width/height are ignored;
   * height: PaddleOCR's text classifier and recogniser (resize_norm_img): `height` high, ceil(height x aspect) wide
   *   but at most `width`, padded on the right to `width`.
   */
  resize: z.enum(['stretch', 'letterbox', 'fit32', 'height']),
  maxSide: z.number().int().min(32).max(8192).default(960),
  /** The pixel value padding stands for, before normalisation (127.5 normalises to 0 with PaddleOCR's (v/255 - 0.5)/0.5). */
  pad: z.number().min(0).max(255).default(114),
  /**
   * How the decoded 8-bit image is resized to the model input (see lib/model/resample.ts):
   * bilinear: float bilinear, half-pixel centres, no antialiasing, not rounded (torch F.interpolate,
   *   align_corners=False: YOLACT's FastBaseTransform);
   * opencv: cv2.resize INTER_LINEAR on the 8-bit image, bit-exact, rounded to 8 bits as OpenCV does
   *   (ultralytics' letterbox, PaddleOCR's DetResizeForTest);
   * libvips: sharp's resize with `kernel` (antialiased when shrinking; not a reference pipeline).
   */
  resample: z.enum(['bilinear', 'opencv', 'libvips']).default('bilinear'),
  /** libvips kernel for resizing (resample 'libvips' only). */
  kernel: z.enum(['nearest', 'linear', 'cubic', 'lanczos3']).default('linear'),
  /**
   * value = (pixel / divisor * scale - mean[c]) / std[c], per channel in channelOrder, each step in
   * float32 as the references compute it (ultralytics divides by 255; PaddleOCR multiplies by 1/255).
   */
  divisor: z.number().positive().optional(),
  scale: z.number().positive().default(1),
  mean: triple.default([0, 0, 0]),
  std: triple.refine((s) => s.every((v) => v > 0), 'std must be positive').default([1, 1, 1]),
  channelOrder: z.enum(['RGB', 'BGR']).default('RGB'),
});
export type InputSpec = z.infer<typeof InputSpecSchema>;

export const PostSpecSchema = z
  .object({
    confThreshold: z.number().min(0).max(1).optional(),
    nmsThreshold: z.number().min(0).max(1).optional(),
    topK: z.number().int().min(1).optional(),
    maxDetections: z.number().int().min(1).optional(),
    /** classification: apply softmax to the output (false when the model already outputs probabilities). */
    softmax: z.boolean().optional(),
    /** text-detection: binarisation threshold, box score threshold, unclip ratio, min box side (map pixels). */
    binThreshold: z.number().min(0).max(1).optional(),
    boxThreshold: z.number().min(0).max(1).optional(),
    unclipRatio: z.number().min(0).max(10).optional(),
    minSize: z.number().min(0).optional(),
    /** text-detection: most candidate regions examined (PaddleOCR's max_candidates). */
    maxCandidates: z.number().int().min(1).optional(),
    /**
     * yolact: also drop per-class NMS survivors at or below confThreshold before the top
     * maxDetections. The reference (dbolya/yolact fast_nms, second_threshold=False) does not.
     */
    secondThreshold: z.boolean().optional(),
  })
  .default({});

export const ModelSpecSchema = z.object({
  name: z.string().min(1).optional(),
  adapter: z.enum(ADAPTERS),
  input: InputSpecSchema,
  /** Class names; for yolact, without the background class (label of category_id k is labels[k-1]). */
  labels: z.array(z.string()).default([]),
  /**
   * Dataset category id of each label (same order as labels), written as `category_id` in results
   * and coco_results.json: e.g. COCO's official ids 1..90 with gaps for the 80 COCO classes. Without
   * it, yolact writes label index + 1 and the other adapters the label index.
   */
  categoryIds: z.array(z.number().int().min(0)).optional(),
  /** Output names by role (yolact: loc, conf, mask, proto, priors; yolov8-seg: detections, protos; ...). Default: by order. */
  outputs: z.record(z.string(), z.string()).default({}),
  postprocess: PostSpecSchema,
});
export type ModelSpec = z.infer<typeof ModelSpecSchema>;

/** Per-job parameters (the job request's `params`). */
export const InferParamsSchema = z
  .object({
    scoreThreshold: z.number().min(0).max(1).optional(),
    topK: z.number().int().min(1).max(10_000).optional(),
    masks: z.boolean().optional(),
  })
  .strict();
export type InferParams = z.infer<typeof InferParamsSchema>;


export function parseModelSpec(json: unknown, where = 'model.json'): ModelSpec {
  const r = ModelSpecSchema.superRefine((m, ctx) => {
    if (m.categoryIds !== undefined && m.categoryIds.length !== m.labels.length) {
      ctx.addIssue({ code: 'custom', path: ['categoryIds'], message: `has ${m.categoryIds.length} ids for ${m.labels.length} labels` });
    }
  }).safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const field = zodPath(issue.path);
    throw new LakeInferError('ModelInvalid', `${where}: field '${field || '(root)'}' ${issue.message}`, { target: field });
  }
  return r.data;
}
