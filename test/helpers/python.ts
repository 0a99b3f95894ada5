/**
 * Python readers (delta-rs's `deltalake`, pyarrow, DuckDB) for checks that must use a real
 * foreign reader. `.ci/run` installs them from .ci/requirements.txt; outside CI a missing module
 * skips the check with a message naming it, in CI (CI=true) it fails.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import type { TestContext } from 'node:test';

/** Whether python3 can import every module; when not, skips (or, in CI, fails) the test. */
export function needPython(t: TestContext, ...modules: string[]): boolean {
  const r = spawnSync('python3', ['-c', modules.map((m) => `import ${m}`).join('; ')], { encoding: 'utf8' });
  if (r.status === 0) return true;
  const what = `python3 with ${modules.join(', ')} (pip install -r .ci/requirements.txt)`;
  if (process.env['CI'] === 'true') throw new Error(`${what} is missing in CI: ${r.error?.message ?? r.stderr.trim().split('\n').pop()}`);
  t.skip(`needs ${what}`);
  return false;
}

/** Runs a Python script; its stdout parsed as JSON. */
export function python<T>(script: string, ...args: string[]): T {
  const out = execFileSync('python3', ['-c', script, ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return JSON.parse(out) as T;
}

/** Copies every blob under `prefix` into `dir` (as `lakeinfer results --out` does), for file readers. */
export async function downloadFolder(c: ContainerClient, prefix: string, dir: string): Promise<void> {
  for await (const b of c.listBlobsFlat({ prefix })) {
    const file = join(dir, b.name.slice(prefix.length));
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, await c.getBlobClient(b.name).downloadToBuffer());
  }
}

/** Reads a Delta table with delta-rs: its version, history and the rows at each version asked. */
export const DELTA_READ = `
import json, os, sys
from deltalake import DeltaTable
path = sys.argv[1]
dt = DeltaTable(path)
out = {"version": dt.version(), "history": [h.get("operation") for h in dt.history()], "versions": {}}
for v in range(dt.version() + 1):
    t = DeltaTable(path, version=v)
    tbl = t.to_pyarrow_table(columns=["image", "status"]) if hasattr(t, "to_pyarrow_table") else None
    rows = tbl.to_pylist() if tbl is not None else []
    out["versions"][str(v)] = sorted(r["image"] for r in rows)
schema = [f.name for f in dt.schema().fields]
out["schema"] = schema
print(json.dumps(out))
sys.stdout.flush()
# delta-rs's runtime can abort while the interpreter tears down ("terminate called without an
# active exception", seen under load): the answer is out, leave without the teardown.
os._exit(0)
`;

/**
 * Reads Delta tables with Spark and Delta Lake (pyspark + delta-spark, its jars from Maven Central
 * on the first run): for each table folder, its version, history, partition columns, and the images
 * at every version (with each job's row count at the latest). One Spark session for all the tables.
 */
export const SPARK_READ = `
import json, os, sys
from pyspark.sql import SparkSession
from delta import configure_spark_with_delta_pip
from delta.tables import DeltaTable
b = (SparkSession.builder.master("local[1]").appName("lakeinfer-test")
     .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
     .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
     .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
     .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
     .config("spark.sql.shuffle.partitions", "1"))
spark = configure_spark_with_delta_pip(b).getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
out = {}
for path in sys.argv[1:]:
    dt = DeltaTable.forPath(spark, path)
    hist = dt.history().select("version", "operation").orderBy("version").collect()
    versions = {}
    for h in hist:
        df = spark.read.format("delta").option("versionAsOf", h.version).load(path)
        versions[str(h.version)] = sorted(r.image for r in df.select("image").collect())
    latest = spark.read.format("delta").load(path)
    jobs = {r.job_id: r["count"] for r in latest.groupBy("job_id").count().collect()}
    detail = dt.detail().collect()[0]
    out[path] = {"version": hist[-1].version, "history": [h.operation for h in hist], "versions": versions, "jobs": jobs, "partitionColumns": list(detail.partitionColumns)}
print(json.dumps(out))
sys.stdout.flush()
spark.stop()
`;

/** Spark's reading of each table folder (see SPARK_READ). */
export interface SparkRead {
  version: number;
  history: string[];
  versions: Record<string, string[]>;
  jobs: Record<string, number>;
  partitionColumns: string[];
}
