/**
 * Data storage, by concern: clients, listing, names, blob I/O, plan files, server-side composition. Works on Blob accounts,
 * ADLS Gen2 accounts (through their Blob endpoint) and Azurite alike.
 */
export * from './clients';
export * from './listing';
export * from './names';
export * from './blobs';
export * from './plan';
export * from './compose';
export { mapLimit } from '../util/concurrency';
