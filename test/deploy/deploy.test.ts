/**
 * The deployment: the package layout and size, and one source of truth for settings between
 * lib/util/config.ts and infra/main.bicep.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SETTINGS } from '../../lib/util/config';
import { buildPackage, excluded, npmVersionProblem, FUNCTIONS_NODE_VERSION, installArgs, sharpPlatform, stageApp, TARGET, verifyStaged, type PackageReport } from '../../lib/deploy/package';
import { extractZip, listZip, type ZipEntryInfo } from '../../lib/deploy/zip';
import { execFileSync } from 'node:child_process';

const root = join(__dirname, '..', '..', '..');
let report: PackageReport;
let entries: ZipEntryInfo[];

before(async () => {
  report = await buildPackage(root, mkdtempSync(join(tmpdir(), 'lakeinfer-pkg-')));
  entries = await listZip(report.zip);
});

test('package: host.json, package.json whose main glob finds every function file', async () => {
  const names = new Set(entries.map((e) => e.name));
  assert.ok(names.has('host.json'));
  const pkg = JSON.parse((await readFile(join(root, 'package.json'), 'utf8'))) as { main: string; dependencies: Record<string, string> };
  assert.equal(pkg.main, 'dist/functions/*.js');
  const functionsInZip = entries.map((e) => e.name).filter((n) => /^dist\/functions\/[^/]+\.js$/.test(n)).sort();
  assert.deepEqual(functionsInZip, ['dist/functions/blobArrivals.js', 'dist/functions/health.js', 'dist/functions/inferenceJob.js', 'dist/functions/jobs.js']);
  const host = JSON.parse(await readFile(join(root, 'host.json'), 'utf8')) as { version: string };
  assert.equal(host.version, '2.0');
  // Every module the function files need is in the package.
  for (const dep of Object.keys(pkg.dependencies)) assert.ok([...names].some((n) => n.startsWith(`node_modules/${dep}/`)), `${dep} is packaged`);
  for (const lib of ['dist/lib/orchestration/activities.js', 'dist/lib/model/worker.js', 'dist/lib/orchestration/orchestrator.js']) assert.ok(names.has(lib), lib);
});

test('package: the staged app (what azd deploys) has the linux-x64 glibc binaries and nothing else', async () => {
  assert.deepEqual(TARGET, { os: 'linux', cpu: 'x64', libc: 'glibc' });
  assert.deepEqual(await verifyStaged(report.appDir), []);
  // npm chooses the binaries by the target, never by this machine.
  assert.deepEqual(installArgs(TARGET).filter((a) => /^--(os|cpu|libc)=/.test(a)), ['--os=linux', '--cpu=x64', '--libc=glibc']);
  assert.ok(installArgs(TARGET).includes('--omit=dev') && installArgs(TARGET).includes('--ignore-scripts'));
  assert.equal(sharpPlatform(TARGET), 'linux-x64');
  assert.equal(sharpPlatform({ os: 'linux', cpu: 'arm64', libc: 'musl' }), 'linuxmusl-arm64');
  assert.ok(excluded('node_modules/@img/sharp-darwin-arm64/lib/sharp-darwin-arm64.node'));
  assert.ok(excluded('node_modules/onnxruntime-node/bin/napi-v6/win32/x64/onnxruntime_binding.node'));
  assert.ok(!excluded('node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node'));
  // The staged folder and the zip hold the same files (the zip leaves out azd's .funcignore).
  const staged: string[] = [];
  const walk = async (d: string, rel = ''): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name), `${rel}${e.name}/`);
      else staged.push(`${rel}${e.name}`);
    }
  };
  await walk(report.appDir);
  assert.deepEqual(staged.filter((f) => f !== '.funcignore').sort(), entries.map((e) => e.name).sort());
  // azd copies the dist folder honouring its .funcignore: ours ignores nothing.
  const ignore = (await readFile(join(report.appDir, '.funcignore'), 'utf8')).split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  assert.deepEqual(ignore, []);
});

test('package: staged for another platform from this one, npm installs that platform\'s binaries', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'lakeinfer-pkg-mac-')), 'app');
  const mac = { os: 'darwin', cpu: 'arm64', libc: 'glibc' } as const;
  await stageApp(root, dir, mac);
  assert.deepEqual(await verifyStaged(dir, mac), []);
  const img = await readdir(join(dir, 'node_modules', '@img'));
  assert.ok(img.includes('sharp-darwin-arm64'), img.join(', '));
  assert.ok(!img.some((n) => n.includes('linux')), `no linux binaries when staged for macOS: ${img.join(', ')}`);
  const ort = await readdir(join(dir, 'node_modules', 'onnxruntime-node', 'bin', (await readdir(join(dir, 'node_modules', 'onnxruntime-node', 'bin')))[0]!));
  assert.deepEqual(ort, ['darwin']);
  // And the linux staging done from here carries no darwin or win32 binaries (checked by verifyStaged above).
  assert.ok((await verifyStaged(dir, TARGET)).some((p) => /missing sharp binding for linux-x64/.test(p)));
});

test('azure.yaml deploys the staged app without a remote build', async () => {
  const yaml = await readFile(join(root, 'azure.yaml'), 'utf8');
  const api = /\n  api:\n((?: {4}.*\n)+)/.exec(yaml)?.[1] ?? '';
  assert.match(api, /^ {4}host: function$/m);
  assert.match(api, /^ {4}language: js$/m);
  assert.match(api, /^ {4}dist: \.deploy\/app$/m);
  assert.match(api, /^ {4}remoteBuild: false$/m);
  // azd runs `npm run build`, never `package` (framework_service_node.go): the service's prepackage
  // hook stages .deploy/app on every azd package/deploy/up, in both shells. test/azd.test.ts proves it with azd.
  assert.match(api, /^ {4}hooks:\n {6}prepackage:\n {8}posix:\n {10}shell: sh\n {10}run: npm run package\n {8}windows:\n {10}shell: pwsh\n {10}run: npm run package$/m);
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  assert.match(pkg.scripts['package']!, /dist\/lib\/deploy\/package\.js/);
  // The project's .funcignore must not drop node_modules (azd refuses remoteBuild: false then).
  const funcignore = await readFile(join(root, '.funcignore'), 'utf8');
  assert.doesNotMatch(funcignore, /^node_modules/m);
});

test('package: npm older than 10.3 (no --libc) is refused with what to do', () => {
  assert.equal(npmVersionProblem('10.3.0'), undefined);
  assert.equal(npmVersionProblem('11.19.1\n'), undefined);
  assert.match(npmVersionProblem('10.2.4') ?? '', /npm 10\.2\.4 cannot stage the linux-x64 package: npm 10\.3\.0 or newer is needed .*Node 20\.12/);
  assert.match(npmVersionProblem('9.8.1') ?? '', /or newer is needed/);
  assert.match(npmVersionProblem('garbage') ?? '', /could not read npm's version/);
});

test('package: no dev files, no dev dependencies, linux-x64 native binaries only, size bounded', () => {
  const names = entries.map((e) => e.name);
  for (const bad of [/^dist\/test\//, /^dist\/bench\//, /^dist\/lib\/local\//, /\.ts$/, /\.map$/, /^local\.settings/, /^node_modules\/(azurite|typescript|eslint|onnx-proto|@gutenye|typescript-eslint)\//, /^test\//, /^infra\//]) {
    const hit = names.find((n) => bad.test(n));
    assert.equal(hit, undefined, `${hit} should not ship`);
  }
  const ort = names.filter((n) => n.startsWith('node_modules/onnxruntime-node/bin/'));
  assert.ok(ort.length > 0);
  assert.ok(ort.every((n) => n.includes('/linux/x64/')), `onnxruntime binaries: ${ort.join(', ')}`);
  const so = entries.find((e) => e.name.endsWith('linux/x64/onnxruntime_binding.node'));
  assert.ok(so && (so.mode & 0o444) !== 0);
  const sharpPkgs = new Set(names.filter((n) => n.startsWith('node_modules/@img/sharp-')).map((n) => n.split('/')[2]));
  assert.ok(sharpPkgs.size > 0);
  assert.ok([...sharpPkgs].every((p) => /linux-x64$/.test(p!)), [...sharpPkgs].join(', '));
  // ffmpeg for videos ships as the static linux-x64 build, runnable (exec bit kept in the zip).
  const ffmpeg = entries.find((e) => e.name === 'node_modules/@ffmpeg-installer/linux-x64/ffmpeg');
  assert.ok(ffmpeg && (ffmpeg.mode & 0o111) !== 0, 'ffmpeg in the zip with its exec bit');
  // onnxruntime-node alone ships ~288 MB for all platforms; the linux-x64 package stays far below
  // (the bound grew by ffmpeg's static build: 65 MiB unpacked, ~25 MiB zipped).
  assert.ok(report.unpackedBytes < 220 * 1024 * 1024, `unpacked ${(report.unpackedBytes / 1048576).toFixed(1)} MiB`);
  assert.ok(report.bytes < 90 * 1024 * 1024, `zip ${(report.bytes / 1048576).toFixed(1)} MiB`);
  console.log(`deployment package: ${(report.bytes / 1048576).toFixed(1)} MiB zipped, ${(report.unpackedBytes / 1048576).toFixed(1)} MiB unpacked, ${report.entries} files`);
});

test('infra provisions every setting the code reads, and names no setting the code does not declare', async () => {
  const bicep = await readFile(join(root, 'infra', 'main.bicep'), 'utf8');
  const provisioned = new Set([...bicep.matchAll(/\{ name: '([A-Za-z0-9_]+)', value:/g)].map((m) => m[1]!));
  const declared = new Set(SETTINGS.map((s) => s.name));
  for (const name of provisioned) {
    const base = name.split('__')[0]!;
    assert.ok(declared.has(name) || declared.has(base), `infra sets ${name}, which lib/util/config.ts does not declare`);
  }
  // Local-only: a connection string for the data account (Azure uses the identity or Key Vault forms).
  const localOnly = new Set(['DATA_STORAGE']);
  for (const s of SETTINGS) {
    if (localOnly.has(s.name)) continue;
    const isProvisioned = provisioned.has(s.name) || [...provisioned].some((p) => p.startsWith(`${s.name}__`));
    assert.ok(isProvisioned, `infra does not provision ${s.name}`);
  }
  // Both data connection forms are provisioned: the external account's secret, or the provisioned account by identity.
  assert.match(bicep, /useExternalData\s*\n?\s*\? \[\s*\n\s*\{ name: 'DATA_STORAGE_SECRET_URI'/);
  assert.match(bicep, /var useExternalData = !empty\(externalDataConnectionString\)/);
  // Shared keys are off on every account the template creates, whatever the parameters.
  assert.equal([...bicep.matchAll(/allowSharedKeyAccess: (\S+)/g)].map((m) => m[1]).join(), 'false,false');
  assert.doesNotMatch(bicep, /listKeys\(/);
  assert.match(bicep, /name: 'FC1', tier: 'FlexConsumption'/);
  assert.match(bicep, new RegExp(`runtime: \\{ name: 'node', version: '${FUNCTIONS_NODE_VERSION}' \\}`));
  assert.match(bicep, /ftpsState: 'Disabled'/);
  assert.match(bicep, /httpsOnly: true/);
  assert.match(bicep, /isHnsEnabled: true/);
  // Flex Consumption limits and the Durable-on-Flex recommendations.
  assert.match(bicep, /@minValue\(40\)\n@maxValue\(1000\)\nparam maximumInstanceCount int = \d+/);
  assert.match(bicep, /@allowed\(\[2048, 4096\]\)\nparam instanceMemoryMB int = 4096/);
  assert.match(bicep, /alwaysReady: \[\{ name: 'durable', instanceCount: 1 \}\]/);
  const regions = /@allowed\(\[\n((?:\s+'[a-z0-9]+'\n)+)\]\)\n@metadata\(\{ azd: \{ type: 'location' \} \}\)\nparam location string/.exec(bicep);
  assert.ok(regions, 'location is limited to Flex Consumption regions and azd asks for it');
  assert.ok(regions[1]!.includes("'eastus'") && regions[1]!.includes("'westeurope'"));
  // Hardening: no basic-auth publishing, the app's Key Vault role on the secret only.
  for (const kind of ['ftp', 'scm']) assert.match(bicep, new RegExp(`basicPublishingCredentialsPolicies@[0-9-]+' = \\{\\n  parent: app\\n  name: '${kind}'\\n  properties: \\{ allow: false \\}`));
  // The vault exists only for an external data account, and without purge protection: after
  // `azd down --purge` the same environment's `azd up` can create it again at once.
  assert.match(bicep, /resource vault 'Microsoft\.KeyVault\/vaults@[0-9-]+' = if \(useExternalData\) \{/);
  assert.doesNotMatch(bicep, /enablePurgeProtection/);
  assert.match(bicep, /output KEY_VAULT_NAME string = useExternalData \? vault!\.name : ''/);
  for (const m of bicep.matchAll(/\bvault\.(properties|name|id)\b/g)) assert.fail(`unguarded use of the conditional vault: ${m[0]}`);
  assert.match(bicep, /resource secretsUser '[^']+' = if \(useExternalData\) \{\n  scope: dataSecret\n/);
  // Role assignments are named guid(scope, principal, role).
  const assignments = [...bicep.matchAll(/name: guid\(([a-zA-Z]+)\.id, identity\.id, roles\.([a-zA-Z]+)\)/g)].map((m) => `${m[1]}:${m[2]}`);
  assert.deepEqual(assignments.sort(), [
    'dataSecret:keyVaultSecretsUser',
    'hostStorage:storageBlobDataOwner',
    'hostStorage:storageQueueDataContributor',
    'hostStorage:storageTableDataContributor',
    'input:storageBlobDataReader',
    'insights:monitoringMetricsPublisher',
    'models:storageBlobDataReader',
    'output:storageBlobDataContributor',
  ]);
  // The operator (azd: the signed-in user) reaches the data with Entra ID.
  assert.match(bicep, /resource operatorData '[^']+' = if \(!empty\(principalId\)\) \{\n  scope: dataStorage\n  name: guid\(dataStorage\.id, principalId, roles\.storageBlobDataContributor\)/);
  const params = JSON.parse(await readFile(join(root, 'infra', 'main.parameters.json'), 'utf8')) as { parameters: Record<string, { value: string }> };
  assert.equal(params.parameters['principalId']?.value, '${AZURE_PRINCIPAL_ID}');
  assert.match(bicep, /output LAKEINFER_ACCOUNT_URL string = dataStorage\.properties\.primaryEndpoints\.blob/);
  // Continuous jobs: BlobCreated of the input container to the blobArrivals function (Event Grid system topic).
  assert.match(bicep, /topicType: 'Microsoft\.Storage\.StorageAccounts'/);
  assert.match(bicep, /resourceId: '\$\{app\.id\}\/functions\/blobArrivals'/);
  assert.match(bicep, /includedEventTypes: \['Microsoft\.Storage\.BlobCreated'\]\n\s+subjectBeginsWith: '\/blobServices\/default\/containers\/\$\{inputContainer\}\/blobs\/'/);
  // The job API refuses containers the identity cannot reach.
  assert.match(bicep, /\{ name: 'INPUT_CONTAINERS', value: useExternalData \? '' : inputContainer \}/);
  assert.match(bicep, /\{ name: 'OUTPUT_CONTAINERS', value: useExternalData \? '' : outputContainer \}/);
});

test('host.json: Durable polls its queues at most every 10 s (Flex recommendation)', async () => {
  const host = JSON.parse(await readFile(join(root, 'host.json'), 'utf8')) as { extensions: { durableTask: { storageProvider?: { maxQueuePollingInterval?: string } } } };
  const v = host.extensions.durableTask.storageProvider?.maxQueuePollingInterval ?? '';
  const m = /^(\d\d):(\d\d):(\d\d)$/.exec(v);
  assert.ok(m, `maxQueuePollingInterval '${v}'`);
  const seconds = Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
  assert.ok(seconds > 0 && seconds <= 10, `${seconds} s`);
});

test('the unpacked package loads: every function registers from its own node_modules', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lakeinfer-unpacked-'));
  assert.equal(await extractZip(report.zip, dir), report.entries);
  const script = `
    const h = require(${JSON.stringify(join(root, 'dist', 'lib', 'local', 'functions', 'functionsHost.js'))});
    const fs = require('fs'); const path = require('path');
    const d = path.join(${JSON.stringify(dir)}, 'dist', 'functions');
    const reg = h.loadFunctions(fs.readdirSync(d).filter((f) => f.endsWith('.js')).map((f) => path.join(d, f)));
    const ort = require(require.resolve('onnxruntime-node', { paths: [${JSON.stringify(dir)}] }));
    const sharp = require(require.resolve('sharp', { paths: [${JSON.stringify(dir)}] }));
    console.log(JSON.stringify({ functions: [...reg.keys()].sort(), ort: typeof ort.InferenceSession.create, sharp: typeof sharp.versions.vips }));`;
  const out = execFileSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8', env: { ...process.env, DATA_STORAGE: 'UseDevelopmentStorage=true' } });
  const got = JSON.parse(out.trim().split('\n').pop()!) as { functions: string[]; ort: string; sharp: string };
  assert.deepEqual(got.functions, ['blobArrivals', 'cancelJob', 'collectArrivals', 'finalizeJob', 'health', 'healthDetails', 'inferPartition', 'inferenceJob', 'jobStatus', 'listJobs', 'planJob', 'planMore', 'purgeJob', 'retryJob', 'submitJob']);
  assert.equal(got.ort, 'function');
  assert.equal(got.sharp, 'string');
});
