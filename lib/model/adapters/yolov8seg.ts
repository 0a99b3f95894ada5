/**
 * YOLOv8/YOLO11 segmentation (ultralytics export), as ultralytics' predictor and validator compute
 * it: output0 [4 + nc + nm, anchors] with boxes as cx, cy, w, h in letterboxed input pixels and
 * class scores; output1 prototypes [nm, ph, pw].
 *  - non_max_suppression: best class per anchor, score > conf, at most 30,000 candidates by score,
 *    class-aware NMS (boxes offset by class * 7680), IoU > iou suppressed, at most max_det kept;
 *  - boxes to the image with scale_boxes (gain = min(inH/h, inW/w), padding round(d - 0.1));
 *  - masks with process_mask(upsample=True): coefficients . prototypes (no activation), cropped at
 *    prototype resolution to the box (crop_mask), F.interpolate(bilinear) to the input size, > 0;
 *    then to the image as scale_image does (padding cut at int(pad), cv2.resize INTER_LINEAR of the
 *    8-bit mask).
 */
import { cropCells, greedyNms, imageSlice, labelOf, categoryOf, protoMap, round6, toCocoBox, upsampleAbove, windowRle, type Detection, type MaskWindow } from '../postprocess';
import { opencvAxis, resizeOpencvU8, roundHalfEven, touchedRange } from '../resample';
import type { Adapter } from './types';

/** ultralytics' max_wh: the class offset that keeps NMS within a class. */
const MAX_WH = 7680;
const MAX_NMS = 30_000;

/**
 * scale_image for one binary mask at input resolution (zero outside `win`): cut the letterbox
 * padding (int() of the float padding), resize to the image with OpenCV's 8-bit INTER_LINEAR.
 */
function maskToImage(win: MaskWindow, inW: number, inH: number, W: number, H: number): MaskWindow | undefined {
  const gain = Math.min(inH / H, inW / W);
  const padX = (inW - W * gain) / 2;
  const padY = (inH - H * gain) / 2;
  const top = Math.trunc(padY), left = Math.trunc(padX);
  const bottom = Math.trunc(inH - padY), right = Math.trunc(inW - padX);
  const cw = right - left;
  const ch = bottom - top;
  // The cut image, zero but for the window.
  const src = new Uint8Array(cw * ch);
  let any = false;
  for (let y = 0; y < win.h; y++) {
    const sy = win.y0 + y - top;
    if (sy < 0 || sy >= ch) continue;
    for (let x = 0; x < win.w; x++) {
      const sx = win.x0 + x - left;
      if (sx < 0 || sx >= cw || !win.data[y * win.w + x]) continue;
      src[sy * cw + sx] = 1;
      any = true;
    }
  }
  if (!any) return undefined;
  const ax = opencvAxis(cw, W, true);
  const ay = opencvAxis(ch, H, false);
  const xr = touchedRange(ax.i0, ax.i1, Math.max(0, win.x0 - left), Math.min(cw - 1, win.x0 + win.w - 1 - left));
  const yr = touchedRange(ay.i0, ay.i1, Math.max(0, win.y0 - top), Math.min(ch - 1, win.y0 + win.h - 1 - top));
  if (!xr || !yr) return undefined;
  const out = { x0: xr[0], y0: yr[0], w: xr[1] - xr[0] + 1, h: yr[1] - yr[0] + 1 };
  return { ...out, data: resizeOpencvU8(src, cw, ch, 1, W, H, out) };
}

export const yolov8SegAdapter: Adapter = (outputs, b, meta, spec, params) => {
  const post = spec.postprocess;
  const confThresh = params.scoreThreshold ?? post.confThreshold ?? 0.25;
  const nmsThresh = post.nmsThreshold ?? 0.7;
  const maxDet = Math.min(post.maxDetections ?? 300, params.topK ?? Number.POSITIVE_INFINITY);
  const det = imageSlice(outputs['detections']!, b, 2, 'detections');
  const proto = imageSlice(outputs['protos']!, b, 3, 'prototypes');
  const [nm, ph, pw] = proto.dims as [number, number, number];
  const [rows, A] = det.dims as [number, number];
  const nc = rows - 4 - nm;
  if (nc < 1) throw new Error(`YOLOv8-seg detections have ${rows} rows, fewer than 4 + classes + ${nm} mask coefficients`);
  const d = det.data;
  const { inW, inH } = meta.transform;

  // Best class per anchor; boxes offset by class so NMS never suppresses across classes.
  let cand: number[] = [];
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
  if (cand.length > MAX_NMS) cand = [...cand].sort((i, j) => score[j]! - score[i]! || i - j).slice(0, MAX_NMS);
  const boxes = new Float32Array(A * 4);
  for (const a of cand) {
    const cx = d[a]!, cy = d[A + a]!, w = d[2 * A + a]!, h = d[3 * A + a]!;
    const o = cls[a]! * MAX_WH;
    boxes[4 * a] = cx - w / 2 + o;
    boxes[4 * a + 1] = cy - h / 2 + o;
    boxes[4 * a + 2] = cx + w / 2 + o;
    boxes[4 * a + 3] = cy + h / 2 + o;
  }
  const kept = greedyNms(boxes, score, cand, nmsThresh, maxDet);

  const W = meta.width;
  const H = meta.height;
  // scale_boxes: one gain for both axes, from the shapes; padding as LetterBox rounds it.
  const gain = Math.min(inH / H, inW / W);
  const padX = roundHalfEven((inW - W * gain) / 2 - 0.1);
  const padY = roundHalfEven((inH - H * gain) / 2 - 0.1);
  const protoSrc = { data: proto.data, ph, pw, nk: nm, layout: 'CHW' as const };
  // Coefficients of anchor a are the column d[(4 + nc + k) * A + a]: gathered once per detection.
  const coeffs = new Float32Array(nm);
  return {
    detections: kept.map((a) => {
      const cx = d[a]!, cy = d[A + a]!, w = d[2 * A + a]!, h = d[3 * A + a]!;
      const bx1 = cx - w / 2, by1 = cy - h / 2, bx2 = cx + w / 2, by2 = cy + h / 2;
      const out: Detection = {
        bbox: toCocoBox((bx1 - padX) / gain, (by1 - padY) / gain, (bx2 - padX) / gain, (by2 - padY) / gain, W, H),
        score: round6(score[a]!),
        category_id: categoryOf(spec, cls[a]!, cls[a]!),
        label: labelOf(spec.labels, cls[a]!),
      };
      if (params.masks !== false) {
        for (let k = 0; k < nm; k++) coeffs[k] = d[(4 + nc + k) * A + a]!;
        const cells = cropCells((bx1 * pw) / inW, (bx2 * pw) / inW, (by1 * ph) / inH, (by2 * ph) / inH, pw, ph);
        const atInput = cells ? upsampleAbove(protoMap(protoSrc, coeffs, 0, cells, (v) => v), pw, ph, cells, inW, inH, 0) : undefined;
        const m = windowRle(atInput ? maskToImage(atInput, inW, inH, W, H) : undefined, W, H);
        out.segmentation = m.rle;
        out.area = m.area;
      }
      return out;
    }),
  };
};
