/**
 * What the local host reads from host.json, as the Functions host reads it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** host.json at the project root (dist/lib/local/host -> project root). */
export function defaultHostJsonPath(): string {
  return join(__dirname, '..', '..', '..', '..', 'host.json');
}

/**
 * A .NET TimeSpan as host.json writes it ("hh:mm:ss", "d.hh:mm:ss", fractions of a second
 * allowed) in milliseconds; "-1" (no limit) is undefined.
 */
export function parseTimeSpan(value: string): number | undefined {
  if (value.trim() === '-1') return undefined;
  const m = /^\s*(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?\s*$/.exec(value);
  if (!m) throw new Error(`'${value}' is not a time span (hh:mm:ss or d.hh:mm:ss)`);
  const [, d, h, min, s, frac] = m;
  if (Number(h) > 23 || Number(min) > 59 || Number(s) > 59) throw new Error(`'${value}' is not a time span: hours 0-23, minutes and seconds 0-59`);
  return ((Number(d ?? 0) * 24 + Number(h)) * 60 + Number(min)) * 60_000 + Number(s) * 1000 + Math.round(Number(`0.${frac ?? '0'}`) * 1000);
}

/** A duration in milliseconds as a TimeSpan string (hh:mm:ss, with milliseconds when there are some). */
export function formatTimeSpan(ms: number): string {
  const whole = Math.floor(ms / 1000);
  const pad = (n: number): string => String(n).padStart(2, '0');
  const days = Math.floor(whole / 86_400);
  const text = `${pad(Math.floor(whole / 3600) % 24)}:${pad(Math.floor(whole / 60) % 60)}:${pad(whole % 60)}`;
  const frac = Math.round(ms - whole * 1000);
  return `${days > 0 ? `${days}.` : ''}${text}${frac > 0 ? `.${String(frac).padStart(3, '0')}0000` : ''}`;
}

/** Flex Consumption's functionTimeout when host.json sets none. */
export const DEFAULT_FUNCTION_TIMEOUT_MS = 30 * 60_000;

/** host.json's functionTimeout in milliseconds (the plan's default when unset); undefined for "-1" (no limit). */
export function functionTimeoutMs(path = defaultHostJsonPath()): number | undefined {
  const host = JSON.parse(readFileSync(path, 'utf8')) as { functionTimeout?: string };
  return host.functionTimeout === undefined ? DEFAULT_FUNCTION_TIMEOUT_MS : parseTimeSpan(host.functionTimeout);
}
