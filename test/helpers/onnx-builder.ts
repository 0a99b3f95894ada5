/**
 * Builds exact ONNX models from code with onnx-proto, so tests know precisely what a model outputs.
 */
import { onnx } from 'onnx-proto';

export type Attr = { i: number } | { f: number } | { ints: number[] } | { floats: number[] } | { s: string };
type Dim = number | string;

export class GraphBuilder {
  private readonly nodes: onnx.INodeProto[] = [];
  private readonly inits: onnx.ITensorProto[] = [];
  private readonly inputs: onnx.IValueInfoProto[] = [];
  private readonly outputs: onnx.IValueInfoProto[] = [];
  private n = 0;

  input(name: string, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, dims));
    return name;
  }

  output(name: string, dims?: Dim[]): void {
    this.outputs.push(dims ? valueInfo(name, dims) : { name, type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT } } });
  }

  /** float32 initializer. */
  const(values: ArrayLike<number>, dims: number[], name = this.fresh('c')): string {
    const data = Float32Array.from(values as ArrayLike<number>);
    const expect = dims.reduce((a, d) => a * d, 1);
    if (data.length !== expect) throw new Error(`constant ${name}: ${data.length} values for dims [${dims}]`);
    this.inits.push({ name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(data.buffer.slice(0)) });
    return name;
  }

  /** int64 initializer (shapes, axes, slice bounds). */
  ints(values: number[], name = this.fresh('i')): string {
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.inits.push({ name, dims: [values.length], dataType: onnx.TensorProto.DataType.INT64, rawData: new Uint8Array(data.buffer) });
    return name;
  }

  node(op: string, inputs: string[], attrs: Record<string, Attr> = {}, output = this.fresh(op.toLowerCase())): string {
    const attribute: onnx.IAttributeProto[] = Object.entries(attrs).map(([name, a]) => {
      if ('i' in a) return { name, type: onnx.AttributeProto.AttributeType.INT, i: a.i };
      if ('f' in a) return { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: a.f };
      if ('ints' in a) return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: a.ints };
      if ('floats' in a) return { name, type: onnx.AttributeProto.AttributeType.FLOATS, floats: a.floats };
      return { name, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(a.s) };
    });
    this.nodes.push({ opType: op, input: inputs, output: [output], name: this.fresh('n'), attribute });
    return output;
  }

  /** Broadcasts a small constant to `shape` (Expand). */
  fill(value: number | number[], shape: number[]): string {
    const v = Array.isArray(value) ? value : [value];
    const cdims = shape.map((_, i) => (i === shape.length - 1 ? v.length : 1));
    return this.node('Expand', [this.const(v, cdims), this.ints(shape)]);
  }

  build(opset = 17): Uint8Array {
    const model: onnx.IModelProto = {
      irVersion: 8,
      producerName: 'lakeinfer-tests',
      opsetImport: [{ domain: '', version: opset }],
      graph: { name: 'g', node: this.nodes, initializer: this.inits, input: this.inputs, output: this.outputs },
    };
    return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
  }

  private fresh(p: string): string {
    return `${p}_${this.n++}`;
  }
}

function valueInfo(name: string, dims: Dim[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}
