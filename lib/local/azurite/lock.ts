/**
 * One emulator per data folder, ever. The host that starts an emulator on a folder takes the
 * folder's lock file first, created exclusively (two hosts started together: one wins), naming the
 * host's pid and, once it is up, the emulator's pid and ports:
 * - a lock whose host is alive (and is not this process): the folder is in use; the second host
 *   refuses to start, naming the first (never stops a live emulator);
 * - a lock whose host is dead but whose emulator lives: that emulator is saving on its way out (its
 *   host was killed); wait for it to exit, and stop it only if it never does;
 * - a lock naming only dead processes: stale, taken over.
 */
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** The file in an Azurite data folder that names the host and the emulator serving it. */
export const LOCK_FILE = 'lakeinfer-azurite.lock';

export interface FolderLock {
  hostPid: number;
  emulatorPid?: number;
  ports?: { blob: number; queue: number; table: number };
  /** The local host's API URL, when the host filled it in. */
  api?: string;
  startedAt: string;
}

export class FolderInUseError extends Error {
  constructor(readonly location: string, readonly holder: FolderLock) {
    const where = [holder.api ? `API ${holder.api}` : undefined, holder.ports ? `blob port ${holder.ports.blob}` : undefined].filter(Boolean).join(', ');
    super(`the data folder ${location} is in use by another lakeinfer host (pid ${holder.hostPid}${where ? `, ${where}` : ''}, since ${holder.startedAt}); stop that host first (Ctrl+C in its terminal, or kill ${holder.hostPid}), or start this one with another --data folder`);
    this.name = 'FolderInUseError';
  }
}

export function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function readLock(location: string): FolderLock | undefined {
  try {
    const v = JSON.parse(readFileSync(join(location, LOCK_FILE), 'utf8')) as Partial<FolderLock> & { pid?: number };
    // Locks written before the host was named carry the emulator's pid only.
    if (typeof v.hostPid !== 'number' && typeof v.pid === 'number') return { hostPid: 0, emulatorPid: v.pid, startedAt: String(v.startedAt ?? '') };
    return typeof v.hostPid === 'number' ? (v as FolderLock) : undefined;
  } catch {
    return undefined;
  }
}

/** Rewrites the lock (atomically: a reader never sees half of it). */
export function writeLock(location: string, lock: FolderLock): void {
  const tmp = join(location, `${LOCK_FILE}.${process.pid}.tmp`);
  writeFileSync(tmp, JSON.stringify(lock));
  renameSync(tmp, join(location, LOCK_FILE));
}

/** Removes the lock if it is still this host's. */
export function releaseLock(location: string, hostPid = process.pid): void {
  if (readLock(location)?.hostPid === hostPid) rmSync(join(location, LOCK_FILE), { force: true });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Takes the folder for this host. Throws FolderInUseError when a live host holds it; waits up to
 * `waitMs` for the emulator of a dead host to save and exit (then stops it).
 */
export async function acquireLock(location: string, log: (m: string) => void, waitMs = 60_000): Promise<void> {
  const file = join(location, LOCK_FILE);
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, JSON.stringify({ hostPid: process.pid, startedAt: new Date().toISOString() } satisfies FolderLock));
      closeSync(fd);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = readLock(location);
    if (!held) {
      // Being written by its creator right now (or unreadable and stale): look again shortly.
      await sleep(50);
      if (attempt >= 10) rmSync(file, { force: true });
      continue;
    }
    if (held.hostPid === process.pid) {
      // This host restarting its own emulator (it died alone).
      writeLock(location, { hostPid: process.pid, startedAt: held.startedAt });
      return;
    }
    if (alive(held.hostPid)) throw new FolderInUseError(location, held);
    if (alive(held.emulatorPid)) {
      log(`waiting for the storage emulator of a previous host (pid ${held.emulatorPid}) to save and exit`);
      const until = Date.now() + waitMs;
      while (Date.now() < until && alive(held.emulatorPid)) await sleep(100);
      if (alive(held.emulatorPid)) {
        log(`the previous storage emulator (pid ${held.emulatorPid}) did not exit in ${waitMs / 1000} s; stopping it`);
        process.kill(held.emulatorPid!, 'SIGTERM');
        for (let i = 0; i < 100 && alive(held.emulatorPid); i++) await sleep(100);
        if (alive(held.emulatorPid)) process.kill(held.emulatorPid!, 'SIGKILL');
      }
    }
    // Stale: only dead processes named. Remove it if it is still the same lock, then try again.
    if (JSON.stringify(readLock(location)) === JSON.stringify(held)) rmSync(file, { force: true });
  }
  throw new Error(`could not take the lock of the data folder ${location}`);
}
