/**
 * The layout rule (DESIGN.md, Layout): each folder of lib/ is a layer, and a file imports only
 * from its own folder or from a lower layer; nothing imports a file that imports it back (no
 * circles, type-only imports included). Relative imports are resolved as TypeScript does.
 *
 *   cli > local/host > local/durable > local/functions > local/azurite > functions (the triggers)
 *   > api > orchestration > fanin > partition, continuous > job, operator, deploy > model, video > storage
 *   > util (video sits beside model)
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

export const LAYERS = {
  'lib/util': 0,
  'lib/storage': 1,
  'lib/model': 2,
  'lib/video': 2,
  'lib/job': 3,
  'lib/operator': 3,
  'lib/deploy': 3,
  'lib/partition': 4,
  'lib/continuous': 4,
  'lib/fanin': 5,
  'lib/orchestration': 6,
  'lib/api': 7,
  functions: 8,
  'lib/local/azurite': 9,
  'lib/local/functions': 10,
  'lib/local/durable': 11,
  'lib/local/host': 12,
  'lib/cli': 13,
};

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const posix = (p) => p.split(sep).join('/');

/** The layer folder a project file belongs to (undefined outside lib/ and functions/). */
export function folderOf(file) {
  const rel = posix(relative(root, file));
  let best;
  for (const f of Object.keys(LAYERS)) if ((rel === f || rel.startsWith(`${f}/`)) && (!best || f.length > best.length)) best = f;
  return best;
}

function resolveImport(from, spec) {
  if (!spec.startsWith('.')) return undefined;
  const base = resolve(dirname(from), spec);
  for (const c of [`${base}.ts`, join(base, 'index.ts'), base]) if (existsSync(c) && statSync(c).isFile()) return c;
  return undefined;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*['"](\.[^'"]+)['"]/g;

/** The project's import graph over lib/ and functions/, read once per lint run. */
let graph;
function projectGraph() {
  if (graph) return graph;
  graph = new Map();
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) {
        const text = readFileSync(p, 'utf8');
        graph.set(p, [...text.matchAll(IMPORT)].map((m) => resolveImport(p, m[1])).filter(Boolean));
      }
    }
  };
  for (const d of ['lib', 'functions']) if (existsSync(join(root, d))) walk(join(root, d));
  return graph;
}

/** Whether `to` reaches `from` in the graph (the import from -> to closes a circle). */
function reaches(g, to, from) {
  const seen = new Set([to]);
  const stack = [to];
  while (stack.length) {
    const n = stack.pop();
    if (n === from) return true;
    for (const m of g.get(n) ?? []) {
      if (seen.has(m)) continue;
      seen.add(m);
      stack.push(m);
    }
  }
  return false;
}

const rule = {
  meta: { type: 'problem', docs: { description: 'imports follow the layers of DESIGN.md and close no circle' }, schema: [] },
  create(context) {
    const file = context.filename;
    const from = folderOf(file);
    if (!from) return {};
    const check = (node, spec) => {
      const target = resolveImport(file, spec);
      if (!target) return;
      const to = folderOf(target);
      if (!to) {
        context.report({ node, message: `${from}/ imports ${posix(relative(root, target))}, outside lib/ and functions/` });
        return;
      }
      if (to !== from && !(LAYERS[to] < LAYERS[from])) {
        context.report({ node, message: `${from}/ (layer ${LAYERS[from]}) must not import ${to}/ (layer ${LAYERS[to]}): imports go down the layers of DESIGN.md (move the shared part to the lower module that owns it)` });
        return;
      }
      const g = projectGraph();
      if (g.has(file) && reaches(g, target, file)) context.report({ node, message: `importing ${posix(relative(root, target))} closes an import circle back to this file: move the shared part to the module that owns it` });
    };
    return {
      ImportDeclaration: (node) => check(node, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node, node.source.value),
      ExportAllDeclaration: (node) => check(node, node.source.value),
      ImportExpression: (node) => node.source.type === 'Literal' && typeof node.source.value === 'string' && check(node, node.source.value),
    };
  },
};

export default { rules: { layers: rule } };
