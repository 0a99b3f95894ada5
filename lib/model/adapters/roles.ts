/**
 * Which model output plays which role for an adapter. In order: model.json's `outputs` mapping;
 * else an output whose name says it (exactly one match); else the shapes (a plain
 * torch.onnx.export gives numeric output names, so shapes must decide):
 *   yolact:         loc [1,N,4], conf [1,N,C], mask [1,N,k], proto [1,H,W,k], priors [N,4] (optional)
 *   yolov8-seg:     detections [1,4+nc+nm,A], protos [1,nm,H,W]
 *   classification: scores (the only output)
 *   text-detection: probability [1,1,H,W] (the only output)
 * When the shapes cannot decide, the error names every output with its shape and says how to map
 * them. Symbolic dimensions (strings, from the model's metadata) match anything: a choice that
 * depends on one is left to run time, when every dimension is known; a contradiction fails at once.
 */
import { LakeInferError } from '../../util/errors';
import type { AdapterName, ModelSpec } from '../spec';

export type Dim = number | string;
export type Shapes = Readonly<Record<string, readonly Dim[]>>;
export type Roles = Record<string, string>;

interface RoleDef {
  role: string;
  hints: readonly string[];
  optional?: boolean;
}

export const ROLES: Record<AdapterName, readonly RoleDef[]> = {
  yolact: [
    { role: 'loc', hints: ['loc'] },
    { role: 'conf', hints: ['conf'] },
    { role: 'mask', hints: ['mask', 'coef'] },
    { role: 'proto', hints: ['proto'] },
    { role: 'priors', hints: ['prior'], optional: true },
  ],
  'yolov8-seg': [
    { role: 'detections', hints: ['output0'] },
    { role: 'protos', hints: ['output1', 'proto'] },
  ],
  classification: [{ role: 'scores', hints: ['logit', 'prob', 'score'] }],
  'text-detection': [{ role: 'probability', hints: ['sigmoid', 'prob', 'map'] }],
};

const known = (d: Dim | undefined): d is number => typeof d === 'number';
/** Equal, or either side unknown (a symbolic dimension). */
const fits = (d: Dim | undefined, v: Dim | undefined): boolean => d === undefined || v === undefined || !known(d) || !known(v) || d === v;
const rank = (s: readonly Dim[] | undefined, r: number): boolean => s !== undefined && (s.length === 0 || s.length === r);
const lastOf = (s: readonly Dim[]): Dim | undefined => s[s.length - 1];

/** Whether a complete assignment (role -> shape) has the shapes the adapter needs. */
const FITS: Record<AdapterName, (s: Readonly<Record<string, readonly Dim[]>>) => boolean> = {
  yolact: (s) => {
    const { loc, conf, mask, proto, priors } = s;
    if (!rank(loc, 3) || !rank(conf, 3) || !rank(mask, 3) || !rank(proto, 4)) return false;
    const n = loc![1];
    return (
      fits(lastOf(loc!), 4) &&
      fits(lastOf(mask!), lastOf(proto!)) &&
      fits(conf![1], n) &&
      fits(mask![1], n) &&
      (priors === undefined || (rank(priors, 2) && fits(lastOf(priors), 4) && fits(priors[0], n)))
    );
  },
  'yolov8-seg': ({ detections, protos }) => rank(detections, 3) && rank(protos, 4),
  classification: () => true,
  'text-detection': ({ probability }) => rank(probability, 4) && fits(probability![1], 1),
};

function describe(shapes: Shapes): string {
  return Object.entries(shapes)
    .map(([n, s]) => `'${n}' [${s.join(', ')}]`)
    .join(', ');
}

/**
 * Output name per role. Throws ModelInvalid (target 'outputs') when a role cannot be filled or two
 * roles claim one output; returns undefined instead when only a symbolic dimension stands in the
 * way (decided again at run time).
 */
