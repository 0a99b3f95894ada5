import type { BlobServiceClient } from '@azure/storage-blob';
import type { Settings } from '../util/config';
import { ensureErrorType, LakeInferError } from '../util/errors';

export interface HealthReport {
  ok: boolean;
  checks: { name: string; ok: boolean; detail?: string }[];
}

/** Settings valid, data account reachable, models container present. */
export async function checkHealth(load: () => Settings, connect: (s: Settings) => Promise<BlobServiceClient>): Promise<HealthReport> {
  const checks: HealthReport['checks'] = [];
  let s: Settings;
  try {
    s = load();
    checks.push({ name: 'settings', ok: true });
  } catch (err) {
    const e = ensureErrorType(err);
    checks.push({ name: 'settings', ok: false, detail: e.message });
    return { ok: false, checks };
  }
  try {
    const svc = await connect(s);
    const exists = await svc.getContainerClient(s.modelsContainer).exists();
    checks.push({ name: 'data storage', ok: true });
    checks.push(exists ? { name: 'models container', ok: true } : { name: 'models container', ok: false, detail: `container '${s.modelsContainer}' (MODELS_CONTAINER) does not exist` });
  } catch (err) {
    const e = ensureErrorType(err);
    checks.push({ name: 'data storage', ok: false, detail: e instanceof LakeInferError ? e.message : e.message.split('\n')[0] });
  }
  return { ok: checks.every((c) => c.ok), checks };
}
