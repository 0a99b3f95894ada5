import { defaultFunctionFiles, loadFunctions, type RegisteredFunction } from '../../lib/local/functions/functionsHost';

/** The real function files, registered as the Functions host would register them. */
export function registeredFunctions(): Map<string, RegisteredFunction> {
  return loadFunctions(defaultFunctionFiles());
}
