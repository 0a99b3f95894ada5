import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Worker } from 'node:worker_threads';
import { analyzeImage, ModelCache } from '../../lib/model';
import { DEFAULT_LIMITS } from '../../lib/model/preprocess';
import { writeBlob, writeJson } from '../../lib/storage';
import { LakeInferError } from '../../lib/util/errors';
import { Canvas } from '../helpers/images';
import { classifierFixture, classifierSpec, yolov8SegFixture, yolov8SegSpec } from '../helpers/models';
import { uniqueContainer, useAzurite } from '../helpers/azurite';

const az = useAzurite();
const cache = new ModelCache({ workers: 1, intraOpThreads: 1, batchSize: 2 });
after(() => cache.close());

function isErr(code: string, re?: RegExp) {
  return (e: unknown) => e instanceof LakeInferError && e.code === code && (re === undefined || re.test(e.message));
}

test('models load lazily from the models container, once, and reload when model.onnx changes', async () => {
  const models = az.service.getContainerClient(uniqueContainer('models'));
  await models.create();
  await writeBlob(models, 'm1/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'm1/model.json', { adapter: 'classification', input: classifierSpec().input, labels: ['red', 'green', 'blue', 'gray'] });

  const [a, b] = await Promise.all([cache.get(models, 'm1'), cache.get(models, 'm1')]);
  assert.equal(a, b, 'concurrent first uses share one load');
  assert.equal(await cache.get(models, 'm1'), a, 'cached while the ETag is unchanged');
  assert.equal(a.spec.adapter, 'classification');
  const red = await new Canvas(8, 8, [255, 0, 0]).png();
  assert.equal((await analyzeImage(red, a, { topK: 1 }, DEFAULT_LIMITS)).classes![0]!.label, 'red');

  // A new upload (new ETag) is picked up.
  await writeBlob(models, 'm1/model.onnx', Buffer.from(yolov8SegFixture()));
  await writeJson(models, 'm1/model.json', yolov8SegSpec());
  const c = await cache.get(models, 'm1');
  assert.notEqual(c, a);
  assert.notEqual(c.etag, a.etag);
  assert.equal(c.spec.adapter, 'yolov8-seg');
  const white = await new Canvas(128, 64, [255, 255, 255]).png();
  assert.equal((await analyzeImage(white, c, {}, DEFAULT_LIMITS)).detections.length, 3);
});

test('missing or malformed models are clear errors', async () => {
  const models = az.service.getContainerClient(uniqueContainer('models'));
  await models.create();
  await assert.rejects(cache.get(models, 'nope'), isErr('ModelNotFound', /no nope\/model.onnx/));
  await assert.rejects(cache.get(models, '../etc'), isErr('InvalidRequest', /model.name/));
  await writeBlob(models, 'nojson/model.onnx', Buffer.from(classifierFixture()));
  await assert.rejects(cache.get(models, 'nojson'), isErr('ModelInvalid', /no nojson\/model.json/));
  await writeBlob(models, 'badjson/model.onnx', Buffer.from(classifierFixture()));
  await writeBlob(models, 'badjson/model.json', '{ not json');
  await assert.rejects(cache.get(models, 'badjson'), isErr('ModelInvalid', /not valid JSON/));
  await writeBlob(models, 'badfield/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'badfield/model.json', { adapter: 'classification', input: { width: 8, height: 8, resize: 'squash' } });
  await assert.rejects(cache.get(models, 'badfield'), (e: unknown) => e instanceof LakeInferError && e.code === 'ModelInvalid' && e.target === 'input.resize');
  await writeBlob(models, 'notonnx/model.onnx', Buffer.from('this is not an onnx file'));
  await writeJson(models, 'notonnx/model.json', classifierSpec());
  await assert.rejects(cache.get(models, 'notonnx'), isErr('ModelInvalid', /could not load the ONNX model/));
  // A failed load is not cached: fixing the model makes it load.
  await writeBlob(models, 'notonnx/model.onnx', Buffer.from(classifierFixture()));
  assert.equal((await cache.get(models, 'notonnx')).spec.adapter, 'classification');
});

test('a crashed inference worker is replaced and inference goes on', async () => {
  const models = az.service.getContainerClient(uniqueContainer('models'));
  await models.create();
  await writeBlob(models, 'c/model.onnx', Buffer.from(classifierFixture()));
  await writeJson(models, 'c/model.json', classifierSpec());
  const m = await cache.get(models, 'c');
  const slots = (m.engine as unknown as { slots: { worker: Worker }[] }).slots;
  const first = slots[0]!.worker;
  await first.terminate();
  const blue = await new Canvas(8, 8, [0, 0, 255]).png();
  let label: string | undefined;
  for (let i = 0; i < 50 && label === undefined; i++) {
    try {
      label = (await analyzeImage(blue, m, { topK: 1 }, DEFAULT_LIMITS)).classes![0]!.label;
    } catch (e) {
      assert.ok(e instanceof LakeInferError && e.retryable, `only retryable errors while the worker restarts: ${String(e)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  assert.equal(label, 'blue');
  assert.notEqual(slots[0]!.worker, first);
});
