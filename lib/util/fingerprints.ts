/**
 * A set of strings kept as 64-bit fingerprints (the first 8 bytes of their SHA-1) in an
 * open-addressing table: 16 bytes per entry at most, whatever the strings' length, so 10 million
 * manifest entries are deduplicated in ~160 MB instead of holding the names. Two different
 * strings share a fingerprint with probability n^2 / 2^65 (about 3 in a million for 10 million
 * entries); the second would be taken for a repeat.
 */
import { createHash } from 'node:crypto';

export class FingerprintSet {
  private hi = new Uint32Array(1024);
  private lo = new Uint32Array(1024);
  private used = new Uint8Array(1024);
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds `s`; false when it (or a string of the same fingerprint) was there already. */
  add(s: string): boolean {
    const d = createHash('sha1').update(s).digest();
    const hi = d.readUInt32BE(0);
    const lo = d.readUInt32BE(4);
    if ((this.count + 1) * 2 > this.used.length) this.grow();
    return this.insert(hi, lo);
  }

  private insert(hi: number, lo: number): boolean {
    const mask = this.used.length - 1;
    for (let i = lo & mask; ; i = (i + 1) & mask) {
      if (!this.used[i]) {
        this.used[i] = 1;
        this.hi[i] = hi;
        this.lo[i] = lo;
        this.count++;
        return true;
      }
      if (this.hi[i] === hi && this.lo[i] === lo) return false;
    }
  }

  private grow(): void {
    const { hi, lo, used } = this;
    const n = used.length * 2;
    this.hi = new Uint32Array(n);
    this.lo = new Uint32Array(n);
    this.used = new Uint8Array(n);
    this.count = 0;
    for (let i = 0; i < used.length; i++) if (used[i]) this.insert(hi[i]!, lo[i]!);
  }
}
