/**
 * The CLI's commands (all but `host`, in hostCommand.ts): each with its usage, summary and help,
 * against the job API (--url) and, for the outputs, the data account (--account-url / --storage).
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { BlobServiceClient } from '@azure/storage-blob';
import type { JobView } from '../api/jobs';
import { validateContainerName } from '../util/config';
import type { Manifest } from '../fanin/finalize';
import { addModel } from '../operator/models';
import { OperatorStorageError } from '../operator/storage';
import { progressBar, uploadDirectory } from '../operator/upload';
import { readBlob } from '../storage';
import { apiOf, flag, maskUrl, need, storageOf, UsageError, type Args, type CliDeps } from './args';
import { ApiError, cancel, list, progressLine, POLL_MS, purge, retry, status, submit, watch, type ApiOptions } from './client';
import { downloadOutputs } from './outputs';

export interface Command {
  usage: string;
  summary: string;
  details?: string;
  run: (a: Args, env: NodeJS.ProcessEnv, out: (s: string) => void, deps: CliDeps) => Promise<number>;
}

const API_HELP = '--url URL (LAKEINFER_URL, default http://127.0.0.1:7071), --key KEY (LAKEINFER_KEY: a deployed app\'s function key)';
const DATA_HELP = '--storage CONNECTION_STRING (DATA_STORAGE: what `lakeinfer host` prints) or --account-url https://<account>.blob.core.windows.net (LAKEINFER_ACCOUNT_URL, Entra ID)';

export function summary(v: JobView): string {
  const lines = [`job ${v.jobId}: ${v.status}${v.status === 'running' || v.status === 'cancelling' ? '' : ` (${v.runtimeStatus})`}`];
  if (v.progress) lines.push(`  ${progressLine(v)}`);
  if (v.outputs) lines.push(`  outputs: container '${v.outputs.container}', prefix '${v.outputs.prefix}' (manifest ${v.outputs.manifest})`);
  if (v.runtimeStatus === 'Failed' || v.runtimeStatus === 'Terminated' || v.status === 'failed') {
    const reason = typeof v.output === 'string' ? v.output : (v.output as { reason?: string } | undefined)?.reason;
    if (reason) lines.push(`  reason: ${reason}`);
  }
  return lines.join('\n');
}

async function follow(api: ApiOptions, jobId: string, out: (s: string) => void): Promise<JobView> {
  const tty = process.stdout.isTTY;
  let last = '';
  const v = await watch(api, jobId, (s) => {
    const line = `${s.status === 'cancelling' ? 'cancelling ' : ''}${progressLine(s)}`;
    if (line === last) return;
    last = line;
    if (tty) process.stdout.write(`\r${line}`);
    else out(line);
  });
  if (tty) process.stdout.write('\n');
  return v;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** What a storage failure means to the person at the terminal. */
function storageProblem(err: unknown, svc: BlobServiceClient, what: string): Error {
  const e = err as { code?: string; statusCode?: number; details?: { errorCode?: string }; message?: string };
  const url = maskUrl(svc.url);
  if (e.code === 'ECONNREFUSED' || /ECONNREFUSED/.test(e.message ?? '')) {
    return new Error(`${what}: the storage at ${url} refused the connection: is \`lakeinfer host\` running? Its connection string (with the port it listens on) is printed when it starts; with --data DIR the ports stay the same across restarts`);
  }
  const code = e.details?.errorCode ?? e.code;
  if (code === 'ContainerNotFound') return new Error(`${what}: container not found at ${url}`);
  if (code === 'AuthorizationPermissionMismatch' || code === 'AuthorizationFailure') return new Error(`${what}: ${url} answered ${code}: your identity needs Storage Blob Data Contributor on the account (azd grants it to the user who deployed; role assignments take up to 10 minutes)`);
  return new Error(`${what}: ${(e.message ?? String(err)).split('\n')[0]}`);
}

function containerArg(a: Args, name: string, fallback?: string): string {
  const v = flag(a, name) ?? fallback;
  if (!v) throw new UsageError(`missing --${name} (e.g. --${name} images)`);
  try {
    return validateContainerName(v, `--${name}`);
  } catch (err) {
    throw new UsageError(`${(err as Error).message}: container names are lower case (e.g. '${v.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/-+/g, '-').replace(/^-|-$/g, '') || 'images'}')`);
  }
}