export function resolveRoles(adapter: AdapterName, spec: Pick<ModelSpec, 'outputs'>, shapes: Shapes): Roles | undefined {
  const defs = ROLES[adapter];
  const names = Object.keys(shapes);
  const roles: Roles = {};
  const fail = (why: string): never => {
    throw new LakeInferError(
      'ModelInvalid',
      `the ${adapter} adapter ${why}; the model's outputs are ${describe(shapes)}. Name them in model.json "outputs" (${defs.map((d) => `"${d.role}"${d.optional ? ' (optional)' : ''}`).join(', ')})`,
      { target: 'outputs' },
    );
  };
  for (const d of defs) {
    const named = spec.outputs[d.role];
    if (named === undefined) continue;
    if (!names.includes(named)) fail(`was told in model.json outputs.${d.role} to read '${named}', which the model does not output`);
    roles[d.role] = named;
  }
  for (const d of defs) {
    if (roles[d.role]) continue;
    const taken = new Set(Object.values(roles));
    const hit = names.filter((n) => !taken.has(n) && d.hints.some((h) => n.toLowerCase().includes(h)));
    if (hit.length === 1) roles[d.role] = hit[0]!;
  }
  const unresolved = defs.filter((d) => !roles[d.role]);
  const symbolic = (list: readonly string[]): boolean => list.some((n) => shapes[n]!.length === 0 || shapes[n]!.some((d) => !known(d)));
  if (unresolved.length === 0) {
    if (FITS[adapter](Object.fromEntries(Object.entries(roles).map(([r, n]) => [r, shapes[n]!])))) return roles;
    return fail(`needs other shapes than its outputs have (${Object.entries(roles).map(([r, n]) => `${r} -> '${n}'`).join(', ')})`);
  }
  const taken = new Set(Object.values(roles));
  const free = names.filter((n) => !taken.has(n));
  // Every way to give the free outputs to the unresolved roles (optional roles may stay empty)
  // whose shapes fit; among them, those that fill the most roles.
  const valid: Roles[] = [];
  const assign = (i: number, used: Set<string>, acc: Roles): void => {
    if (i === unresolved.length) {
      const all = { ...roles, ...acc };
      if (FITS[adapter](Object.fromEntries(Object.entries(all).map(([r, n]) => [r, shapes[n]!])))) valid.push(all);
      return;
    }
    const d = unresolved[i]!;
    if (d.optional) assign(i + 1, used, acc);
    for (const n of free) {
      if (used.has(n)) continue;
      used.add(n);
      assign(i + 1, used, { ...acc, [d.role]: n });
      used.delete(n);
    }
  };
  assign(0, new Set(), {});
  const most = Math.max(-1, ...valid.map((v) => Object.keys(v).length));
  const best = valid.filter((v) => Object.keys(v).length === most);
  if (best.length === 1) return best[0]!;
  // Unknown dimensions fit anything: several fits may narrow to one once every dimension is known.
  if (best.length > 1 && symbolic(names)) return undefined;
  const missing = unresolved.filter((d) => !d.optional).map((d) => `'${d.role}'`).join(', ');
  return fail(
    best.length === 0
      ? `finds no outputs with the shapes ${missing} need`
      : `cannot tell the outputs apart by shape (${best.length} ways to assign ${missing}: ${best.map((b) => unresolved.filter((d) => b[d.role]).map((d) => `${d.role} -> '${b[d.role]}'`).join(', ')).slice(0, 3).join('; ')})`,
  );
}

/** One run's outputs (by output name, concrete shapes) keyed by role, resolving the roles when not known yet. */
export function outputsByRole<T extends { dims: readonly number[] }>(adapter: AdapterName, spec: Pick<ModelSpec, 'outputs'>, named: Readonly<Record<string, T>>, roles?: Roles): { roles: Roles; outputs: Record<string, T> } {
  const r = roles ?? resolveRoles(adapter, spec, Object.fromEntries(Object.entries(named).map(([n, t]) => [n, [...t.dims]])))!;
  return { roles: r, outputs: Object.fromEntries(Object.entries(r).map(([role, name]) => [role, named[name]!])) };
}
