/**
 * HTTP plumbing of the local host: bounded request bodies, JSON answers, route patterns, and
 * request errors that become 4xx answers instead of 500s.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Largest request body the local host reads (a job request is a few hundred bytes). */
export const MAX_BODY_BYTES = 1024 * 1024;

/** A request the host refuses, with the status and error body to answer. */
export class RequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly target?: string,
  ) {
    super(message);
  }
  body(): { error: { code: string; message: string; target?: string } } {
    return { error: { code: this.code, message: this.message, ...(this.target ? { target: this.target } : {}) } };
  }
}

/** The body, or a 413 as soon as it passes `limit` (the rest is not read). */
export async function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  const tooLarge = (): RequestError => new RequestError(413, 'PayloadTooLarge', `request body is larger than ${limit} bytes`, '(body)');
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) throw tooLarge();
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks, size);
}

/** decodeURIComponent for a path segment; malformed percent-encoding is a 400. */
export function decodeSegment(segment: string, what: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new RequestError(400, 'InvalidRequest', `${what} is not valid percent-encoding: '${segment}'`, what);
  }
}

export function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8', ...headers });
  res.end(text);
}

/** A Functions route ('jobs/{id}', '{name?}') as a regular expression with its parameter names. */
export function routeRegex(route: string): { re: RegExp; names: string[] } {
  const names: string[] = [];
  const pattern = route
    .replace(/^\//, '')
    .split('/')
    .map((seg) => {
      const m = /^\{([A-Za-z0-9_]+)(?::[^}]*)?(\?)?\}$/.exec(seg);
      if (!m) return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      names.push(m[1]!);
      return m[2] ? '([^/]*)' : '([^/]+)';
    })
    .join('/');
  return { re: new RegExp(`^${pattern}/?$`), names };
}
