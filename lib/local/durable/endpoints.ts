/**
 * The Durable Functions client endpoints the durable-functions SDK's client talks to
 * (/runtime/webhooks/durabletask/...): start an orchestration, read its status, raise an event to
 * it, terminate it.
 * Inputs are checked as the job API checks them (a bad one is a 400 naming the field, never an
 * instance), and what is acknowledged is made durable first.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InstanceFilter, InstanceStatus, RuntimeStatus } from '../../api/jobs';
import type { DurableEngine } from './engine';
import { decodeSegment, readBody, RequestError, send } from '../functions/http';

export const DURABLE_PREFIX = '/runtime/webhooks/durabletask/';

export interface DurableEndpointOptions {
  /** Checks an orchestrator's input; throws a RequestError (400) naming the field. */
  validate?: (orchestrator: string, input: unknown) => void;
  /**
   * Called as a request that can write begins; what it returns makes the state durable before the
   * answer goes out (and refuses to acknowledge what storage may have lost meanwhile).
   */
  acknowledgement?: () => () => Promise<void>;
}

/** The durable extension's instance status payload (what DurableClient.getStatus parses). */
function statusPayload(s: InstanceStatus, name: string): Record<string, unknown> {
  return {
    name,
    instanceId: s.instanceId,
    runtimeStatus: s.runtimeStatus,
    input: s.input ?? null,
    customStatus: s.customStatus ?? null,
    output: s.output ?? null,
    createdTime: s.createdTime,
    lastUpdatedTime: s.lastUpdatedTime,
  };
}

const ACTIVE = ['Running', 'Pending'];
const INSTANCES_PAGE = 100;

export function durableEndpoints(engine: DurableEngine, baseUrl: () => string, opts: DurableEndpointOptions = {}) {
  return async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const path = url.pathname.slice(DURABLE_PREFIX.length);
    const commit = req.method !== 'GET' && req.method !== 'HEAD' ? opts.acknowledgement?.() : undefined;
    let m = /^orchestrators\/([^/]+)(?:\/([^/]+))?$/.exec(path);
    if (m && req.method === 'POST') {
      const name = decodeSegment(m[1]!, 'orchestrator name');
      if (!engine.hasOrchestrator(name)) return send(res, 404, { message: `no orchestrator function named '${name}'` });
      const id = m[2] ? decodeSegment(m[2], 'instance id') : randomUUID().replace(/-/g, '');
      const text = (await readBody(req)).toString('utf8');
      let input: unknown = null;
      try {
        input = text === '' ? null : JSON.parse(text);
      } catch {
        throw new RequestError(400, 'InvalidRequest', 'orchestration input is not valid JSON', '(body)');
      }
      opts.validate?.(name, input);
      const existing = await engine.status(id);
      if (existing && ACTIVE.includes(existing.runtimeStatus)) return send(res, 409, { message: `an instance with ID '${id}' already exists` });
      await engine.start(name, id, input);
      await commit?.();
      return send(res, 202, { id, statusQueryGetUri: `${baseUrl()}${DURABLE_PREFIX}instances/${id}` });
    }
    if (/^instances\/?$/.test(path) && req.method === 'GET') {
      // The instance query: filters as the extension takes them, 100 a page with x-ms-continuation-token.
      const from = url.searchParams.get('createdTimeFrom');
      const to = url.searchParams.get('createdTimeTo');
      const statuses = url.searchParams.get('runtimeStatus');
      const filter: InstanceFilter = {
        ...(from ? { createdTimeFrom: new Date(from) } : {}),
        ...(to ? { createdTimeTo: new Date(to) } : {}),
        ...(statuses ? { runtimeStatus: statuses.split(',') as RuntimeStatus[] } : {}),
      };
      for (const [k, d] of Object.entries({ createdTimeFrom: filter.createdTimeFrom, createdTimeTo: filter.createdTimeTo })) {
        if (d && Number.isNaN(d.getTime())) throw new RequestError(400, 'InvalidRequest', `${k} is not a date`, k);
      }
      const all = (await engine.list(filter)).sort((a, b) => a.instanceId.localeCompare(b.instanceId));
      const start = Number(req.headers['x-ms-continuation-token'] ?? 0) || 0;
      const page = all.slice(start, start + INSTANCES_PAGE).map((s) => {
        const p = statusPayload(s, engine.record(s.instanceId)?.name ?? '');
        p['input'] = null;
        return p;
      });
      if (start + INSTANCES_PAGE < all.length) res.setHeader('x-ms-continuation-token', String(start + INSTANCES_PAGE));
      return send(res, 200, page);
    }
    m = /^instances\/([^/]+)\/terminate$/.exec(path);
    if (m && req.method === 'POST') {
      const id = decodeSegment(m[1]!, 'instance id');
      const s = await engine.status(id);
      if (!s) return send(res, 404, { message: `no instance '${id}'` });
      if (!ACTIVE.includes(s.runtimeStatus)) return send(res, 410, { message: `instance '${id}' is ${s.runtimeStatus}` });
      await engine.terminate(id, url.searchParams.get('reason') ?? '');
      await commit?.();
      return send(res, 202, undefined);
    }
    m = /^instances\/([^/]+)\/raiseEvent\/([^/]+)$/.exec(path);
    if (m && req.method === 'POST') {
      // As the extension answers: 202 raised, 404 no such instance, 410 it has ended.
      const id = decodeSegment(m[1]!, 'instance id');
      const name = decodeSegment(m[2]!, 'event name');
      const text = (await readBody(req)).toString('utf8');
      let data: unknown = null;
      try {
        data = text === '' ? null : JSON.parse(text);
      } catch {
        throw new RequestError(400, 'InvalidRequest', 'event data is not valid JSON', '(body)');
      }
      const s = await engine.status(id);
      if (!s) return send(res, 404, { message: `no instance '${id}'` });
      if (!(await engine.raiseEvent(id, name, data))) return send(res, 410, { message: `instance '${id}' is ${s.runtimeStatus}` });
      await commit?.();
      return send(res, 202, undefined);
    }
    m = /^instances\/([^/]+)$/.exec(path);
    if (m && req.method === 'DELETE') {
      // Purge a finished instance's history: 200 with the count, 404 when there is none.
      const id = decodeSegment(m[1]!, 'instance id');
      const s = await engine.status(id);
      if (!s) return send(res, 404, { message: `no instance '${id}'` });
      if (ACTIVE.includes(s.runtimeStatus)) return send(res, 409, { message: `instance '${id}' is ${s.runtimeStatus}; only finished instances can be purged` });
      const purged = await engine.purge(id);
      await commit?.();
      return send(res, 200, { instancesDeleted: purged ? 1 : 0 });
    }
    if (m && req.method === 'GET') {
      const id = decodeSegment(m[1]!, 'instance id');
      const s = await engine.status(id);
      if (!s) return send(res, 404, { message: `no instance '${id}'` });
      const payload = statusPayload(s, engine.record(id)?.name ?? '');
      if (url.searchParams.get('showInput') !== 'true') payload['input'] = null;
      return send(res, ACTIVE.includes(s.runtimeStatus) ? 202 : 200, payload);
    }
    return send(res, 404, { message: `no durable endpoint ${req.method} ${url.pathname}` });
  };
}
