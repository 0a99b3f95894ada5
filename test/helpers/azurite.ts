import { after, before } from 'node:test';
import { BlobServiceClient } from '@azure/storage-blob';
import { startAzurite, type AzuriteInstance } from '../../lib/local/azurite/azurite';

export interface AzuriteFixture {
  azurite: AzuriteInstance;
  service: BlobServiceClient;
  /** Resolves once Azurite is up (for hooks that may run alongside this one). */
  ready: Promise<void>;
}

/** Starts a real Azurite for the enclosing test file (before) and stops it (after). */
export function useAzurite(): AzuriteFixture {
  const fixture = {} as AzuriteFixture;
  let up: () => void = () => undefined;
  fixture.ready = new Promise<void>((r) => (up = r));
  before(async () => {
    fixture.azurite = await startAzurite();
    fixture.service = BlobServiceClient.fromConnectionString(fixture.azurite.connectionString);
    up();
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
