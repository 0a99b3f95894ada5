#!/usr/bin/env node
/**
 * lakeinfer CLI: works against the local host and against a deployed Function App alike.
 *   lakeinfer host    [--port 7071] [--data DIR] [--processes 2]   run the local host until Ctrl+C
 *   lakeinfer submit  FILE|- [--wait]                              POST a job request (JSON)
 *   lakeinfer status  JOB_ID [--watch]                             show (or follow) a job's progress
 *   lakeinfer results JOB_ID [--out DIR]                           print the summary; download the outputs
 *   lakeinfer cancel  JOB_ID                                       cancel a running job (it stops at its partitions' next image)
 *   lakeinfer purge   JOB_ID                                       delete a finished job's orchestration history (outputs stay)
 *   lakeinfer report  JOB_ID [--out DIR] [--open]                  download report.html (with overlays) and open it
 *   lakeinfer upload  DIR --container C [--prefix P]               upload a folder's files (unchanged ones skipped by MD5)
 *   lakeinfer models add NAME MODEL.onnx --from-catalog ID | --json FILE   check and upload a model
 * Options for the API: --url URL (or LAKEINFER_URL; default http://127.0.0.1:7071), --key KEY
 * (or LAKEINFER_KEY: the function key of a deployed app). Commands that read or write the data
 * account (upload, models, results, report) use --account-url URL (or LAKEINFER_ACCOUNT_URL) with
 * Entra ID (DefaultAzureCredential: az login / azd auth login), or a connection string with
 * --storage (or DATA_STORAGE: Azurite, the local host).
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { TokenCredential } from '@azure/identity';
import type { BlobServiceClient } from '@azure/storage-blob';
import type { JobView } from '../api';
import type { Manifest } from '../finalize';
import { addModel } from '../operator/models';
import { operatorStorage, OperatorStorageError } from '../operator/storage';
import { progressBar, uploadDirectory } from '../operator/upload';
import { maskConnectionString, readBlob } from '../storage';
import { downloadOutputs } from './outputs';
import { cancel, progressLine, purge, status, submit, watch, type ApiOptions } from './client';
import { startLocalHost } from '../local/host';

interface Args {
  cmd: string;
  pos: string[];
  flags: Record<string, string | true>;
}

export function parseArgs(argv: string[]): Args {
  const [cmd = 'help', ...rest] = argv;
  const pos: string[] = [];
  const flags: Record<string, string | true> = {};
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a.startsWith('--')) {
      const [k, v] = a.slice(2).split('=', 2) as [string, string | undefined];
      if (v !== undefined) flags[k] = v;
      else if (rest[i + 1] !== undefined && !rest[i + 1]!.startsWith('--') && !['wait', 'watch', 'open', 'skip-check'].includes(k)) flags[k] = rest[++i]!;
      else flags[k] = true;
    } else pos.push(a);
  }
  return { cmd, pos, flags };
}

/** A flag's value, when it was given one. */
const flag = (a: Args, k: string): string | undefined => (typeof a.flags[k] === 'string' ? a.flags[k] : undefined);

function apiOf(a: Args, env: NodeJS.ProcessEnv): ApiOptions {
  const url = flag(a, 'url') ?? env['LAKEINFER_URL'] ?? 'http://127.0.0.1:7071';
  const key = flag(a, 'key') ?? env['LAKEINFER_KEY'];
  return key ? { url, key } : { url };
}

/** The data account: --account-url (Entra ID) or --storage (connection string), then the same from the environment. */
function storageOf(a: Args, env: NodeJS.ProcessEnv, credential?: TokenCredential): BlobServiceClient {
  const cs = flag(a, 'storage');
  const accountUrl = flag(a, 'account-url') ?? (cs ? undefined : env['LAKEINFER_ACCOUNT_URL']);
  const connectionString = cs ?? (accountUrl ? undefined : env['DATA_STORAGE']);
  return operatorStorage({ ...(accountUrl ? { accountUrl } : {}), ...(connectionString ? { connectionString } : {}), ...(credential ? { credential } : {}) });
}

export interface CliDeps {
  /** The Entra ID credential for --account-url (DefaultAzureCredential when absent). */
  credential?: TokenCredential;
}

