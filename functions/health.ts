import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { settings } from '../lib/util/config';
import { checkHealth, type HealthReport } from '../lib/api/health';
import { dataService } from '../lib/storage';

async function report(context: InvocationContext): Promise<HealthReport> {
  const r = await checkHealth(settings, (s) => dataService(s.data));
  if (!r.ok) context.warn('health check failed', JSON.stringify(r.checks));
  return r;
}

/** Anonymous (load balancers, uptime probes): ok or not, nothing about the deployment. */
export async function healthHandler(_req: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const r = await report(context);
  return { status: r.ok ? 200 : 503, jsonBody: { status: r.ok ? 'ok' : 'unavailable' } };
}

/** Behind a function key: which check failed and why (setting names, container names). */
export async function healthDetailsHandler(_req: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const r = await report(context);
  return { status: r.ok ? 200 : 503, jsonBody: r };
}

app.http('health', { methods: ['GET'], authLevel: 'anonymous', route: 'health', handler: healthHandler });
app.http('healthDetails', { methods: ['GET'], authLevel: 'function', route: 'health/details', handler: healthDetailsHandler });
