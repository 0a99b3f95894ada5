/**
 * The data account's clients: from a connection string, a service URI with a token credential
 * (managed identity on Azure), or a connection string kept in Key Vault. Transient failures are
 * retried by the SDK's retry policy (STORAGE_RETRY); what still fails is surfaced as a
 * LakeInferError whose `retryable` flag says whether the activity should be retried.
 */
import { BlobServiceClient, type StoragePipelineOptions } from '@azure/storage-blob';
import { DefaultAzureCredential, ManagedIdentityCredential, type TokenCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import type { DataConnection } from '../util/config';
import { LakeInferError, isTransientStorageError, restErrorCode, restStatus } from '../util/errors';

export const STORAGE_RETRY: StoragePipelineOptions = {
  retryOptions: { maxTries: 5, retryDelayInMs: 200, maxRetryDelayInMs: 5_000, tryTimeoutInMs: 60_000 },
};

/** Reads one Key Vault secret. Injected so tests need no Key Vault server. */
export type SecretReader = (vaultUrl: string, name: string, version?: string) => Promise<string>;

export interface ClientDeps {
  /** Credential for service URIs and Key Vault; default DefaultAzureCredential (or the named managed identity). */
  credential?: TokenCredential;
  readSecret?: SecretReader;
  pipeline?: StoragePipelineOptions;
}

function defaultCredential(clientId?: string): TokenCredential {
  return clientId === undefined ? new DefaultAzureCredential() : new ManagedIdentityCredential({ clientId });
}

function keyVaultReader(credential: TokenCredential): SecretReader {
  return async (vaultUrl, name, version) => {
    const client = new SecretClient(vaultUrl, credential);
    const secret = await client.getSecret(name, version === undefined ? {} : { version });
    if (secret.value === undefined || secret.value === '') throw new Error('secret has no value');
    return secret.value;
  };
}

/** Builds the data account client from whichever connection the settings name. */
export async function createDataServiceClient(conn: DataConnection, deps: ClientDeps = {}): Promise<BlobServiceClient> {
  const pipeline = deps.pipeline ?? STORAGE_RETRY;
  switch (conn.kind) {
    case 'connectionString':
      return BlobServiceClient.fromConnectionString(conn.connectionString, pipeline);
    case 'serviceUri':
      return new BlobServiceClient(conn.serviceUri, deps.credential ?? defaultCredential(conn.clientId), pipeline);
    case 'keyVaultSecret': {
      const read = deps.readSecret ?? keyVaultReader(deps.credential ?? defaultCredential());
      let value: string;
      try {
        value = await read(conn.vaultUrl, conn.secretName, conn.secretVersion);
      } catch (err) {
        // The message names the secret, never its value.
        throw new LakeInferError(
          'SecretUnavailable',
          `could not read Key Vault secret '${conn.secretName}' from ${conn.vaultUrl} (setting DATA_STORAGE_SECRET_URI): ${(err as Error).message ?? err}`,
          { target: 'DATA_STORAGE_SECRET_URI', retryable: isTransientStorageError(err), cause: err },
        );
      }
      try {
        return BlobServiceClient.fromConnectionString(value, pipeline);
      } catch {
        throw new LakeInferError('ConfigInvalid', `Key Vault secret '${conn.secretName}' does not hold a storage connection string`, {
          target: 'DATA_STORAGE_SECRET_URI',
        });
      }
    }
  }
}

/** Translates a storage SDK error into a LakeInferError that names what was being done. */
export function storageError(err: unknown, what: string, target: string): LakeInferError {
  if (err instanceof LakeInferError) return err;
  const status = restStatus(err);
  const code = restErrorCode(err);
  if (status === 404 && code === 'ContainerNotFound') {
    return new LakeInferError('ContainerNotFound', `container '${target}' does not exist (${what})`, { target, cause: err });
  }
  if (status === 404) return new LakeInferError('BlobNotFound', `'${target}' was not found (${what})`, { target, cause: err });
  const retryable = isTransientStorageError(err);
  // Never empty: a storage answer with no message (a 500 from a listing of a name it cannot
  // encode, say) is named by its status and error code.
  const first = (err instanceof Error ? err.message.split('\n')[0] : String(err))?.trim();
  const answer = [status !== undefined ? `HTTP ${status}` : '', code ?? ''].filter(Boolean).join(' ');
  const detail = first ? (answer && !first.includes(answer) ? `${first} (${answer})` : first) : answer ? `storage answered ${answer} with no message${what.startsWith('listing') ? '; a blob name it cannot list (a control character or noncharacter) does this' : ''}` : 'no reason given';
  return new LakeInferError(retryable ? 'StorageUnavailable' : 'Internal', `${what} failed for '${target}': ${detail}`, {
    target,
    retryable,
    cause: err,
  });
}

let processService: Promise<BlobServiceClient> | undefined;
/** The data account client of this process (built once from settings; rebuilt after a failure). */
export function dataService(conn: DataConnection): Promise<BlobServiceClient> {
  processService ??= createDataServiceClient(conn).catch((err: unknown) => {
    processService = undefined;
    throw err;
  });
  return processService;
}
export function resetDataService(): void {
  processService = undefined;
}

/** A connection string fit for a log or a terminal: account key and SAS token replaced by ***. */
export function maskConnectionString(cs: string): string {
  return cs.replace(/(AccountKey|SharedAccessSignature)=[^;]*/gi, '$1=***');
}
