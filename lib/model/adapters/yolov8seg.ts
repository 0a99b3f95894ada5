/**
 * YOLOv8/YOLO11 segmentation (ultralytics export): output0 [4 + nc + nm, anchors] with boxes as
 * cx, cy, w, h in letterboxed input pixels and sigmoid class scores; output1 prototypes [nm, ph, pw].
 * Class-aware NMS (IoU 0.7), masks cropped to the box at prototype resolution, mapped back through
 * the letterbox to the original image.
 */
import { greedyNms, imageSlice, instanceMask, labelOf, round6, toCocoBox, type Detection } from '../postprocess';
import { outputFor, type Adapter } from './types';

export const yolov8SegAdapter: Adapter = (outputs, b, meta, spec, params) => {
  const post = spec.postprocess;
  const confThresh = params.scoreThreshold ?? post.confThreshold ?? 0.25;
  const nmsThresh = post.nmsThreshold ?? 0.7;
  const maxDet = Math.min(post.maxDetections ?? 300, params.topK ?? Number.POSITIVE_INFINITY);
  const detT = outputFor(outputs, spec, 'detections', ['output0'], 0);
  const protoT = outputFor(outputs, spec, 'protos', ['output1', 'proto'], 1);
  if (!detT || !protoT) throw new Error('YOLOv8-seg model needs two outputs (detections, prototypes)');
  const det = imageSlice(detT, b, 2, 'detections');
  const proto = imageSlice(protoT, b, 3, 'prototypes');
  const [nm, ph, pw] = proto.dims as [number, number, number];
  const [rows, A] = det.dims as [number, number];
  const nc = rows - 4 - nm;
  if (nc < 1) throw new Error(`YOLOv8-seg detections have ${rows} rows, fewer than 4 + classes + ${nm} mask coefficients`);
  const d = det.data;
  const { scaleX, scaleY, padX, padY, inW, inH } = meta.transform;

  // Best class per anchor; boxes offset by class so NMS never suppresses across classes.
  const cand: number[] = [];
  const cls = new Int32Array(A);
  const score = new Float32Array(A);
  for (let a = 0; a < A; a++) {
    let best = -1;
    let bs = -Infinity;
    for (let c = 0; c < nc; c++) {
      const s = d[(4 + c) * A + a]!;
      if (s > bs) {
        bs = s;
        best = c;
      }
    }
    cls[a] = best;
    score[a] = bs;
    if (bs > confThresh) cand.push(a);
  }
  const boxes = new Float32Array(A * 4);
  const offset = Math.max(inW, inH) * 2;
  for (const a of cand) {
    const cx = d[a]!, cy = d[A + a]!, w = d[2 * A + a]!, h = d[3 * A + a]!;
    const o = cls[a]! * offset;
    boxes[4 * a] = cx - w / 2 + o;
    boxes[4 * a + 1] = cy - h / 2 + o;
    boxes[4 * a + 2] = cx + w / 2 + o;
    boxes[4 * a + 3] = cy + h / 2 + o;
  }
  const kept = greedyNms(boxes, score, cand, nmsThresh, maxDet);

  const W = meta.width;
  const H = meta.height;
  const protoSrc = { data: proto.data, offset: 0, ph, pw, nk: nm, layout: 'CHW' as const };
  const map = { sx: (scaleX * pw) / inW, ox: (padX * pw) / inW, sy: (scaleY * ph) / inH, oy: (padY * ph) / inH };
  // Coefficients of anchor a are the column d[(4 + nc + k) * A + a]: gather them once per detection.
  const coeffs = new Float32Array(nm);
  return {
    detections: kept.map((a) => {
      const cx = d[a]!, cy = d[A + a]!, w = d[2 * A + a]!, h = d[3 * A + a]!;
      const bx1 = cx - w / 2, by1 = cy - h / 2, bx2 = cx + w / 2, by2 = cy + h / 2;
      const out: Detection = {
        bbox: toCocoBox((bx1 - padX) / scaleX, (by1 - padY) / scaleY, (bx2 - padX) / scaleX, (by2 - padY) / scaleY, W, H),
        score: round6(score[a]!),
        category_id: cls[a]!,
        label: labelOf(spec.labels, cls[a]!),
      };
      if (params.masks !== false) {
        for (let k = 0; k < nm; k++) coeffs[k] = d[(4 + nc + k) * A + a]!;
        const crop = { x1: (bx1 * pw) / inW, x2: (bx2 * pw) / inW, y1: (by1 * ph) / inH, y2: (by2 * ph) / inH };
        const m = instanceMask(protoSrc, coeffs, 0, crop, map, W, H);
        if (m) {
          out.segmentation = m.rle;
          out.area = m.area;
        }
      }
      return out;
    }),
  };
};
