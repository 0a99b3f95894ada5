/**
 * Output names: job prefixes, safe one-to-one relative names for input blobs, content types, and
 * the guard against names that cannot be addressed.
 */
import { createHash } from 'node:crypto';
import { LakeInferError } from '../util/errors';

/** Longest blob name Azure accepts. */
export const MAX_BLOB_NAME = 1024;

/** `runs/` + `job-1` -> `runs/job-1/`; validates both parts. */
export function jobPrefix(outputPrefix: string | undefined, jobId: string): string {
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(jobId)) {
    throw new LakeInferError('InvalidName', `jobId must be 1-100 characters of A-Z a-z 0-9 - _, got '${jobId}'`, { target: 'jobId' });
  }
  let p = outputPrefix ?? '';
  if (p !== '') {
    const segs = p.split('/').filter((s) => s !== '');
    if (segs.some((s) => s === '.' || s === '..' || s.includes('\\'))) {
      throw new LakeInferError('InvalidName', `output.prefix must not contain '.', '..' or '\\' segments, got '${outputPrefix}'`, {
        target: 'output.prefix',
      });
    }
    p = segs.length === 0 ? '' : `${segs.join('/')}/`;
  }
  return `${p}${jobId}/`;
}

function escapeSegment(seg: string): string {
  if (seg === '') return '%2F'; // an empty segment ("a//b" or a leading "/") stays distinct but harmless
  if (seg === '.') return '%2E';
  if (seg === '..') return '%2E%2E';
  // '%' first so the mapping stays one-to-one; backslash and control characters could be read as separators.
  return seg.replace(/%/g, '%25').replace(/\\/g, '%5C').replace(/[\u0000-\u001f\u007f]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`);
}

/**
 * Maps an input blob name to a relative output name that can never leave the job prefix:
 * no '.', '..' or empty segments, no backslashes, no control characters. One-to-one for names
 * that fit; names too long for Azure keep a readable head and a hash of the whole name.
 */
export function safeRelativeName(inputName: string, maxLength = 900): string {
  if (inputName.length === 0) throw new LakeInferError('InvalidName', 'blob name is empty', { target: 'name' });
  const escaped = inputName.split('/').map(escapeSegment).join('/');
  if (escaped.length <= maxLength) return escaped;
  const hash = createHash('sha256').update(inputName).digest('hex').slice(0, 16);
  let head = escaped.slice(0, maxLength - 18);
  // Never cut inside an escape sequence or a surrogate pair, and never end on '/' or '.'.
  head = head.replace(/%[0-9A-F]?$/, '').replace(/[\uD800-\uDBFF]$/, '').replace(/[/.]+$/, '');
  return `${head}~${hash}`;
}

/** `<jobPrefix><folder>/<safe input name><suffix>`, guaranteed under jobPrefix and within Azure's limit. */
export function outputBlobName(prefix: string, folder: string, inputName: string, suffix: string): string {
  const budget = MAX_BLOB_NAME - prefix.length - folder.length - 1 - suffix.length - 1;
  if (budget < 32) throw new LakeInferError('InvalidName', `output prefix '${prefix}' is too long`, { target: 'output.prefix' });
  const name = `${prefix}${folder}/${safeRelativeName(inputName, budget)}${suffix}`;
  if (!name.startsWith(prefix)) throw new LakeInferError('InvalidName', `output name escaped its prefix: ${name}`);
  return name;
}

const CONTENT_TYPES: Record<string, string> = {
  '.json': 'application/json; charset=utf-8',
  '.jsonl': 'application/x-ndjson; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.txt': 'text/plain; charset=utf-8',
  '.onnx': 'application/octet-stream',
};

export function contentTypeFor(name: string): string {
  const dot = name.lastIndexOf('.');
  const ext = dot >= 0 ? name.slice(dot).toLowerCase() : '';
  return CONTENT_TYPES[ext] ?? 'application/octet-stream';
}

/**
 * Blob names with '.' or '..' segments cannot be addressed: URL resolution would turn
 * 'a/../b.jpg' into 'b.jpg' and read or write a different blob. Refuse them before any request.
 */
export function assertAddressable(name: string): void {
  if (name.split('/').some((s) => s === '.' || s === '..')) {
    throw new LakeInferError('InvalidName', `blob name '${name}' has '.' or '..' segments and cannot be addressed safely`, { target: name });
  }
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Characters Azure Storage names must not carry: C0 and C1 controls (a listing would be
 * unreadable), Unicode noncharacters (U+FFFE makes the whole container answer 500 to every
 * listing on Azurite, and Azure refuses them), and lone surrogates (no UTF-8 form).
 */
export function nameProblem(p: string): string | undefined {
  if (CONTROL.test(p)) return 'must not contain control characters';
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = p.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return 'must not contain lone surrogates (text that is not valid Unicode)';
      const cp = ((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000;
      if ((cp & 0xfffe) === 0xfffe) return `must not contain the noncharacter U+${cp.toString(16).toUpperCase()}`;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return 'must not contain lone surrogates (text that is not valid Unicode)';
    else if ((c >= 0xfdd0 && c <= 0xfdef) || c === 0xfffe || c === 0xffff) return `must not contain the noncharacter U+${c.toString(16).toUpperCase()}`;
  }
  return undefined;
}
