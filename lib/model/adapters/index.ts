import type { AdapterName } from '../spec';
import type { Adapter } from './types';
import type { TensorView } from '../postprocess';
import { classificationAdapter } from './classification';
import { textDetectionAdapter } from './textdet';
import { yolactAdapter } from './yolact';
import { yolov8SegAdapter } from './yolov8seg';

export const ADAPTER_IMPLS: Record<AdapterName, Adapter> = {
  yolact: yolactAdapter,
  'yolov8-seg': yolov8SegAdapter,
  classification: classificationAdapter,
  'text-detection': textDetectionAdapter,
};
export type { Adapter, ImageMeta } from './types';

/**
 * How many classes a model's outputs (by role) score: model.json's labels must name exactly that
 * many (checked at plan time, so a short label list never labels detections 'class_57').
 */
export const CLASS_COUNT: Record<AdapterName, (outputs: Readonly<Record<string, TensorView>>) => number> = {
  yolact: (o) => o['conf']!.dims.at(-1)! - 1,
  'yolov8-seg': (o) => o['detections']!.dims.at(-2)! - 4 - o['protos']!.dims.at(-3)!,
  classification: (o) => (o['scores']!.dims.length === 1 ? o['scores']!.data.length : o['scores']!.data.length / o['scores']!.dims[0]!),
  'text-detection': () => 1,
};
