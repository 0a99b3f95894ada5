/**
 * `lakeinfer host --data DIR` as a user runs it (a child process): the folder is created, the
 * printed connection string works, the ports stay the same across restarts, and a second host on
 * the same folder is refused naming the first (never stops a live emulator).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';

const cliJs = join(__dirname, '..', '..', 'lib', 'cli', 'cli.js');

interface Started {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

function startHost(args: string[]): Started {
  const child = spawn(process.execPath, [cliJs, 'host', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout!.on('data', (c: Buffer) => (text += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (text += c.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, out: () => text, exited };
}

async function ready(h: Started): Promise<string> {
  for (let i = 0; i < 600; i++) {
    if (/Ctrl\+C to stop/.test(h.out())) return h.out();
    if (h.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`host did not start:\n${h.out()}`);
}

async function stop(h: Started): Promise<void> {
  if (h.child.exitCode === null) h.child.kill('SIGINT');
  await h.exited;
}

test('host --data: folder created, a working connection string, the same ports after a restart, one host per folder', { timeout: 180_000 }, async () => {
  const data = join(await mkdtemp(join(tmpdir(), 'lakeinfer-data-')), 'not', 'there', 'yet');
  const first = startHost(['--data', data, '--port', '0', '--blob-port', '0']);
  let second: Started | undefined;
  let third: Started | undefined;
  try {
    const text = await ready(first);
    assert.ok(existsSync(data), 'the data folder was created');
    const cs = /export DATA_STORAGE='([^']+)'/.exec(text)?.[1];
    assert.ok(cs, text);
    assert.match(cs, /AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq\/K1SZFPTOtr\/KBHBeksoGMGw==/, "Azurite's public development key, printed in full");
    assert.match(text, /public development account/);
    const blobPort = Number(/BlobEndpoint=http:\/\/127\.0\.0\.1:(\d+)/.exec(cs)![1]);
    // Pasted as printed, it works.
    const c = BlobServiceClient.fromConnectionString(cs).getContainerClient('images');
    await c.createIfNotExists();
    await c.getBlockBlobClient('kept.txt').upload('kept', 4);

    // A second host on the same folder is refused at once, naming the first; the first keeps running.
    second = startHost(['--data', data, '--port', '0']);
    assert.equal(await second.exited, 2, second.out());
    assert.match(second.out(), new RegExp(`the data folder .* is in use by another lakeinfer host \\(pid ${first.child.pid}, API http://127\\.0\\.0\\.1:\\d+, blob port ${blobPort}`));
    assert.equal((await c.getBlobClient('kept.txt').downloadToBuffer()).toString(), 'kept', 'the first host still serves the folder');

    await stop(first);
    third = startHost(['--data', data, '--port', '0']);
    const again = await ready(third);
    assert.match(again, new RegExp(`BlobEndpoint=http://127\\.0\\.0\\.1:${blobPort}/`), 'the same blob port after a restart');
    assert.match(again, /saved in .*lakeinfer-host\.json/);
    assert.equal((await BlobServiceClient.fromConnectionString(cs).getContainerClient('images').getBlobClient('kept.txt').downloadToBuffer()).toString(), 'kept', 'the saved connection string still works');
  } finally {
    await stop(first);
    if (second) await stop(second);
    if (third) await stop(third);
  }
});
