/**
 * Builds the Function App deployment package for Flex Consumption (linux-x64, glibc), whatever the
 * machine it runs on:
 *   .deploy/app/          the staged app: dist/ (without tests, bench, the local host and this
 *                         packager), host.json, a production package.json, and node_modules
 *                         installed by npm for the target (`--os linux --cpu x64 --libc glibc`), so
 *                         sharp's and onnxruntime's linux binaries are there from macOS or Windows
 *                         too; other platforms' binaries, docs, tests and type files pruned.
 *                         azure.yaml deploys this folder (`dist: .deploy/app`, `remoteBuild: false`).
 *   .deploy/lakeinfer.zip the same tree zipped, for `az functionapp deployment source config-zip`.
 * `npm run package`. Needs the npm registry or npm's cache (the versions come from package-lock.json).
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import { ZipWriter } from './zip';
import { filesUnder } from '../util/files';

/** What Flex Consumption runs: npm's platform names. */
export interface Target {
  os: string;
  cpu: string;
  libc: 'glibc' | 'musl';
}

export const TARGET: Target = { os: 'linux', cpu: 'x64', libc: 'glibc' };

/** The Node major Flex Consumption runs the app on (infra/main.bicep `runtime.version`). */
export const FUNCTIONS_NODE_VERSION = '22';

/** sharp's platform package name for a target (`linux-x64`, `linuxmusl-x64`, `darwin-arm64`, ...). */
export function sharpPlatform(t: Target): string {
  return `${t.os}${t.os === 'linux' && t.libc === 'musl' ? 'musl' : ''}-${t.cpu}`;
}

