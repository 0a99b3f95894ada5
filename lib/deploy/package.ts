/**
 * Builds the Function App deployment package (.deploy/lakeinfer.zip): dist/ (without tests, bench
 * and the local host), host.json, package.json and the production dependencies, with native
 * binaries for linux-x64 only (onnxruntime-node ships every platform: ~288 MB; linux-x64 ~45 MB).
 * Works offline from the installed node_modules: `npm run package`.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { ZipWriter } from './zip';

export const TARGET = { platform: 'linux', arch: 'x64' };

/** Paths (relative to the package root) that never ship. */
export function excluded(rel: string): boolean {
  const p = rel.split(sep).join('/');
  if (/^dist\/(test|bench|scripts)\//.test(p)) return true;
  if (/^dist\/lib\/local\//.test(p) || /^dist\/lib\/deploy\//.test(p)) return true;
  if (/\.(map|ts|md|markdown)$/i.test(p) && !p.endsWith('.d.ts')) return !/^node_modules\/.*\/LICENSE/i.test(p);
  if (/\.d\.ts$/.test(p)) return true;
  if (/^node_modules\/.*\/(test|tests|__tests__|docs?|example|examples|\.github)\//.test(p)) return true;
  // onnxruntime-node: only the target platform's binaries.
  const ort = /^node_modules\/onnxruntime-node\/bin\/napi-v\d+\/([^/]+)\/([^/]+)\//.exec(p);
  if (ort && (ort[1] !== TARGET.platform || ort[2] !== TARGET.arch)) return true;
  // sharp's prebuilt libvips: only the target platform's packages.
  const img = /^node_modules\/@img\/sharp-(?:libvips-)?([a-z]+)(?:-([a-z0-9]+))?\//.exec(p);
  if (img && !(img[1] === TARGET.platform && img[2] === TARGET.arch)) return true;
  return false;
}

/** Production dependency folders, from the installed tree (no network). */
export function productionModules(root: string): string[] {
  const out = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const dirs = out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && resolve(l) !== resolve(root));
  return [...new Set(dirs)].sort();
}

async function* walk(dir: string): AsyncGenerator<string> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.isFile()) yield p;
  }
}

export interface PackageReport {
  zip: string;
  bytes: number;
  entries: number;
  unpackedBytes: number;
}

export async function buildPackage(root: string, outDir = join(root, '.deploy')): Promise<PackageReport> {
  await mkdir(outDir, { recursive: true });
  const zipPath = join(outDir, 'lakeinfer.zip');
  const zip = new ZipWriter(zipPath);
  let unpacked = 0;
  const add = async (abs: string): Promise<void> => {
    const rel = relative(root, abs);
    if (excluded(rel)) return;
    const st = await stat(abs);
    unpacked += st.size;
    await zip.addFile(rel.split(sep).join('/'), abs, st.mode & 0o777);
  };
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as Record<string, unknown>;
  const slim = { name: pkg['name'], version: pkg['version'], private: true, main: pkg['main'], type: pkg['type'], engines: pkg['engines'], dependencies: pkg['dependencies'] };
  await zip.add('package.json', Buffer.from(`${JSON.stringify(slim, null, 2)}\n`));
  unpacked += JSON.stringify(slim).length;
  await add(join(root, 'host.json'));
  for await (const f of walk(join(root, 'dist'))) await add(f);
  const seen = new Set<string>();
  for (const dir of productionModules(root)) {
    for await (const f of walk(dir)) {
      // Nested node_modules are listed as their own entries by npm ls.
      const rel = relative(dir, f);
      if (rel.split(sep).includes('node_modules')) continue;
      if (seen.has(f)) continue;
      seen.add(f);
      await add(f);
    }
  }
  const { entries, bytes } = await zip.close();
  return { zip: zipPath, bytes, entries, unpackedBytes: unpacked };
}

if (require.main === module) {
  const root = resolve(__dirname, '..', '..', '..');
  buildPackage(root).then(
    (r) => {
      console.log(`${r.zip}: ${(r.bytes / 1048576).toFixed(1)} MiB zipped, ${(r.unpackedBytes / 1048576).toFixed(1)} MiB unpacked, ${r.entries} files`);
    },
    (err: unknown) => {
      console.error(`package failed: ${(err as Error).stack ?? err}`);
      process.exit(1);
    },
  );
}
