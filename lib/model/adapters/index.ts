import type { AdapterName } from '../spec';
import type { Adapter } from './types';
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
