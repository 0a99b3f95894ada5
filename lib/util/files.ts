/** Local file system helpers shared by the packager and the operator CLI. */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** Every regular file below `dir`, depth first (symbolic links are not followed). */
export async function* filesUnder(dir: string): AsyncGenerator<string> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* filesUnder(p);
    else if (e.isFile()) yield p;
  }
}
