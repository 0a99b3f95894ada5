/**
 * Orchestration state of the local host, kept in (Azurite) blob storage: one JSON blob per
 * instance, written after every orchestration step, read back when the host restarts.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { listAllBlobs, readJson, writeJson } from '../../storage';
import type { InstanceRecord } from './engine';

export class InstanceStore {
  private readonly chains = new Map<string, Promise<unknown>>();
  /** Bumped by fence(): a save or delete queued or retrying from before does not write. */
  private generation = 0;
  private abort = new AbortController();

  constructor(private readonly container: ContainerClient) {}

  async init(): Promise<void> {
    await this.container.createIfNotExists();
  }

  /**
   * The storage went away (the emulator died and comes back with its last saved state): saves and
   * deletes queued or retrying since must not reach the storage that comes back, where they would
   * record outcomes whose data was lost. They fail; later ones write again.
   */
  fence(): void {
    this.generation++;
    this.abort.abort(new Error('the instance store was fenced: the storage restarted'));
    this.abort = new AbortController();
    this.chains.clear();
  }

  /** Saves in call order per instance. */
  save(rec: InstanceRecord): Promise<void> {
    const snapshot = JSON.stringify(rec);
    const prev = this.chains.get(rec.instanceId) ?? Promise.resolve();
    const gen = this.generation;
    const abortSignal = this.abort.signal;
    const next = prev.then(() => {
      if (gen !== this.generation) throw new Error(`the save of ${rec.instanceId} was dropped: the storage restarted since`);
      return writeJson(this.container, `${encodeURIComponent(rec.instanceId)}.json`, JSON.parse(snapshot), { abortSignal });
    });
    this.chains.set(rec.instanceId, next.catch(() => undefined));
    return next.then(() => undefined);
  }

  /** Deletes an instance's record (after what was queued for it is written). */
  async delete(instanceId: string): Promise<void> {
    const gen = this.generation;
    const abortSignal = this.abort.signal;
    await this.chains.get(instanceId);
    if (gen !== this.generation) throw new Error(`the delete of ${instanceId} was dropped: the storage restarted since`);
    this.chains.delete(instanceId);
    await this.container.getBlobClient(`${encodeURIComponent(instanceId)}.json`).deleteIfExists({ abortSignal });
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
