/**
 * How an operator's tools (the lakeinfer CLI) reach the data account: with Entra ID given the
 * account URL (DefaultAzureCredential: `az login`, `azd auth login`, a managed identity, ...; never
 * a key), or with a connection string (Azurite, an account that still allows keys).
 */
import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { BlobServiceClient } from '@azure/storage-blob';

export interface OperatorStorageOptions {
  /** https://<account>.blob.core.windows.net (or an emulator's blob endpoint). */
  accountUrl?: string;
  connectionString?: string;
  /** The credential for accountUrl; DefaultAzureCredential when absent. */
  credential?: TokenCredential;
}

export class OperatorStorageError extends Error {}

/** The data account as a BlobServiceClient; exactly one of accountUrl / connectionString. */
export function operatorStorage(o: OperatorStorageOptions): BlobServiceClient {
  if (o.accountUrl && o.connectionString) throw new OperatorStorageError('give the account URL (Entra ID) or a connection string, not both');
  if (o.accountUrl) {
    let url: URL;
    try {
      url = new URL(o.accountUrl);
    } catch {
      throw new OperatorStorageError(`account URL '${o.accountUrl}' is not a URL (expected https://<account>.blob.core.windows.net)`);
    }
    if (url.protocol !== 'https:') throw new OperatorStorageError(`account URL '${o.accountUrl}' must use https: Entra ID tokens are only sent over TLS`);
    return new BlobServiceClient(url.toString().replace(/\/$/, ''), o.credential ?? new DefaultAzureCredential());
  }
  // A person waits at the terminal: a few quick retries, not the SDK's default 17 s before "refused".
  if (o.connectionString) return BlobServiceClient.fromConnectionString(o.connectionString, { retryOptions: { maxTries: 3, retryDelayInMs: 300, maxRetryDelayInMs: 1_000 } });
  throw new OperatorStorageError('no data account: pass --account-url https://<account>.blob.core.windows.net (Entra ID; azd prints it as LAKEINFER_ACCOUNT_URL) or set LAKEINFER_ACCOUNT_URL; locally set DATA_STORAGE to the connection string the local host prints');
}
