/**
 * Manifest input read from a real Azurite: CSV (header or not, quoted fields, CRLF), JSONL and
 * Parquet (several row groups, read by ranges); names and blob URLs of the input container;
 * repeats dropped; filters applied; entries outside the container or with no valid name refused
 * with a count and examples. The fingerprint set deduplicates exactly on a large input.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ContainerClient } from '@azure/storage-blob';
import { LakeInferError } from '../../lib/util/errors';
import { FingerprintSet } from '../../lib/util/fingerprints';
import { csvRecords, entryName, manifestPages, type ManifestSpec, type ManifestStats } from '../../lib/storage/manifestInput';
import { writeBlob } from '../../lib/storage';
import { useAzurite } from '../helpers/azurite';

const az = useAzurite();
let input: ContainerClient;

before(async () => {
  await az.ready;
  input = az.service.getContainerClient('manifest-in');
  await input.create();
});

async function* chunks(...parts: string[]): AsyncGenerator<string> {
  yield* parts;
}

async function collect(m: ManifestSpec, body: string | Uint8Array, filters = {}): Promise<{ names: string[]; stats: ManifestStats }> {
  await writeBlob(input, m.blob, Buffer.from(body));
  const stats: ManifestStats = { entries: 0, planned: 0, duplicates: 0, filtered: 0, invalid: 0 };
  const names: string[] = [];
  for await (const page of manifestPages(input, input, m, filters, stats)) names.push(...page.items.map((b) => b.name));
  return { names, stats };
}

describe('manifest input', () => {
  test('CSV records: quotes, escaped quotes, commas and newlines inside quotes, CRLF, split across chunks', async () => {
    const recs: string[][] = [];
    for await (const r of csvRecords(chunks('name,size\r\n"a,b.jpg",1\r\n"say ""hi"".png",2\n"two\nlines.jpg"', ',3\nplain.jpg,4'))) recs.push(r);
    assert.deepEqual(recs, [['name', 'size'], ['a,b.jpg', '1'], ['say "hi".png', '2'], ['two\nlines.jpg', '3'], ['plain.jpg', '4']]);
  });

  test('a CSV with a header, by column name; blob URLs of the container become names; repeats are dropped; filters apply', async () => {
    const url = (n: string) => `${input.url}/${n.split('/').map(encodeURIComponent).join('/')}?sv=2024&sig=x`;
    const csv = ['id,path', `1,a/1.jpg`, `2,${url('a/2 two.jpg')}`, '3,a/1.jpg', '4,b/3.jpg', '5,a/notes.txt', ''].join('\n');
    const { names, stats } = await collect({ blob: 'm/list.csv', column: 'path' }, csv, { prefix: 'a/', extensions: ['.jpg'] });
    assert.deepEqual(names, ['a/1.jpg', 'a/2 two.jpg']);
    assert.deepEqual(stats, { entries: 5, planned: 2, duplicates: 1, filtered: 2, invalid: 0 });
  });

  test('a CSV without a header (first column), JSONL of strings and objects', async () => {
    assert.deepEqual((await collect({ blob: 'm/plain.csv' }, 'x/1.png\nx/2.png\n')).names, ['x/1.png', 'x/2.png']);
    assert.deepEqual((await collect({ blob: 'm/auto.csv' }, 'name\nx/1.png\n')).names, ['x/1.png'], "a first cell 'name' is a header");
    const jl = ['"j/1.png"', '{"name":"j/2.png","label":3}', '', '{"name":"j/1.png"}'].join('\n');
    const { names, stats } = await collect({ blob: 'm/list.jsonl' }, jl);
    assert.deepEqual(names, ['j/1.png', 'j/2.png']);
    assert.equal(stats.duplicates, 1);
    assert.deepEqual((await collect({ blob: 'm/paths.ndjson', column: 'path' }, '{"path":"j/9.png"}\n')).names, ['j/9.png']);
  });

  test('a Parquet manifest with several row groups is read a row group at a time', async () => {
    const { parquetWriteBuffer } = (await import('hyparquet-writer')) as unknown as { parquetWriteBuffer(o: { columnData: { name: string; type: string; data: unknown[] }[]; rowGroupSize: number }): ArrayBuffer };
    const data = Array.from({ length: 2500 }, (_, i) => `p/${String(i).padStart(5, '0')}.jpg`);
    const buf = parquetWriteBuffer({ columnData: [{ name: 'id', type: 'INT32', data: data.map((_, i) => i) }, { name: 'name', type: 'STRING', data }], rowGroupSize: 1000 });
    const { names, stats } = await collect({ blob: 'm/list.parquet' }, new Uint8Array(buf));
    assert.deepEqual(names, data);
    assert.equal(stats.planned, 2500);
    await assert.rejects(collect({ blob: 'm/list2.parquet', column: 'path' }, new Uint8Array(buf)), (e: LakeInferError) => e.code === 'ManifestInvalid' && /no column 'path' \(its columns: id, name\)/.test(e.message));
  });

  test('entries outside the container, or naming no valid blob, fail the plan with a count and examples', async () => {
    const other = input.url.replace('/manifest-in', '/elsewhere');
    const csv = ['a/ok.jpg', `${other}/x.jpg`, 'https://evil.example/manifest-in/y.jpg', 'a/bad\u0001.jpg', 'a/\uFFFE.jpg', 'a/folder/'].join('\n');
    await assert.rejects(collect({ blob: 'm/bad.csv' }, csv), (e: LakeInferError) => {
      assert.equal(e.code, 'ManifestInvalid');
      assert.match(e.message, /2 of 6 entries name blobs outside container 'manifest-in' of this account \(e\.g\. .*\/elsewhere\/x\.jpg, https:\/\/evil\.example\/manifest-in\/y\.jpg\)/);
      assert.match(e.message, /3 entries name no valid blob .*control characters.*noncharacter U\+FFFE.*names a folder/);
      return true;
    });
    assert.deepEqual(entryName(input, `${input.url}/dir/a%20b.jpg`), { name: 'dir/a b.jpg' });
    assert.ok('outside' in entryName(input, `${input.url}x/a.jpg`), 'a container whose name only starts with ours is outside');
  });

  test('a missing manifest is a clear storage error naming it', async () => {
    const stats: ManifestStats = { entries: 0, planned: 0, duplicates: 0, filtered: 0, invalid: 0 };
    await assert.rejects(async () => {
      for await (const _ of manifestPages(input, input, { blob: 'm/none.csv' }, {}, stats)) void _;
    }, (e: LakeInferError) => /m\/none\.csv/.test(e.message) && e.code === 'BlobNotFound');
  });

  test('the fingerprint set: 300,000 distinct names and their repeats, exactly', () => {
    const s = new FingerprintSet();
    for (let i = 0; i < 300_000; i++) assert.equal(s.add(`folder/${i}.jpg`), true);
    for (let i = 0; i < 300_000; i += 7) assert.equal(s.add(`folder/${i}.jpg`), false);
    assert.equal(s.size, 300_000);
  });
});
