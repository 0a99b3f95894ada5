import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SETTINGS } from '../lib/util/config';
import { RESULT_COLUMNS } from '../lib/partition/parquet';
import { demoScenes } from '../lib/cli/demo';
import { renderTextScene } from '../lib/cli/textImages';
import { freshCopy } from './helpers/freshCopy';
import { yolov8SegStandIn } from './helpers/models';

const root = join(__dirname, '..', '..');

test('README settings table lists exactly the settings lib/config declares', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const rows = [...readme.matchAll(/^\| `([A-Z][A-Za-z0-9_]*)` \|/gm)].map((m) => m[1]);
  assert.deepEqual(rows, SETTINGS.map((s) => s.name));
});

test('local.settings.example.json uses only declared settings (plus the host\'s own)', () => {
  const example = JSON.parse(readFileSync(join(root, 'local.settings.example.json'), 'utf8')) as { Values: Record<string, string> };
  const hostOwn = new Set(['FUNCTIONS_WORKER_RUNTIME', 'AzureWebJobsFeatureFlags']);
  const known = new Set(SETTINGS.map((s) => s.name));
  for (const name of Object.keys(example.Values)) assert.ok(known.has(name) || hostOwn.has(name), `${name} is not declared in lib/config SETTINGS`);
});

test('host.json: Functions v2 schema, extension bundle [4.*, 5.0.0), task hub from a setting', () => {
  const host = JSON.parse(readFileSync(join(root, 'host.json'), 'utf8'));
  assert.equal(host.version, '2.0');
  assert.equal(host.extensionBundle.id, 'Microsoft.Azure.Functions.ExtensionBundle');
  assert.equal(host.extensionBundle.version, '[4.*, 5.0.0)');
  assert.equal(host.extensions.durableTask.hubName, '%TASK_HUB_NAME%');
});

test('README Parquet schema table lists exactly the columns the writer writes, with their types', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const rows = [...readme.matchAll(/^\| `([a-z_]+)` \| (STRING|INT32|DOUBLE) \|/gm)].map((m) => `${m[1]}:${m[2]}`);
  assert.deepEqual(rows, RESULT_COLUMNS.map((c) => `${c.name}:${c.type}`));
});

/** A shell block of the README with the marker above it: how the README test takes it. */
interface ReadmeBlock {
  line: number;
  mode: 'run' | 'background' | 'skip' | 'run-if';
  why: string;
  text: string;
}

export function readmeBlocks(readme: string): ReadmeBlock[] {
  const lines = readme.split('\n');
  const blocks: ReadmeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(sh|bash|shell)\s*$/.test(lines[i]!)) continue;
    const marker = /^<!-- readme-test: (run-if|run|background|skip)\b\s*(.*?)\s*-->$/.exec(lines[i - 1] ?? '');
    const end = lines.indexOf('```', i + 1);
    const text = lines.slice(i + 1, end).join('\n');
    blocks.push({ line: i + 1, mode: (marker?.[1] ?? 'unmarked') as ReadmeBlock['mode'], why: marker?.[2] ?? '', text });
    i = end;
  }
  return blocks;
}

test('every shell block of the README is marked: run, run in the background, run if a tool is there, or skipped with the reason', () => {
  const blocks = readmeBlocks(readFileSync(join(root, 'README.md'), 'utf8'));
  assert.ok(blocks.length >= 5);
  for (const b of blocks) {
    assert.ok(['run', 'background', 'skip', 'run-if'].includes(b.mode), `README line ${b.line}: a shell block without a readme-test marker:\n${b.text}`);
    if (b.mode === 'skip') assert.match(b.why, /^\(.{10,}\)$/, `README line ${b.line}: a skipped block says why`);
  }
});

