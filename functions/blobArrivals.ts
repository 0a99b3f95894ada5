/**
 * Continuous jobs on Azure: Event Grid delivers the data account's BlobCreated events here (the
 * Flex Consumption way; infra/main.bicep subscribes this function); each becomes an arrival record
 * of the continuous jobs whose input it falls in (lib/continuous/collect.ts). No blob is read here.
 */
import { app, type EventGridEvent, type InvocationContext } from '@azure/functions';
import { settings } from '../lib/util/config';
import { recordBlobEvents, type BlobEvent } from '../lib/continuous/collect';
import { dataService } from '../lib/storage';

export async function blobArrivalsHandler(event: EventGridEvent, context: InvocationContext): Promise<void> {
  const s = settings();
  if (s.outputContainers.length === 0) {
    context.warn('blob event ignored: OUTPUT_CONTAINERS names no container to find continuous jobs in');
    return;
  }
  const svc = await dataService(s.data);
  const n = await recordBlobEvents(s.outputContainers.map((c) => svc.getContainerClient(c)), [event as unknown as BlobEvent], new Date(), (blob, why) => context.warn(`skipped ${blob}: not a continuous job's registration (${why})`));
  if (n > 0) context.log(`${event.subject}: recorded for ${n} continuous job(s)`);
}

app.eventGrid('blobArrivals', { handler: blobArrivalsHandler });