function need(a: Args, i: number, what: string): string {
  const v = a.pos[i];
  if (!v) throw new Error(`missing ${what}; see 'lakeinfer help'`);
  return v;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function summary(v: JobView): string {
  const lines = [`job ${v.jobId}: ${v.runtimeStatus}`];
  if (v.progress) lines.push(`  ${progressLine(v)}`);
  if (v.outputs) lines.push(`  outputs: container '${v.outputs.container}', prefix '${v.outputs.prefix}' (manifest ${v.outputs.manifest})`);
  if (v.runtimeStatus === 'Failed' || v.runtimeStatus === 'Terminated') lines.push(`  reason: ${typeof v.output === 'string' ? v.output : JSON.stringify(v.output)}`);
  return lines.join('\n');
}

async function follow(api: ApiOptions, jobId: string, out: (s: string) => void): Promise<JobView> {
  const tty = process.stdout.isTTY;
  let last = '';
  const v = await watch(api, jobId, (s) => {
    const line = progressLine(s);
    if (line === last) return;
    last = line;
    if (tty) process.stdout.write(`\r${line}`);
    else out(line);
  });
  if (tty) process.stdout.write('\n');
  return v;
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env, out: (s: string) => void = (s) => console.log(s), deps: CliDeps = {}): Promise<number> {
  const a = parseArgs(argv);
  const api = apiOf(a, env);
  switch (a.cmd) {
    case 'host': {
      const dataFlag = flag(a, 'data');
      const data = dataFlag === undefined ? undefined : resolve(dataFlag);
      const storage = flag(a, 'storage');
      const host = await startLocalHost({
        port: Number(a.flags['port'] ?? 7071),
        activityProcesses: Number(a.flags['processes'] ?? 2),
        ...(data ? { azuriteLocation: data } : {}),
        ...(storage !== undefined ? { storageConnectionString: storage } : {}),
        settings: { MODELS_CONTAINER: env['MODELS_CONTAINER'] ?? 'models' },
        onFatal: (err) => {
          console.error(`lakeinfer: ${err.message}`);
          process.exit(1);
        },
      });
      out(`lakeinfer local host at ${host.url}`);
      // Never a key on the terminal: the embedded Azurite uses its documented development account.
      out(`storage: ${maskConnectionString(host.connectionString)}${host.azurite ? " (Azurite's development account devstoreaccount1)" : ''}`);
      out('Ctrl+C to stop');
      await new Promise<void>((r) => {
        process.once('SIGINT', r);
        process.once('SIGTERM', r);
      });
      await host.stop();
      return 0;
    }
    case 'submit': {
      const file = need(a, 0, 'the job request file (or - for stdin)');
      const request = JSON.parse(file === '-' ? await readStdin() : await readFile(file, 'utf8')) as unknown;
      const v = await submit(api, request);
      out(summary(v));
      if (a.flags['wait']) {
        const end = await follow(api, v.jobId, out);
        out(summary(end));
        return end.runtimeStatus === 'Completed' ? 0 : 1;
      }
      return 0;
    }
    case 'status': {
      const id = need(a, 0, 'JOB_ID');
      const v = a.flags['watch'] ? await follow(api, id, out) : await status(api, id);
      out(summary(v));
      return 0;
    }
    case 'cancel': {
      out(summary(await cancel(api, need(a, 0, 'JOB_ID'))));
      return 0;
    }
    case 'purge': {
      const r = await purge(api, need(a, 0, 'JOB_ID'));
      out(`${r.jobId}: ${r.purged ? 'history purged' : 'no history to purge'}; ${r.note}`);
      return 0;
    }
    case 'results': {
      const v = await status(api, need(a, 0, 'JOB_ID'));
      out(summary(v));
      if (!v.outputs) return 0;
      let svc: BlobServiceClient;
      try {
        svc = storageOf(a, env, deps.credential);
      } catch (err) {
        if (!(err instanceof OperatorStorageError)) throw err;
        out(`  (to read the outputs: ${err.message})`);
        return 0;
      }
      const c = svc.getContainerClient(v.outputs.container);
      const m = await readBlob(c, v.outputs.manifest);
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
      }
      return 0;
    }
    case 'report': {
      const id = need(a, 0, 'JOB_ID');
      const v = await status(api, id);
      if (!v.outputs) throw new Error(`job ${id} has no outputs yet (${v.runtimeStatus})`);
      const c = storageOf(a, env, deps.credential).getContainerClient(v.outputs.container);
      const dir = resolve(flag(a, 'out') ?? join('out', id));
      const n = (await downloadOutputs(c, v.outputs.prefix, dir)).files;
      const file = join(dir, 'report.html');
      out(`downloaded ${n} files; report: ${file}`);
      if (a.flags['open']) {
        const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
        spawn(opener, [file], { detached: true, stdio: 'ignore' }).on('error', () => out(`(could not run ${opener}; open ${file} yourself)`)).unref();
      }
      return 0;
    }
    case 'upload': {
      const dir = resolve(need(a, 0, 'DIR'));
      const container = flag(a, 'container');
      if (!container) throw new Error("missing --container (e.g. --container images); see 'lakeinfer help'");
      const prefix = flag(a, 'prefix') ?? '';
      if (prefix && !prefix.endsWith('/')) out(`note: prefix '${prefix}' does not end with '/': blob names start with it as is`);
      const tty = process.stdout.isTTY;
      let lastTenth = -1;
      const done = await uploadDirectory(storageOf(a, env, deps.credential).getContainerClient(container), dir, {
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
      });
      if (tty) process.stdout.write('\n');
      out(`uploaded ${done.uploaded} files (${(done.bytes / 1e6).toFixed(1)} MB) to ${container}/${prefix}; ${done.skipped} unchanged`);
      return 0;
    }
    case 'models': {
      if (a.pos[0] !== 'add') throw new Error("usage: lakeinfer models add NAME MODEL.onnx --from-catalog ID | --json FILE");
      const name = need(a, 1, 'NAME');
      const onnx = resolve(need(a, 2, 'MODEL.onnx'));
      const container = flag(a, 'container') ?? env['MODELS_CONTAINER'] ?? 'models';
      const fromCatalog = flag(a, 'from-catalog');
      const jsonPath = flag(a, 'json');
      const added = await addModel(storageOf(a, env, deps.credential).getContainerClient(container), name, onnx, {
        ...(fromCatalog ? { fromCatalog } : {}),
        ...(jsonPath ? { jsonPath: resolve(jsonPath) } : {}),
        ...(a.flags['skip-check'] ? { skipCheck: true } : {}),
      });
      out(`model '${added.name}' checked and uploaded to ${container}/${added.name}/ (model.onnx ${(added.bytes / 1e6).toFixed(1)} MB, ETag ${added.etag}; model.json ETag ${added.jsonEtag})`);
      return 0;
    }
    default:
      out(
        [
          'lakeinfer host    [--port 7071] [--data DIR] [--processes 2]',
          'lakeinfer submit  FILE|- [--wait]',
          'lakeinfer status  JOB_ID [--watch]',
          'lakeinfer results JOB_ID [--out DIR]',
          'lakeinfer cancel  JOB_ID',
          'lakeinfer purge   JOB_ID',
          'lakeinfer report  JOB_ID [--out DIR] [--open]',
          'lakeinfer upload  DIR --container C [--prefix P] [--extensions .jpg,.png] [--concurrency 16]',
          'lakeinfer models add NAME MODEL.onnx (--from-catalog ID | --json FILE) [--container models] [--skip-check]',
          'API: --url URL (LAKEINFER_URL, default http://127.0.0.1:7071), --key KEY (LAKEINFER_KEY)',
          'Data account (upload, models, results, report): --account-url https://<account>.blob.core.windows.net',
          '  (LAKEINFER_ACCOUNT_URL; Entra ID: az login / azd auth login) or --storage CONNECTION_STRING (DATA_STORAGE)',
        ].join('\n'),
      );
      return a.cmd === 'help' || a.cmd === '--help' ? 0 : 2;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(`lakeinfer: ${(err as Error).message}`);
      process.exit(1);
    },
  );
}
