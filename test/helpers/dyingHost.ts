/**
 * A stand-in for a host that dies mid-flush: starts the embedded emulator on a data folder, writes
 * `seed` blobs (so a save takes a while), then asks the emulator to save (a job start does) and,
 * without waiting for the answer, writes a few more blobs and kills itself with SIGKILL. Prints
 * `emulator <pid>`, the connection string, and `acked <name>` for each write storage acknowledged.
 * Run: node dyingHost.js DIR SEED (without DIR it does nothing: node --test runs every file under test/)
 */
import { BlobServiceClient } from '@azure/storage-blob';
import { startAzurite } from '../../lib/local/azurite/azurite';

async function main(): Promise<void> {
  const [dir, seed = '300'] = process.argv.slice(2);
  // node --test runs every file under dist/test/: without its argument this helper does nothing.
  if (!dir) return;
  const azurite = await startAzurite({ location: dir! });
  console.log(`emulator ${azurite.process.pid}`);
  console.log(`connection ${azurite.connectionString}`);
  const c = BlobServiceClient.fromConnectionString(azurite.connectionString, { retryOptions: { maxTries: 1 } }).getContainerClient('acked');
  await c.createIfNotExists();
  const body = Buffer.from('x');
  for (let i = 0; i < Number(seed); i += 50) {
    await Promise.all(Array.from({ length: 50 }, (_, k) => c.getBlockBlobClient(`seed/${i + k}`).upload(body, 1)));
  }
  await azurite.flush();
  void azurite.flush().catch(() => undefined);
  await Promise.all(
    Array.from({ length: 3 }, async (_, i) => {
      await c.getBlockBlobClient(`late/${i}`).upload(body, 1);
      console.log(`acked late/${i}`);
    }),
  );
  process.kill(process.pid, 'SIGKILL');
}

void main();