/** Paths (relative to the staged app, '/'-separated) that never ship. */
export function excluded(p: string, target: Target = TARGET): boolean {
  if (/^dist\/(test|bench|scripts)\//.test(p)) return true;
  if (/^dist\/lib\/(local|cli|deploy|operator)\//.test(p)) return true;
  if (/\.(map|ts|md|markdown)$/i.test(p) && !p.endsWith('.d.ts')) return !/^node_modules\/.*\/LICENSE/i.test(p);
  if (/\.d\.ts$/.test(p)) return true;
  if (/^node_modules\/.*\/(test|tests|__tests__|docs?|example|examples|\.github)\//.test(p)) return true;
  // onnxruntime-node ships every platform (~288 MB): keep the target's.
  const ort = /^node_modules\/onnxruntime-node\/bin\/napi-v\d+\/([^/]+)\/([^/]+)\//.exec(p);
  if (ort && (ort[1] !== target.os || ort[2] !== target.cpu)) return true;
  // sharp's prebuilt binaries: the target's packages only (npm installs them by --os/--cpu/--libc).
  const img = /^node_modules\/@img\/sharp-(?:libvips-)?([a-z0-9]+-[a-z0-9]+)\//.exec(p);
  if (img && img[1] !== sharpPlatform(target)) return true;
  return false;
}

/** Removes the directories pruning left empty; true when `dir` itself is now empty. */
async function removeEmptyDirs(dir: string, isRoot = true): Promise<boolean> {
  let empty = true;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory() && (await removeEmptyDirs(join(dir, e.name), false))) continue;
    empty = false;
  }
  if (empty && !isRoot) await rm(dir, { recursive: true });
  return empty;
}

const posix = (p: string): string => p.split(sep).join('/');

/** The npm command that installs the production dependencies for `target` into the staged app. */
export function installArgs(target: Target): string[] {
  return ['install', '--omit=dev', `--os=${target.os}`, `--cpu=${target.cpu}`, `--libc=${target.libc}`, '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'];
}

/** The oldest npm that knows `--libc` (npm 10.3, shipped with Node 20.12): older ones install this machine's binaries. */
export const MIN_NPM = [10, 3, 0] as const;

/** Why this npm cannot stage for another platform, or undefined when it can. */
export function npmVersionProblem(version: string): string | undefined {
  const v = /^(\d+)\.(\d+)\.(\d+)/.exec(version.trim());
  if (!v) return `could not read npm's version from '${version.trim()}'`;
  const got = [Number(v[1]), Number(v[2]), Number(v[3])];
  for (let i = 0; i < 3; i++) {
    if (got[i]! > MIN_NPM[i]!) return undefined;
    if (got[i]! < MIN_NPM[i]!) {
      return `npm ${version.trim()} cannot stage the linux-x64 package: npm ${MIN_NPM.join('.')} or newer is needed (it knows --libc; it comes with Node 20.12+ and Node 22). Update Node.js, or run 'npm install -g npm@10', then run 'npm run package' (or azd) again.`;
    }
  }
  return undefined;
}

/** Native files the target needs, as paths in the staged app; missing ones are an error. */
export async function verifyStaged(appDir: string, target: Target = TARGET): Promise<string[]> {
  const problems: string[] = [];
  const files: string[] = [];
  for await (const f of filesUnder(join(appDir, 'node_modules'))) files.push(posix(relative(appDir, f)));
  const plat = sharpPlatform(target);
  const need: [string, RegExp][] = [
    [`sharp binding for ${plat}`, new RegExp(`^node_modules/@img/sharp-${plat}/lib/sharp-${plat}(-[0-9.]+)?\\.node$`)],
    [`libvips for ${plat}`, new RegExp(`^node_modules/@img/sharp-libvips-${plat}/lib/libvips-cpp[.-]`)],
    [`onnxruntime binding for ${target.os}/${target.cpu}`, new RegExp(`^node_modules/onnxruntime-node/bin/napi-v\\d+/${target.os}/${target.cpu}/onnxruntime_binding\\.node$`)],
  ];
  for (const [what, re] of need) if (!files.some((f) => re.test(f))) problems.push(`missing ${what}`);
  // ffmpeg for videos: the static build inside its registry package, runnable (staging skips the
  // package's chmod script: the bit must come with the tarball).
  if (target.os === 'linux' && target.cpu === 'x64') {
    const ffmpeg = join(appDir, 'node_modules', '@ffmpeg-installer', 'linux-x64', 'ffmpeg');
    const mode = await stat(ffmpeg).then((st) => st.mode, () => undefined);
    if (mode === undefined) problems.push('missing ffmpeg for linux-x64 (@ffmpeg-installer/linux-x64)');
    else if ((mode & 0o111) === 0) problems.push('ffmpeg for linux-x64 is not executable');
  }
  for (const f of files) if (excluded(f, target)) problems.push(`should not ship: ${f}`);
  const otherNative = files.filter((f) => f.endsWith('.node') && !f.includes(`/${plat}/`) && !f.includes(`sharp-${plat}`) && !f.includes(`/${target.os}/${target.cpu}/`));
  for (const f of otherNative) problems.push(`native binary for another platform: ${f}`);
  return problems;
}

export interface StageReport {
  appDir: string;
  files: number;
  bytes: number;
}

/**
 * Stages the app for `target` in `appDir`: compiled code and host.json from `root`, then npm
 * installs the production dependencies for the target (not for this machine), then everything that
 * must not ship is pruned and the native binaries are checked.
 */
export async function stageApp(root: string, appDir: string, target: Target = TARGET): Promise<StageReport> {
  await rm(appDir, { recursive: true, force: true });
  await mkdir(appDir, { recursive: true });
  for await (const f of filesUnder(join(root, 'dist'))) {
    const rel = posix(relative(root, f));
    if (excluded(rel, target)) continue;
    await mkdir(dirname(join(appDir, rel)), { recursive: true });
    await copyFile(f, join(appDir, rel));
  }
  await copyFile(join(root, 'host.json'), join(appDir, 'host.json'));
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as Record<string, unknown>;
  const slim = { name: pkg['name'], version: pkg['version'], private: true, main: pkg['main'], type: pkg['type'], engines: { node: `>=${FUNCTIONS_NODE_VERSION}` }, dependencies: pkg['dependencies'], optionalDependencies: pkg['optionalDependencies'] };
  await writeFile(join(appDir, 'package.json'), `${JSON.stringify(slim, null, 2)}\n`);
  // The lock pins the same versions as development; npm prunes the dev entries.
  await copyFile(join(root, 'package-lock.json'), join(appDir, 'package-lock.json'));
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const npmVersion = (await promisify(execFile)(npm, ['--version'], { shell: process.platform === 'win32' })).stdout;
  const tooOld = npmVersionProblem(npmVersion);
  if (tooOld) throw new Error(tooOld);
  await promisify(execFile)(npm, installArgs(target), {
    cwd: appDir,
    maxBuffer: 64 * 1024 * 1024,
    shell: process.platform === 'win32',
    // onnxruntime-node's install script would fetch CUDA libraries; scripts are skipped anyway.
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_onnxruntime_node_install: 'skip', NODE_ENV: 'production' },
  });
  await rm(join(appDir, 'package-lock.json'), { force: true });
  await rm(join(appDir, 'node_modules', '.package-lock.json'), { force: true });
  await rm(join(appDir, 'node_modules', '.bin'), { recursive: true, force: true }); // CLI links: not used by the app
  let files = 0;
  let bytes = 0;
  for await (const f of filesUnder(appDir)) {
    const rel = posix(relative(appDir, f));
    if (excluded(rel, target)) {
      await rm(f);
      continue;
    }
    files++;
    bytes += (await stat(f)).size;
  }
  await removeEmptyDirs(appDir);
  // azd copies the dist folder honouring its .funcignore; this one keeps node_modules (without an
  // ignore file some azd versions drop node_modules).
  await writeFile(join(appDir, '.funcignore'), '# lakeinfer staged app: ship everything here (node_modules included).\n');
  const problems = await verifyStaged(appDir, target);
  if (problems.length) throw new Error(`staged app for ${target.os}-${target.cpu}-${target.libc} is wrong:\n  ${problems.slice(0, 20).join('\n  ')}`);
  return { appDir, files, bytes };
}

export interface PackageReport {
  zip: string;
  appDir: string;
  bytes: number;
  entries: number;
  unpackedBytes: number;
}

/** Stages the app in `outDir/app` and zips it to `outDir/lakeinfer.zip`. */
export async function buildPackage(root: string, outDir = join(root, '.deploy'), target: Target = TARGET): Promise<PackageReport> {
  const appDir = join(outDir, 'app');
  const staged = await stageApp(root, appDir, target);
  const zipPath = join(outDir, 'lakeinfer.zip');
  const zip = new ZipWriter(zipPath);
  for await (const f of filesUnder(appDir)) {
    const rel = posix(relative(appDir, f));
    if (rel === '.funcignore') continue;
    await zip.addFile(rel, f, (await stat(f)).mode & 0o777);
  }
  const { entries, bytes } = await zip.close();
  return { zip: zipPath, appDir, bytes, entries, unpackedBytes: staged.bytes };
}

if (require.main === module) {
  const root = resolve(__dirname, '..', '..', '..');
  buildPackage(root).then(
    (r) => {
      console.log(`${r.appDir}: staged for ${TARGET.os}-${TARGET.cpu} (${TARGET.libc}); ${r.zip}: ${(r.bytes / 1048576).toFixed(1)} MiB zipped, ${(r.unpackedBytes / 1048576).toFixed(1)} MiB unpacked, ${r.entries} files`);
    },
    (err: unknown) => {
      console.error(`package failed: ${(err as Error).message ?? err}`);
      process.exit(1);
    },
  );
}
