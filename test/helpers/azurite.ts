import { after, before } from 'node:test';
import { BlobServiceClient } from '@azure/storage-blob';
import { startAzurite, type AzuriteInstance } from '../../lib/local/azurite';

export interface AzuriteFixture {
  azurite: AzuriteInstance;
  service: BlobServiceClient;
}

/** Starts a real Azurite for the enclosing test file (before) and stops it (after). */
export function useAzurite(): AzuriteFixture {
  const fixture = {} as AzuriteFixture;
  before(async () => {
    fixture.azurite = await startAzurite();
    fixture.service = BlobServiceClient.fromConnectionString(fixture.azurite.connectionString);
  });
  after(async () => {
    await fixture.azurite?.stop();
  });
  return fixture;
}

let counter = 0;
/** A fresh, valid container name per call. */
export function uniqueContainer(prefix = 'c'): string {
  counter++;
  return `${prefix}-${process.pid}-${counter}-${Date.now().toString(36)}`.toLowerCase().slice(0, 63);
}
