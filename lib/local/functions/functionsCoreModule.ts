// The module that require('@azure/functions-core') resolves to under the local host.
import { functionsCoreApi } from './functionsHost';

export = functionsCoreApi();
