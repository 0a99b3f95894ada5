import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SETTINGS } from '../lib/config';
import { RESULT_COLUMNS } from '../lib/parquet';

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
