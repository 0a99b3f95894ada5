/** The CLI's argument parsing and the pieces every command shares (API and data-account options). */
import type { TokenCredential } from '@azure/identity';
import type { BlobServiceClient } from '@azure/storage-blob';
import { operatorStorage } from '../operator/storage';
import type { ApiOptions } from './client';

export interface CliDeps {
  /** The Entra ID credential for --account-url (DefaultAzureCredential when absent). */
  credential?: TokenCredential;
}

export interface Args {
  cmd: string;
  pos: string[];
  flags: Record<string, string | true>;
}

/** Flags that take no value. */
const SWITCHES = ['wait', 'watch', 'open', 'skip-check', 'help', 'no-wait', 'all'];

export function parseArgs(argv: string[]): Args {
  const [cmd = 'help', ...rest] = argv;
  const pos: string[] = [];
  const flags: Record<string, string | true> = {};
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '-h') flags['help'] = true;
    else if (a.startsWith('--')) {
      const [k, v] = a.slice(2).split('=', 2) as [string, string | undefined];
      if (v !== undefined) flags[k] = v;
      else if (rest[i + 1] !== undefined && !rest[i + 1]!.startsWith('--') && !SWITCHES.includes(k)) flags[k] = rest[++i]!;
      else flags[k] = true;
    } else pos.push(a);
  }
  return { cmd, pos, flags };
}

/** A flag's value, when it was given one. */
export const flag = (a: Args, k: string): string | undefined => (typeof a.flags[k] === 'string' ? a.flags[k] : undefined);

export class UsageError extends Error {}

export function need(a: Args, i: number, what: string): string {
  const v = a.pos[i];
  if (!v) throw new UsageError(`missing ${what}; see 'lakeinfer ${a.cmd} --help'`);
  return v;
}

export function apiOf(a: Args, env: NodeJS.ProcessEnv): ApiOptions {
  const url = flag(a, 'url') ?? env['LAKEINFER_URL'] ?? 'http://127.0.0.1:7071';
  const key = flag(a, 'key') ?? env['LAKEINFER_KEY'];
  return key ? { url, key } : { url };
}

/** The data account: --account-url (Entra ID) or --storage (connection string), then the same from the environment. */
export function storageOf(a: Args, env: NodeJS.ProcessEnv, credential?: TokenCredential): BlobServiceClient {
  const cs = flag(a, 'storage');
  const accountUrl = flag(a, 'account-url') ?? (cs ? undefined : env['LAKEINFER_ACCOUNT_URL']);
  const connectionString = cs ?? (accountUrl ? undefined : env['DATA_STORAGE']);
  return operatorStorage({ ...(accountUrl ? { accountUrl } : {}), ...(connectionString ? { connectionString } : {}), ...(credential ? { credential } : {}) });
}

/** A URL fit for a terminal: a SAS or other query string replaced by ***. */
export function maskUrl(url: string): string {
  return url.replace(/\?.*$/, (q) => (q.length > 1 ? '?***' : q));
}
