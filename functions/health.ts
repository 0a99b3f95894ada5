import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { settings } from '../lib/config';
import { checkHealth } from '../lib/health';
import { dataService } from '../lib/storage';

export async function healthHandler(_req: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const report = await checkHealth(settings, (s) => dataService(s.data));
  if (!report.ok) context.warn('health check failed', JSON.stringify(report.checks));
  return { status: report.ok ? 200 : 503, jsonBody: report };
}

app.http('health', { methods: ['GET'], authLevel: 'anonymous', route: 'health', handler: healthHandler });
