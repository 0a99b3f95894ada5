/**
 * A YOLACT-ResNet50-shaped ONNX model with random weights, for benchmarks: ResNet-50 backbone,
 * FPN (P3-P7), shared prediction head, protonet; YOLACT's inputs and outputs (550x550 ->
 * loc/conf/mask/proto, 19248 priors). About 30M parameters: realistic compute, meaningless output.
 * Generated on demand (`npm run bench` caches it in bench/models/); never committed.
 */
import { GraphBuilder } from '../test/helpers/onnx-builder';

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function buildYolactResnet50(seed = 1): { model: Uint8Array; params: number } {
  const g = new GraphBuilder();
  const rand = prng(seed);
  let params = 0;
  const conv = (x: string, cin: number, cout: number, k: number, stride = 1, relu = true): string => {
    const n = cout * cin * k * k;
    params += n + cout;
    // Scaled He initialisation keeps activations finite through 50 layers of random weights.
    const std = Math.sqrt(2 / (cin * k * k)) * 0.5;
    const w = new Float32Array(n);
    for (let i = 0; i < n; i++) w[i] = (rand() * 2 - 1) * std * 1.732;
    const y = g.node('Conv', [x, g.const(w, [cout, cin, k, k]), g.const(new Float32Array(cout), [cout])], {
      kernel_shape: { ints: [k, k] },
      strides: { ints: [stride, stride] },
      pads: { ints: [Math.floor(k / 2), Math.floor(k / 2), Math.floor(k / 2), Math.floor(k / 2)] },
    });
    return relu ? g.node('Relu', [y]) : y;
  };
  const bottleneck = (x: string, cin: number, mid: number, cout: number, stride: number): string => {
    const a = conv(x, cin, mid, 1);
    const b = conv(a, mid, mid, 3, stride);
    const c = conv(b, mid, cout, 1, 1, false);
    const short = cin !== cout || stride !== 1 ? conv(x, cin, cout, 1, stride, false) : x;
    return g.node('Relu', [g.node('Add', [c, short])]);
  };
  const layer = (x: string, cin: number, mid: number, cout: number, blocks: number, stride: number): string => {
    let y = bottleneck(x, cin, mid, cout, stride);
    for (let i = 1; i < blocks; i++) y = bottleneck(y, cout, mid, cout, 1);
    return y;
  };
  const resize = (x: string, h: number, w: number, c: number): string => g.node('Resize', [x, '', '', g.ints([1, c, h, w])], { mode: { s: 'linear' }, coordinate_transformation_mode: { s: 'half_pixel' } });

  const input = g.input('input', [1, 3, 550, 550]);
  const stem = g.node('MaxPool', [conv(input, 3, 64, 7, 2)], { kernel_shape: { ints: [3, 3] }, strides: { ints: [2, 2] }, pads: { ints: [1, 1, 1, 1] } }); // 138
  const c2 = layer(stem, 64, 64, 256, 3, 1); // 138
  const c3 = layer(c2, 256, 128, 512, 4, 2); // 69
  const c4 = layer(c3, 512, 256, 1024, 6, 2); // 35
  const c5 = layer(c4, 1024, 512, 2048, 3, 2); // 18
  const l5 = conv(c5, 2048, 256, 1, 1, false);
  const l4 = g.node('Add', [conv(c4, 1024, 256, 1, 1, false), resize(l5, 35, 35, 256)]);
  const l3 = g.node('Add', [conv(c3, 512, 256, 1, 1, false), resize(l4, 69, 69, 256)]);
  const p3 = conv(l3, 256, 256, 3);
  const p4 = conv(l4, 256, 256, 3);
  const p5 = conv(l5, 256, 256, 3);
  const p6 = conv(p5, 256, 256, 3, 2); // 9
  const p7 = conv(p6, 256, 256, 3, 2); // 5
  const per = 4 + 81 + 32;
  const heads = [
    [p3, 69],
    [p4, 35],
    [p5, 18],
    [p6, 9],
    [p7, 5],
  ].map(([p, s]) => {
    const h = conv(p as string, 256, 256, 3);
    const o = conv(h, 256, 3 * per, 3, 1, false);
    return g.node('Reshape', [g.node('Transpose', [o], { perm: { ints: [0, 2, 3, 1] } }), g.ints([1, (s as number) * (s as number) * 3, per])]);
  });
  const all = g.node('Concat', heads, { axis: { i: 1 } });
  const slice = (from: number, to: number): string => g.node('Slice', [all, g.ints([from]), g.ints([to]), g.ints([2])]);
  g.node('Identity', [slice(0, 4)], {}, 'loc');
  g.node('Softmax', [slice(4, 85)], { axis: { i: 2 } }, 'conf');
  g.node('Tanh', [slice(85, per)], {}, 'mask');
  let q = p3;
  for (let i = 0; i < 3; i++) q = conv(q, 256, 256, 3);
  q = conv(resize(q, 138, 138, 256), 256, 256, 3);
  g.node('Transpose', [conv(q, 256, 32, 1)], { perm: { ints: [0, 2, 3, 1] } }, 'proto');
  g.output('loc', [1, 19248, 4]);
  g.output('conf', [1, 19248, 81]);
  g.output('mask', [1, 19248, 32]);
  g.output('proto', [1, 138, 138, 32]);
  return { model: g.build(), params };
}
