/**
 * HTTP API: POST /api/jobs (start or resume), GET /api/jobs (list, newest first), GET /api/jobs/{id} (status), POST /api/jobs/{id}/retry
 * (redrive a failed or cancelled job), DELETE /api/jobs/{id} (cancel), DELETE /api/jobs/{id}/history (purge a finished job's orchestration history).
 */
import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import * as df from 'durable-functions';
import { cancelJob, jobStatus, listJobs, purgeJob, retryJob, submitJob, type ApiOptions, type ApiResponse, type JobClient } from '../lib/api/jobs';
import { settings } from '../lib/util/config';
import { dataService } from '../lib/storage';

/** Largest job request accepted (a request is a few hundred bytes). */
const MAX_BODY_BYTES = 1024 * 1024;

/** The data account the job folders live in (job records, outcomes). */
const apiOptions = (): ApiOptions => {
  const s = settings();
  return {
    storage: () => dataService(s.data),
    containers: { input: s.inputContainers, output: s.outputContainers },
    // Blob events come from the provisioned data account's Event Grid topic, never an external one.
    ...(s.data.kind === 'keyVaultSecret'
      ? { continuousUnavailable: "its data account is external (DATA_STORAGE_SECRET_URI), and blob-created events reach this app only from the data account it provisioned; run batch jobs (\"mode\": \"batch\"), e.g. over new blobs with skipExisting" }
      : {}),
  };
};

/** The Durable client as the JobClient the API logic needs. */
export function durableJobClient(context: InvocationContext): JobClient {
  const client = df.getClient(context);
  return {
    start: async (name, instanceId, input) => {
      await client.startNew(name, { instanceId, input });
    },
    status: async (id) => {
      let s;
      try {
        s = await client.getStatus(id, { showInput: true });
      } catch (err) {
        // The client reports an unknown instance as an error mentioning HTTP 404.
        if (/HTTP 404/.test((err as Error).message)) return undefined;
        throw err;
      }
      // The client returns an empty status for unknown instances.
      if (!s || !s.instanceId) return undefined;
      return {
        instanceId: s.instanceId,
        runtimeStatus: s.runtimeStatus as never,
        input: s.input,
        output: s.output,
        customStatus: s.customStatus,
        createdTime: new Date(s.createdTime).toISOString(),
        lastUpdatedTime: new Date(s.lastUpdatedTime).toISOString(),
      };
    },
    terminate: (id, reason) => client.terminate(id, reason),
    raiseEvent: (id, name, data) => client.raiseEvent(id, name, data),
    purge: async (id) => (await client.purgeInstanceHistory(id)).instancesDeleted > 0,
    list: async (filter) =>
      (
        await client.getStatusBy({
          ...(filter.createdTimeFrom ? { createdTimeFrom: filter.createdTimeFrom } : {}),
          ...(filter.createdTimeTo ? { createdTimeTo: filter.createdTimeTo } : {}),
          ...(filter.runtimeStatus ? { runtimeStatus: filter.runtimeStatus as unknown as df.OrchestrationRuntimeStatus[] } : {}),
        })
      ).map((s) => ({
        instanceId: s.instanceId,
        runtimeStatus: s.runtimeStatus as never,
        output: s.output,
        customStatus: s.customStatus,
        createdTime: new Date(s.createdTime).toISOString(),
        lastUpdatedTime: new Date(s.lastUpdatedTime).toISOString(),
      })),
  };
}

function respond(r: ApiResponse): HttpResponseInit {
  return { status: r.status, jsonBody: r.body, ...(r.headers ? { headers: r.headers } : {}) };
}

function baseUrl(req: HttpRequest): string {
  return new URL(req.url).origin;
}

export async function submitJobHandler(req: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const tooLarge = { status: 413, jsonBody: { error: { code: 'PayloadTooLarge', message: `request body is larger than ${MAX_BODY_BYTES} bytes`, target: '(body)' } } };
  if (Number(req.headers.get('content-length') ?? 0) > MAX_BODY_BYTES) return tooLarge;
  const bytes = Buffer.from(await req.arrayBuffer());
  if (bytes.length > MAX_BODY_BYTES) return tooLarge;
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { status: 400, jsonBody: { error: { code: 'InvalidRequest', message: 'request body is not valid JSON', target: '(body)' } } };
  }
  const r = await submitJob(durableJobClient(context), body, baseUrl(req), apiOptions());
  context.log(`POST /api/jobs -> ${r.status}`);
  return respond(r);
}

export async function jobStatusHandler(req: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return respond(await jobStatus(durableJobClient(context), req.params['id'] ?? '', baseUrl(req), apiOptions()));
}

export async function listJobsHandler(req: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return respond(await listJobs(durableJobClient(context), new URL(req.url).searchParams, baseUrl(req)));
}

export async function retryJobHandler(req: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const r = await retryJob(durableJobClient(context), req.params['id'] ?? '', baseUrl(req), apiOptions());
  context.log(`POST /api/jobs/${req.params['id']}/retry -> ${r.status}`);
  return respond(r);
}

export async function purgeJobHandler(req: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const r = await purgeJob(durableJobClient(context), req.params['id'] ?? '');
  context.log(`DELETE /api/jobs/${req.params['id']}/history -> ${r.status}`);
  return respond(r);
}

export async function cancelJobHandler(req: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const r = await cancelJob(durableJobClient(context), req.params['id'] ?? '', baseUrl(req), apiOptions());
  context.log(`DELETE /api/jobs/${req.params['id']} -> ${r.status}`);
  return respond(r);
}

const client = df.input.durableClient();
app.http('submitJob', { route: 'jobs', methods: ['POST'], authLevel: 'function', extraInputs: [client], handler: submitJobHandler });
app.http('listJobs', { route: 'jobs', methods: ['GET'], authLevel: 'function', extraInputs: [client], handler: listJobsHandler });
app.http('jobStatus', { route: 'jobs/{id}', methods: ['GET'], authLevel: 'function', extraInputs: [client], handler: jobStatusHandler });
app.http('cancelJob', { route: 'jobs/{id}', methods: ['DELETE'], authLevel: 'function', extraInputs: [client], handler: cancelJobHandler });
app.http('retryJob', { route: 'jobs/{id}/retry', methods: ['POST'], authLevel: 'function', extraInputs: [client], handler: retryJobHandler });
app.http('purgeJob', { route: 'jobs/{id}/history', methods: ['DELETE'], authLevel: 'function', extraInputs: [client], handler: purgeJobHandler });