function hasPython(modules: string[]): boolean {
  try {
    execFileSync('python3', ['-c', modules.map((m) => `import ${m}`).join('; ')], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('the README as written: quick start and the local walkthrough on a fresh copy of the repo', { timeout: 20 * 60_000 }, async (t) => {
  const blocks = readmeBlocks(readFileSync(join(root, 'README.md'), 'utf8'));
  const repo = freshCopy('readme');
  // "Your first job" uploads ./my-images: the user's pictures; here a few pages of rendered text.
  mkdirSync(join(repo, 'my-images', 'trip'), { recursive: true });
  const scenes = demoScenes(4);
  for (let i = 0; i < scenes.length; i++) writeFileSync(join(repo, 'my-images', ...(i % 2 ? ['trip'] : []), `page-${i}.jpg`), await renderTextScene(scenes[i]!, 'jpeg'));
  // "Bring your own model" exports a YOLOv8-seg model with PyTorch (skipped): a model of the same shapes stands in.
  writeFileSync(join(repo, 'yolov8n-seg.onnx'), yolov8SegStandIn());
  const env: NodeJS.ProcessEnv = { ...process.env };
  // A user's shell: none of this machine's lakeinfer settings, nor the CI's CUDA-download switch.
  for (const k of ['DATA_STORAGE', 'LAKEINFER_URL', 'LAKEINFER_KEY', 'LAKEINFER_ACCOUNT_URL', 'ONNXRUNTIME_NODE_INSTALL', 'npm_config_onnxruntime_node_install']) delete env[k];
  for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k];
  const session = join(repo, '.readme-terminal.sh');
  writeFileSync(session, '');
  const ran: string[] = [];
  const skipped: string[] = [];
  let background: ChildProcess | undefined;
  let backgroundOut = '';
  const outputs: string[] = [];
  try {
    for (const b of blocks) {
      const first = b.text.split('\n').find((l) => l.trim() && !l.startsWith('#')) ?? '';
      if (b.mode === 'skip') {
        skipped.push(`line ${b.line} '${first.slice(0, 50)}': ${b.why}`);
        continue;
      }
      if (b.mode === 'run-if') {
        const need = b.why.split(/\s+/).filter(Boolean);
        const modules = need.filter((n) => n !== 'python3');
        if (!hasPython(modules)) {
          const missing = `python3 with ${modules.join(', ')} is not installed`;
          if (process.env['CI'] === 'true') assert.fail(`README line ${b.line}: ${missing} (.ci/run installs it)`);
          t.diagnostic(`skipped README line ${b.line}: ${missing}`);
          skipped.push(`line ${b.line} '${first.slice(0, 50)}': ${missing}`);
          continue;
        }
      }
      if (b.mode === 'background') {
        background = spawn('bash', ['-c', b.text], { cwd: repo, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
        background.stdout!.on('data', (c: Buffer) => (backgroundOut += c.toString()));
        background.stderr!.on('data', (c: Buffer) => (backgroundOut += c.toString()));
        for (let i = 0; i < 1200 && !/Ctrl\+C to stop/.test(backgroundOut); i++) {
          if (background.exitCode !== null) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.match(backgroundOut, /Ctrl\+C to stop/, `README line ${b.line} did not start:\n${backgroundOut}`);
        ran.push(`line ${b.line} (background) '${first}'`);
        continue;
      }
      // One terminal for the whole walkthrough: what a block exports (DATA_STORAGE) holds in the next.
      const r = spawnSync('bash', ['-eo', 'pipefail', '-c', `source '${session}'\n${b.text}\nexport -p > '${session}'`], { cwd: repo, env, encoding: 'utf8', timeout: 10 * 60_000, maxBuffer: 64 * 1024 * 1024 });
      const out = `${r.stdout}\n${r.stderr}`;
      assert.equal(r.status, 0, `README line ${b.line} failed (exit ${r.status}):\n${b.text}\n---\n${out.slice(-6000)}\n--- host:\n${backgroundOut.slice(-3000)}`);
      outputs.push(out);
      ran.push(`line ${b.line} '${first.slice(0, 60)}'`);
    }
  } finally {
    if (background?.pid && background.exitCode === null) {
      process.kill(-background.pid, 'SIGINT');
      await new Promise((r) => background!.once('exit', r));
    }
  }
  const all = outputs.join('\n');
  // Quick start: npm install without warnings about project config or unreviewed install scripts; the demo.
  assert.doesNotMatch(all, /Unknown project config|install-scripts/, 'npm install and npm run print no config or install-script warnings');
  assert.match(all, /job demo-\d+: Completed \(succeeded\)/);
  // The walkthrough.
  assert.match(backgroundOut, /storage: Azurite at http:\/\/127\.0\.0\.1:10000\/devstoreaccount1 \(Azurite's standard ports; data in .*\.lakeinfer\/azurite\)/);
  assert.match(all, /model 'ppocr-v4-det' checked and uploaded to models\/ppocr-v4-det\//);
  assert.match(all, /uploaded 4 files .* to images\/photos\/; 0 unchanged/);
  assert.match(all, /job my-first-job: succeeded \(Completed\)/);
  assert.match(all, /^my-first-job +succeeded .* images 4\/4 done, 0 failed {2}results\/runs\/my-first-job\//m);
  assert.match(all, /manifest: succeeded; images 4: 4 succeeded, 0 failed/);
  assert.ok(existsSync(join(repo, 'out', 'my-first-job', 'report.html')), 'report downloaded to out/<jobId>/');
  if (ran.some((r) => r.includes('python3 -c "import duckdb'))) assert.match(all, /│ ok +│ +\d+ │/, 'DuckDB read the Parquet dataset');
  // Reading the results: each reader that ran read the first job's table.
  if (ran.some((r) => r.includes('import pandas as pd'))) assert.match(all, /ok +(detection|none)/, 'pandas read the dataset');
  if (ran.some((r) => r.includes('import polars as pl'))) assert.match(all, /│ ok +┆ \d+ +│/, 'polars read the dataset');
  if (ran.some((r) => r.includes('from deltalake import DeltaTable'))) assert.match(all, /version 0 \['WRITE'\]/, 'delta-rs read the Delta table');
  if (ran.some((r) => r.includes('read_results.py'))) assert.match(all, /spark versions: 1/, 'Spark read the Delta table');
  // Bring your own model: a YOLOv8-seg model and a classifier, each added, run and reported.
  assert.match(all, /model 'my-yolo' checked and uploaded to models\/my-yolo\//);
  assert.match(all, /job my-yolo-job: succeeded \(Completed\)/);
  assert.match(all, /model 'text-direction' checked and uploaded to models\/text-direction\//);
  assert.match(all, /job my-classify-job: succeeded \(Completed\)/);
  const yoloReport = readFileSync(join(repo, 'out', 'my-yolo-job', 'report.html'), 'utf8');
  assert.match(yoloReport, /Detections by label/);
  assert.ok((yoloReport.match(/<img /g) ?? []).length >= 4, 'every picture shown, with its overlay (overlays "samples" by default)');
  assert.ok(existsSync(join(repo, 'out', 'my-yolo-job', 'overlays', 'photos')), 'the samples\' overlays came with the report');
  const clsReport = readFileSync(join(repo, 'out', 'my-classify-job', 'report.html'), 'utf8');
  assert.match(clsReport, /Top classes \(the top class of each image\)/);
  assert.match(clsReport, /<b>(0|180)<\/b> \d\.\d{3}/);
  console.log(`README commands run:\n  ${ran.join('\n  ')}\nskipped:\n  ${skipped.join('\n  ')}`);
});
