/**
 * The tree is the architecture (DESIGN.md, Layout): every folder of lib/ is a layer named in
 * eslint/layers.mjs with a README saying what it owns and may import; the lint rule rejects an
 * import up the layers, into local/ or cli/, and one that closes a circle; no file is much over
 * 400 lines; the tests mirror lib/'s folders.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ESLint } from 'eslint';
import { repoRoot as root } from './helpers/freshCopy';

const MAX_LINES = 430;

async function layers(): Promise<Record<string, number>> {
  const mod = (await import(pathToFileURL(join(root, 'eslint', 'layers.mjs')).href)) as { LAYERS: Record<string, number> };
  return mod.LAYERS;
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...tsFiles(p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

test('every folder holding code in lib/ is a layer of the lint rule, with a README; no file over ~400 lines', async () => {
  const L = await layers();
  const folders = new Set(tsFiles(join(root, 'lib')).map((f) => relative(root, f).split('/').slice(0, -1).join('/')));
  for (const folder of folders) {
    // A file belongs to the longest layer folder that contains it (model/adapters is part of model).
    const owner = Object.keys(L).filter((k) => folder === k || folder.startsWith(`${k}/`));
    assert.ok(owner.length > 0, `${folder}/ holds code but is no layer in eslint/layers.mjs`);
  }
  for (const folder of Object.keys(L)) {
    assert.ok(existsSync(join(root, folder)), `the layer ${folder}/ exists`);
    if (folder.startsWith('lib/local/') || folder === 'functions') continue; // described in lib/local/README.md and lib/README.md
    assert.ok(existsSync(join(root, folder, 'README.md')), `${folder}/ has a README saying what it owns and may import`);
  }
  const readme = readFileSync(join(root, 'lib', 'README.md'), 'utf8');
  for (const folder of Object.keys(L)) assert.ok(readme.includes(`\`${folder.replace(/^lib\//, '').replace(/^functions$/, '../functions')}/\``), `lib/README.md names ${folder}/`);
  for (const f of [...tsFiles(join(root, 'lib')), ...tsFiles(join(root, 'functions'))]) {
    const lines = readFileSync(f, 'utf8').split('\n').length;
    assert.ok(lines <= MAX_LINES, `${relative(root, f)} has ${lines} lines: split it by concern`);
  }
});

test('the lint rule fails an import up the layers, into local/ or cli/, and one that closes a circle; the tree itself passes', async () => {
  const eslint = new ESLint({ cwd: root });
  const messages = async (file: string, code: string): Promise<string[]> => (await eslint.lintText(code, { filePath: join(root, file) }))[0]!.messages.filter((m) => m.ruleId === 'lakeinfer/layers').map((m) => m.message);
  const up = await messages('lib/storage/probe.ts', "import { ORCHESTRATOR } from '../orchestration/orchestrator';\nexport const x = ORCHESTRATOR;\n");
  assert.equal(up.length, 1, 'storage/ importing orchestration/ is refused');
  assert.match(up[0]!, /lib\/storage\/ \(layer \d+\) must not import lib\/orchestration\//);
  const local = await messages('lib/job/probe.ts', "import { startLocalHost } from '../local/host/host';\nexport const x = startLocalHost;\n");
  assert.equal(local.length, 1, 'job/ importing the local host is refused');
  const cli = await messages('functions/probe.ts', "import { main } from '../lib/cli/cli';\nexport const x = main;\n");
  assert.equal(cli.length, 1, 'a trigger importing the CLI is refused');
  // report.ts is imported by finalize.ts: report importing finalize back closes a circle (a type-only one too).
  const circle = await messages('lib/fanin/report.ts', "import type { FinalizeInput } from './finalize';\nexport type X = FinalizeInput;\n");
  assert.equal(circle.length, 1, 'a circle is refused');
  assert.match(circle[0]!, /closes an import circle/);
  const down = await messages('lib/fanin/probe.ts', "import { shortMessage } from '../partition/parts';\nexport const x = shortMessage;\n");
  assert.deepEqual(down, [], 'an import down the layers passes');
  // The tree as it is: no message from the rule anywhere in lib/ or functions/.
  const results = await eslint.lintFiles(['lib/**/*.ts', 'functions/**/*.ts']);
  const found = results.flatMap((r) => r.messages.filter((m) => m.ruleId === 'lakeinfer/layers').map((m) => `${relative(root, r.filePath)}: ${m.message}`));
  assert.deepEqual(found, []);
});

test('the tests mirror lib/: every test folder is a lib/ subsystem (or a whole-system folder)', () => {
  const extra = new Set(['helpers', 'fixtures', 'system']);
  for (const e of readdirSync(join(root, 'test'), { withFileTypes: true })) {
    if (!e.isDirectory() || extra.has(e.name)) continue;
    assert.ok(existsSync(join(root, 'lib', e.name)), `test/${e.name}/ mirrors lib/${e.name}/`);
  }
});