/** A blob prefix typed at the terminal: no control or non-characters, no '.' or '..' segments, no backslashes. */
export function checkPrefix(prefix: string, what = '--prefix'): string {
  if (/[\u0000-\u001f\u007f-\u009f\ufffe\uffff\\]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(prefix)) throw new UsageError(`${what} '${JSON.stringify(prefix).slice(1, -1)}' holds a control character, a backslash or a non-character: blob names cannot carry them`);
  if (prefix.split('/').some((s) => s === '.' || s === '..')) throw new UsageError(`${what} '${prefix}' has a '.' or '..' segment: blob names are not paths to walk`);
  return prefix;
}

async function jobOutputsClient(a: Args, env: NodeJS.ProcessEnv, deps: CliDeps, v: JobView): Promise<BlobServiceClient | undefined> {
  if (!v.outputs) return undefined;
  return storageOf(a, env, deps.credential);
}

export const COMMANDS: Record<string, Command> = {
  submit: {
    usage: 'lakeinfer submit FILE|- [--wait]',
    summary: 'POST a job request (a JSON file, or - for standard input); --wait follows it to the end',
    details: `The request is the README's "The job request". A jobId that exists resumes a failed or cancelled job (its done partitions kept).\n${API_HELP}`,
    run: async (a, env, out) => {
      const api = apiOf(a, env);
      const file = need(a, 0, 'the job request file (or - for stdin)');
      if (file !== '-' && !existsSync(file)) throw new UsageError(`no such file: ${resolve(file)}`);
      const text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
      let request: unknown;
      try {
        request = JSON.parse(text) as unknown;
      } catch (err) {
        throw new UsageError(`${file === '-' ? 'standard input' : file} is not valid JSON: ${(err as Error).message}`);
      }
      const id = (request as { jobId?: unknown }).jobId;
      const before = typeof id === 'string' ? await status(api, id).catch(() => undefined) : undefined;
      const v = (await submit(api, request)) as JobView & { resumed?: boolean; duplicate?: boolean; restarted?: boolean };
      out(summary(v));
      if (v.resumed && before?.progress) {
        const p = before.progress.images;
        out(`  resumed: ${p.succeeded + p.skipped} images done in earlier runs are kept; the failed and unfinished partitions run again (${p.failed} images failed last time)`);
      } else if (v.duplicate) out(`  (this jobId was ${v.status} already: nothing new was started)`);
      if (a.flags['wait']) {
        const end = await follow(api, v.jobId, out);
        out(summary(end));
        return end.status === 'succeeded' ? 0 : 1;
      }
      return 0;
    },
  },
  status: {
    usage: 'lakeinfer status JOB_ID [--watch]',
    summary: "show a job's status and progress; --watch follows it to the end",
    details: API_HELP,
    run: async (a, env, out) => {
      const api = apiOf(a, env);
      const id = need(a, 0, 'JOB_ID');
      let v: JobView;
      try {
        v = a.flags['watch'] ? await follow(api, id, out) : await status(api, id);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) throw new UsageError(`no job '${id}' at ${api.url} (a job whose history was purged keeps its outputs; 'lakeinfer list' shows the jobs there are)`);
        throw err;
      }
      out(summary(v));
      return 0;
    },
  },
  list: {
    usage: 'lakeinfer list [--status running|cancelling|succeeded|failed|cancelled] [--since ISO_DATE] [--top 20] [--all]',
    summary: 'list jobs, newest first, with their status, counts and output folder',
    details: `--all follows every page. ${API_HELP}`,
    run: async (a, env, out) => {
      const api = apiOf(a, env);
      const top = Number(flag(a, 'top') ?? 20);
      let token: string | undefined;
      let n = 0;
      do {
        const page = await list(api, { ...(flag(a, 'status') ? { status: flag(a, 'status')! } : {}), ...(flag(a, 'since') ? { createdFrom: flag(a, 'since')! } : {}), top, ...(token ? { continuationToken: token } : {}) });
        for (const j of page.jobs) {
          n++;
          const img = j.images ? `images ${j.images.succeeded + j.images.skipped}/${j.images.total} done, ${j.images.failed} failed` : '';
          out(`${j.jobId.padEnd(28)} ${j.status.padEnd(10)} ${(j.createdTime ?? '').slice(0, 19).replace('T', ' ')}  ${img}${j.outputs ? `  ${j.outputs.container}/${j.outputs.prefix}` : ''}`);
        }
        token = page.continuationToken;
        if (token && !a.flags['all']) out(`(more: lakeinfer list --all, or --top ${top * 2})`);
      } while (token && a.flags['all']);
      if (n === 0) out(`no jobs${flag(a, 'status') ? ` with status ${flag(a, 'status')}` : ''} at ${api.url}`);
      return 0;
    },
  },
  results: {
    usage: 'lakeinfer results JOB_ID [--out DIR]',
    summary: "print a job's summary from its manifest; --out DIR downloads its outputs",
    details: `${API_HELP}\n${DATA_HELP}`,
    run: async (a, env, out, deps) => {
      const v = await status(apiOf(a, env), need(a, 0, 'JOB_ID'));
      out(summary(v));
      let svc: BlobServiceClient | undefined;
      try {
        svc = await jobOutputsClient(a, env, deps, v);
      } catch (err) {
        if (!(err instanceof OperatorStorageError)) throw err;
        out(`  (to read the outputs: ${err.message})`);
        return 0;
      }
      if (!svc || !v.outputs) return 0;
      const c = svc.getContainerClient(v.outputs.container);
      const m = await readBlob(c, v.outputs.manifest).catch((err: unknown) => {
        throw storageProblem(err, svc, 'reading the manifest');
      });
      if (m) {
        const man = JSON.parse(m.data.toString()) as Manifest;
        out(`  manifest: ${man.status}; images ${man.counts.images}: ${man.counts.succeeded} succeeded, ${man.counts.failed} failed, ${man.counts.skipped} skipped; ${man.counts.detections} detections; ${man.instanceSeconds} instance-seconds`);
      }
      const outFlag = flag(a, 'out');
      if (outFlag !== undefined) {
        const dir = resolve(outFlag);
        const got = await downloadOutputs(c, v.outputs.prefix, dir);
        out(`  downloaded ${got.files} files to ${dir}`);
        for (const [blob, file] of got.renamed) out(`  renamed (too long for the local file system): ${blob} -> ${file}`);
        for (const f of got.failed) out(`  not written: ${f.blob}: ${f.reason}`);
        if (got.failed.length > 0) {
          out(`  ${got.failed.length} file(s) could not be written (listed above); the others are in ${dir}`);
          return 1;
        }
      }
      return 0;
    },
  },
  retry: {
    usage: 'lakeinfer retry JOB_ID [--wait]',
    summary: 'redrive a failed or cancelled job: its done partitions are kept, the failed and unfinished ones run again',
    details: API_HELP,
    run: async (a, env, out) => {
      const api = apiOf(a, env);
      const id = need(a, 0, 'JOB_ID');
      const v = await retry(api, id);
      out(summary(v));
      if (v.retried) out(`  retried (was ${v.retried.previousStatus}): ${v.retried.imagesDone} images done are kept; the failed and unfinished partitions run again (${v.retried.imagesFailed} images failed last time)`);
      if (a.flags['wait']) {
        const end = await follow(api, id, out);
        out(summary(end));
        return end.status === 'succeeded' ? 0 : 1;
      }
      return 0;
    },
  },
  cancel: {
    usage: 'lakeinfer cancel JOB_ID [--no-wait]',
    summary: 'cancel a running job (its partitions stop at their next image) and wait until it has stopped',
    details: `Prints 'cancelling' when the cancel is accepted and 'cancelled' when the job has ended (its manifest and report say cancelled). ${API_HELP}`,
    run: async (a, env, out) => {
      const api = apiOf(a, env);
      const id = need(a, 0, 'JOB_ID');
      const v = await cancel(api, id);
      out(summary(v));
      if (a.flags['no-wait'] || v.status !== 'cancelling') return 0;
      const end = await watch(api, id, () => undefined, POLL_MS, 10 * 60_000);
      out(summary(end));
      return 0;
    },
  },
  purge: {
    usage: 'lakeinfer purge JOB_ID',
    summary: "delete a finished job's orchestration history (its outputs stay)",
    details: API_HELP,
    run: async (a, env, out) => {
      const r = await purge(apiOf(a, env), need(a, 0, 'JOB_ID'));
      out(`${r.jobId}: ${r.purged ? 'history purged' : 'no history to purge'}; ${r.note}`);
      return 0;
    },
  },
  report: {
    usage: 'lakeinfer report JOB_ID [--out DIR] [--open]',
    summary: "download a job's report.html with its overlays (to out/JOB_ID by default); --open opens it",
    details: `${API_HELP}\n${DATA_HELP}`,
    run: async (a, env, out, deps) => {
      const id = need(a, 0, 'JOB_ID');
      const v = await status(apiOf(a, env), id);
      if (!v.outputs) throw new UsageError(`job ${id} has no outputs yet (${v.status})`);
      const svc = storageOf(a, env, deps.credential);
      const c = svc.getContainerClient(v.outputs.container);
      const dir = resolve(flag(a, 'out') ?? join('out', id));
      const got = await downloadOutputs(c, v.outputs.prefix, dir).catch((err: unknown) => {
        throw storageProblem(err, svc, 'downloading the report');
      });
      const file = join(dir, 'report.html');
      out(`downloaded ${got.files} files; report: ${file}`);
      for (const f of got.failed) out(`  not written: ${f.blob}: ${f.reason}`);
      if (a.flags['open']) {
        const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
        spawn(opener, [file], { detached: true, stdio: 'ignore' }).on('error', () => out(`(could not run ${opener}; open ${file} yourself)`)).unref();
      }
      return 0;
    },
  },
  upload: {
    usage: 'lakeinfer upload DIR --container C [--prefix P] [--extensions .jpg,.png] [--concurrency 16]',
    summary: "upload a folder's files (their paths under DIR become blob names after P); unchanged files are skipped by MD5",
    details: DATA_HELP,
    run: async (a, env, out, deps) => {
      const dir = resolve(need(a, 0, 'DIR'));
      if (!existsSync(dir)) throw new UsageError(`no such folder: ${dir}`);
      if (!statSync(dir).isDirectory()) throw new UsageError(`${dir} is a file; upload takes a folder (put the file in one)`);
      const svc = storageOf(a, env, deps.credential);
      const container = containerArg(a, 'container');
      const prefix = checkPrefix(flag(a, 'prefix') ?? '');
      if (prefix && !prefix.endsWith('/')) out(`note: prefix '${prefix}' does not end with '/': blob names start with it as is`);
      const tty = process.stdout.isTTY;
      let lastTenth = -1;
      const c = svc.getContainerClient(container);
      const done = await uploadDirectory(c, dir, {
        prefix,
        ...(flag(a, 'concurrency') ? { concurrency: Math.max(1, Number(flag(a, 'concurrency')) || 16) } : {}),
        ...(flag(a, 'extensions') ? { extensions: flag(a, 'extensions')!.split(',').map((e) => e.trim()).filter(Boolean) } : {}),
        onProgress: (p) => {
          if (tty) process.stdout.write(`\r${progressBar(p)}`);
          else {
            const tenth = p.files ? Math.floor((10 * p.done) / p.files) : 10;
            if (tenth !== lastTenth) out(progressBar(p));
            lastTenth = tenth;
          }
        },
      }).catch((err: unknown) => {
        if (err instanceof UsageError) throw err;
        throw storageProblem(err, svc, `uploading to container '${container}'`);
      });
      if (tty) process.stdout.write('\n');
      out(`uploaded ${done.uploaded} files (${(done.bytes / 1e6).toFixed(1)} MB) to ${container}/${prefix}; ${done.skipped} unchanged`);
      return 0;
    },
  },
  models: {
    usage: 'lakeinfer models add NAME MODEL.onnx (--from-catalog ID | --json FILE) [--container models] [--skip-check]',
    summary: 'check a model on this machine (shapes, labels, one probe inference) and upload it with its model.json',
    details: `Catalog ids: see the README's "Models". ${DATA_HELP}`,
    run: async (a, env, out, deps) => {
      if (a.pos[0] !== 'add') throw new UsageError(`unknown models subcommand '${a.pos[0] ?? ''}': lakeinfer models add NAME MODEL.onnx --from-catalog ID | --json FILE`);
      const name = need(a, 1, 'NAME');
      const onnx = resolve(need(a, 2, 'MODEL.onnx'));
      if (!existsSync(onnx)) throw new UsageError(`no such file: ${onnx}`);
      const container = containerArg(a, 'container', env['MODELS_CONTAINER'] ?? 'models');
      const fromCatalog = flag(a, 'from-catalog');
      const jsonPath = flag(a, 'json');
      const svc = storageOf(a, env, deps.credential);
      const added = await addModel(svc.getContainerClient(container), name, onnx, {
        ...(fromCatalog ? { fromCatalog } : {}),
        ...(jsonPath ? { jsonPath: resolve(jsonPath) } : {}),
        ...(a.flags['skip-check'] ? { skipCheck: true } : {}),
      }).catch((err: unknown) => {
        const m = (err as Error).message ?? '';
        if (/ECONNREFUSED|AuthorizationPermissionMismatch|AuthorizationFailure/.test(m) || (err as { code?: string }).code === 'ECONNREFUSED') throw storageProblem(err, svc, `uploading model '${name}'`);
        throw err;
      });
      out(`model '${added.name}' checked and uploaded to ${container}/${added.name}/ (model.onnx ${(added.bytes / 1e6).toFixed(1)} MB, ETag ${added.etag}; model.json ETag ${added.jsonEtag})`);
      return 0;
    },
  },
};
