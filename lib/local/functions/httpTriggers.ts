/**
 * Serves the registered HTTP functions at /api/<route> as the Functions host does: route
 * parameters, methods, the request as an HttpRequest, extra inputs (the Durable client's binding
 * data), and the HttpResponseInit answered.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpRequest, InvocationContext, type HttpResponseInit } from '@azure/functions';
import type { RegisteredFunction } from './functionsHost';
import { decodeSegment, readBody, routeRegex, send } from './http';

/**
 * `acknowledgement`: called as a request that can write (not GET/HEAD) begins; what it returns makes
 * storage durable (the emulator's save) and is awaited before the answer goes out, whatever the
 * request wrote: a job start, a cancel of either kind of job (a continuous job's cancel is only a
 * blob write), a restart, a retry, a purge. One path: decide, save, then answer; and no answer for
 * a write storage may have lost meanwhile (it throws a RequestError then).
 */
export function httpTriggers(functions: ReadonlyMap<string, RegisteredFunction>, clientData: () => Record<string, unknown>, log: (m: string) => void, acknowledgement?: () => () => Promise<void>) {
  const routes = [...functions.values()]
    .filter((f) => f.trigger.type === 'httpTrigger')
    .map((f) => ({ f, methods: (f.trigger.methods ?? ['GET', 'POST']).map((m) => m.toUpperCase()), ...routeRegex(String(f.trigger.route ?? f.name)) }));

  return async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const rel = url.pathname.slice('/api/'.length);
    for (const h of routes) {
      const m = h.re.exec(rel);
      if (!m || !h.methods.includes(req.method ?? 'GET')) continue;
      const commit = req.method !== 'GET' && req.method !== 'HEAD' ? acknowledgement?.() : undefined;
      const params: Record<string, string> = {};
      h.names.forEach((n, i) => (params[n] = decodeSegment(m[i + 1] ?? '', n)));
      const body = await readBody(req);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      const request = new HttpRequest({ method: req.method ?? 'GET', url: url.href, headers, params, query: Object.fromEntries(url.searchParams), ...(body.length ? { body: { bytes: body } } : {}) });
      const extraInputs = Object.entries(h.f.bindings)
        .filter(([, b]) => b.direction === 'in' && !/trigger$/i.test(b.type))
        .map(([name, b]) => ({ ...b, name }));
      const context = new InvocationContext({
        invocationId: randomUUID(),
        functionName: h.f.name,
        logHandler: (level, ...args) => log(`[${h.f.name}] ${level}: ${args.join(' ')}`),
        options: { trigger: { ...h.f.trigger, type: h.f.trigger.type }, extraInputs, extraOutputs: [] },
      });
      for (const b of extraInputs) if (b.type === 'durableClient' || b.type === 'orchestrationClient') context.extraInputs.set(b.name, clientData());
      const out = (await h.f.handler(request, context)) as HttpResponseInit | undefined;
      await commit?.();
      const hdrs: Record<string, string> = {};
      if (out?.headers) for (const [k, v] of Object.entries(out.headers as Record<string, string>)) hdrs[k] = String(v);
      if (out?.jsonBody !== undefined) return send(res, out.status ?? 200, out.jsonBody, hdrs);
      return send(res, out?.status ?? 200, typeof out?.body === 'string' ? out.body : '', hdrs);
    }
    return send(res, 404, { error: { code: 'NotFound', message: `no function serves ${req.method} ${url.pathname}` } });
  };
}
