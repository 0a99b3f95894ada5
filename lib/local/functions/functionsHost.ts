/**
 * Stands in for the Functions host's worker API (`@azure/functions-core`) so that the very same
 * function files register here as they do under `func start` or on Azure: every app.http /
 * df.app.orchestration / df.app.activity call lands in `registry`, with its binding metadata and
 * handler. Must be installed before any function file is loaded (loadFunctions does both).
 */
import { readdirSync } from 'node:fs';
import Module from 'node:module';
import { join } from 'node:path';

export interface BindingMetadata {
  type: string;
  direction?: 'in' | 'out';
  route?: string;
  methods?: string[];
  authLevel?: string;
  [key: string]: unknown;
}

export interface RegisteredFunction {
  name: string;
  bindings: Record<string, BindingMetadata>;
  handler: (...args: unknown[]) => unknown;
  trigger: BindingMetadata & { name: string };
}

export const registry = new Map<string, RegisteredFunction>();

const coreApi = {
  version: '4.0.0',
  hostVersion: 'lakeinfer-local-host',
  setProgrammingModel(): void {},
  getProgrammingModel(): undefined {
    return undefined;
  },
  registerFunction(metadata: { name: string; bindings: Record<string, BindingMetadata> }, handler: (...args: unknown[]) => unknown): { dispose(): void } {
    const entry = Object.entries(metadata.bindings).find(([, b]) => /trigger$/i.test(b.type));
    if (!entry) throw new Error(`function ${metadata.name} has no trigger binding`);
    registry.set(metadata.name, { name: metadata.name, bindings: metadata.bindings, handler, trigger: { ...entry[1], name: entry[0] } });
    return { dispose: () => registry.delete(metadata.name) };
  },
  registerHook(): { dispose(): void } {
    return { dispose: () => undefined };
  },
  log(): void {},
};

let installed = false;

/** Makes require('@azure/functions-core') resolve to this host's API. */
export function installFunctionsCore(): void {
  if (installed) return;
  installed = true;
  const shim = join(__dirname, 'functionsCoreModule.js');
  const M = Module as unknown as { _resolveFilename: (request: string, ...rest: unknown[]) => string };
  const original = M._resolveFilename;
  M._resolveFilename = function (request: string, ...rest: unknown[]): string {
    if (request === '@azure/functions-core') return shim;
    return original.call(this, request, ...rest);
  };
}

export function functionsCoreApi(): typeof coreApi {
  return coreApi;
}

/** Loads the function files (dist/functions/*.js) with the host API in place. */
export function loadFunctions(files: readonly string[]): Map<string, RegisteredFunction> {
  installFunctionsCore();
  // Function files are found at run time, as the host finds them: require by path.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  for (const f of files) require(f);
  return registry;
}

/** dist/functions/*.js, as package.json's "main" glob names them. */
export function defaultFunctionFiles(): string[] {
  const dir = join(__dirname, '..', '..', '..', 'functions');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.js'))
    .sort()
    .map((f) => join(dir, f));
}
