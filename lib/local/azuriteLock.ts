/** The file in an Azurite data folder that names the process serving it (lib/local/azuriteProcess.ts). */
export const LOCK_FILE = 'lakeinfer-azurite.lock';
