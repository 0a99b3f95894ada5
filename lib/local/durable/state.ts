/**
 * Orchestration state of the local host, kept in (Azurite) blob storage: one JSON blob per
 * instance, written after every orchestration step, read back when the host restarts.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { listAllBlobs, readJson, writeJson } from '../../storage';
import type { InstanceRecord } from './engine';

export class InstanceStore {
  private readonly chains = new Map<string, Promise<unknown>>();

  constructor(private readonly container: ContainerClient) {}

  async init(): Promise<void> {
    await this.container.createIfNotExists();
  }

  /** Saves in call order per instance. */
  save(rec: InstanceRecord): Promise<void> {
    const snapshot = JSON.stringify(rec);
    const prev = this.chains.get(rec.instanceId) ?? Promise.resolve();
    const next = prev.then(() => writeJson(this.container, `${encodeURIComponent(rec.instanceId)}.json`, JSON.parse(snapshot)));
    this.chains.set(rec.instanceId, next.catch(() => undefined));
    return next.then(() => undefined);
  }

  /** Deletes an instance's record (after what was queued for it is written). */
  async delete(instanceId: string): Promise<void> {
    await this.chains.get(instanceId);
    this.chains.delete(instanceId);
    await this.container.getBlobClient(`${encodeURIComponent(instanceId)}.json`).deleteIfExists();
  }

  async loadAll(): Promise<InstanceRecord[]> {
    const blobs = await listAllBlobs(this.container, { extensions: ['.json'] });
    const out: InstanceRecord[] = [];
    for (const b of blobs) {
      const rec = await readJson<InstanceRecord>(this.container, b.name);
      if (rec) out.push(rec);
    }
    return out;
  }
}
