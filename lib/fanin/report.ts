/**
 * report.html: one self-contained page per job (inline styles and SVG charts, no scripts, no
 * network; images are relative links to the job's overlays): status, counts, cost, a grid of
 * sampled thumbnails with their masks and boxes, failures, stage split, throughput over time,
 * latency histogram, model and parameters. Its size is bounded whatever the job size.
 */
import type { Manifest } from './manifest';
import { MAX_SAMPLES, type ImageSample, type VideoStats } from '../partition/parts';

/** An image shown in the report (chosen by its partition). */
export type ReportSample = ImageSample;

export interface ReportFailure {
  blob: string;
  /** A video frame's index, when the failure is one frame's. */
  frame?: number;
  stage: string;
  code: string;
  message: string;
}

export interface ReportData {
  manifest: Manifest;
  samples: ReportSample[];
  failures: ReportFailure[];
  failuresTotal: number;
  /** Partitions as [seconds from job start at which they ended, images]. */
  partitionEnds: [number, number][];
  /** The job's videos (at most 200): frames, failures, detections per second. */
  videos?: Record<string, VideoStats>;
}

/** Videos shown in the report, and seconds of timeline per video (longer videos are binned). */
export const MAX_REPORT_VIDEOS = 50;
const MAX_TIMELINE_BARS = 60;

/** Detections per frame over the video's time, in at most MAX_TIMELINE_BARS bins of whole seconds. */
export function videoTimeline(v: VideoStats): { values: number[]; labels: string[] } {
  const secs = Object.keys(v.framesBySecond).map(Number);
  const last = secs.length ? Math.max(...secs) : 0;
  const per = Math.max(1, Math.ceil((last + 1) / MAX_TIMELINE_BARS));
  const values: number[] = [];
  const labels: string[] = [];
  for (let s = 0; s <= last; s += per) {
    let det = 0;
    let fr = 0;
    for (let k = s; k < s + per; k++) {
      det += v.bySecond[String(k)] ?? 0;
      fr += v.framesBySecond[String(k)] ?? 0;
    }
    values.push(fr === 0 ? 0 : Math.round((det / fr) * 100) / 100);
    labels.push(per === 1 ? `${s}s` : `${s}-${s + per - 1}s`);
  }
  return { values, labels };
}

export const MAX_THUMBNAILS = MAX_SAMPLES;
export const MAX_FAILURE_ROWS = 500;

function esc(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function href(rel: string): string {
  return rel.split('/').map(encodeURIComponent).join('/');
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function barChart(values: number[], labels: string[], w = 520, h = 180, unit = ''): string {
  const max = Math.max(1, ...values);
  const bw = (w - 40) / Math.max(1, values.length);
  const bars = values
    .map((v, i) => {
      const bh = ((h - 40) * v) / max;
      const x = 30 + i * bw;
      return `<rect x="${(x + 2).toFixed(1)}" y="${(h - 20 - bh).toFixed(1)}" width="${Math.max(1, bw - 4).toFixed(1)}" height="${bh.toFixed(1)}" fill="#3b82f6"><title>${esc(labels[i])}: ${fmt(v)}${unit}</title></rect>` +
        `<text x="${(x + bw / 2).toFixed(1)}" y="${h - 6}" font-size="9" text-anchor="middle" fill="#555">${esc(labels[i])}</text>` +
        (v > 0 ? `<text x="${(x + bw / 2).toFixed(1)}" y="${(h - 24 - bh).toFixed(1)}" font-size="9" text-anchor="middle" fill="#222">${fmt(v)}</text>` : '');
    })
    .join('');
  return `<svg viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img">${bars}<line x1="28" y1="${h - 20}" x2="${w - 8}" y2="${h - 20}" stroke="#999"/></svg>`;
}

function lineChart(points: [number, number][], w = 520, h = 180, xUnit = 's', yUnit = 'images/s'): string {
  if (points.length === 0) return '<p class="muted">no data</p>';
  const maxX = Math.max(1e-9, ...points.map((p) => p[0]));
  const maxY = Math.max(1e-9, ...points.map((p) => p[1]));
  const sx = (x: number): number => 40 + ((w - 50) * x) / maxX;
  const sy = (y: number): number => h - 24 - ((h - 40) * y) / maxY;
  const path = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' ');
  return (
    `<svg viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img">` +
    `<line x1="40" y1="${h - 24}" x2="${w - 8}" y2="${h - 24}" stroke="#999"/><line x1="40" y1="12" x2="40" y2="${h - 24}" stroke="#999"/>` +
    `<path d="${path}" fill="none" stroke="#10b981" stroke-width="2"/>` +
    `<text x="44" y="16" font-size="10" fill="#555">${fmt(maxY, 1)} ${yUnit}</text>` +
    `<text x="${w - 8}" y="${h - 8}" font-size="10" text-anchor="end" fill="#555">${fmt(maxX, 1)} ${xUnit}</text>` +
    `<text x="40" y="${h - 8}" font-size="10" fill="#555">0</text></svg>`
  );
}

/** Images per second over time, in at most `buckets` buckets, from when partitions ended. */
export function throughput(ends: [number, number][], buckets = 40): [number, number][] {
  if (ends.length === 0) return [];
  const span = Math.max(1e-3, ...ends.map((e) => e[0]));
  const n = Math.min(buckets, Math.max(1, ends.length));
  const width = span / n;
  const counts = new Array<number>(n).fill(0);
  for (const [t, images] of ends) counts[Math.min(n - 1, Math.floor(t / width))]! += images;
  return counts.map((c, i) => [(i + 1) * width, c / width]);
}

function videoSection(videos: Record<string, VideoStats> | undefined, annotated: Record<string, string> = {}, samples: readonly ReportSample[] = []): string {
  const all = Object.entries(videos ?? {});
  if (all.length === 0) return '';
  const rows = all
    .slice(0, MAX_REPORT_VIDEOS)
    .map(([name, v]) => {
      const t = videoTimeline(v);
      const player = annotated[name] ? `<video controls preload="metadata" width="480" src="${esc(href(annotated[name]))}"></video><p class="muted"><a href="${esc(href(annotated[name]))}">annotated video</a></p>` : '';
      const frames = samples
        .filter((s) => s.name.startsWith(`${name}#frame=`) && s.overlay)
        .slice(0, 4)
        .map((s) => `<figure><a href="${esc(href(s.overlay!))}"><img src="${esc(href(s.overlay!))}" alt="${esc(s.name)}" loading="lazy" width="200"></a><figcaption>${esc(s.name.slice(name.length + 1))} · ${s.detections} detections</figcaption></figure>`)
        .join('');
      return `<div class="video"><h3>${esc(name)}</h3><p class="muted">${fmt(v.frames)} frames inferred, ${fmt(v.failed)} failed, ${fmt(v.detections)} detections; detections per frame over the video's time:</p>${barChart(t.values, t.labels)}${player}${frames ? `<div class="grid">${frames}</div>` : ''}</div>`;
    })
    .join('');
  return `<section id="videos"><h2>Videos (${fmt(all.length)})</h2>${rows}${all.length > MAX_REPORT_VIDEOS ? `<p class="muted">first ${MAX_REPORT_VIDEOS} shown</p>` : ''}</section>`;
}

/** Detections by label (or a classifier's top classes) and the distribution of their scores. */
function labelSection(m: ReportData['manifest']): string {
  const l = m.labels;
  if (!l || l.top.length === 0) return '';
  const shown = l.top.slice(0, 20);
  const classes = l.kind === 'classes';
  const rows = l.top
    .slice(0, 50)
    .map((x) => `<tr><td>${esc(x.label)}</td><td>${fmt(x.count)}</td><td>${x.meanScore.toFixed(3)}</td></tr>`)
    .join('');
  const bins = l.scoreHistogram.map((_, i) => `${(i / 10).toFixed(1)}-${((i + 1) / 10).toFixed(1)}`);
  return (
    `<section id="labels"><h2>${classes ? 'Top classes (the top class of each image)' : 'Detections by label'}</h2>` +
    `<div class="charts"><div>${barChart(shown.map((x) => x.count), shown.map((x) => x.label))}</div>` +
    `<div><h2>${classes ? 'Top-class scores' : 'Detection scores'}</h2>${barChart(l.scoreHistogram, bins)}</div></div>` +
    `<table id="label-table"><thead><tr><th>${classes ? 'class' : 'label'}</th><th>${classes ? 'images' : 'detections'}</th><th>mean score</th></tr></thead><tbody>${rows}</tbody></table>` +
    `${l.top.length > 50 ? `<p class="muted">first 50 of ${fmt(l.top.length)} labels; all in _manifest.json</p>` : ''}</section>`
  );
}

/** A continuous job: seconds from a blob landing to its result. */
function landedSection(m: ReportData['manifest']): string {
  const h = m.landedLatency;
  if (!h || h.counts.every((c) => c === 0)) return '';
  const labels = h.boundsS.map((b, i) => (b < 0 ? `>${h.boundsS[i - 1]}s` : `≤${b}s`));
  return `<section id="landed"><h2>From upload to result</h2><p class="muted">seconds from a blob landing in the input (its last-modified time, or the event's) to its result</p>${barChart(h.counts, labels)}</section>`;
}

export function renderReport(d: ReportData): string {
  const m = d.manifest;
  const c = m.counts;
  const ok = m.status === 'succeeded';
  const stageTotal = Object.values(m.stageMs).reduce((a, b) => a + b, 0) || 1;
  const stageColors = ['#6366f1', '#f59e0b', '#10b981', '#ef4444', '#0ea5e9'];
  const stages = Object.entries(m.stageMs)
    .map(([k, v], i) => `<div class="seg" style="width:${((100 * v) / stageTotal).toFixed(2)}%;background:${stageColors[i % stageColors.length]}" title="${esc(k)}: ${fmt(v / 1000, 1)} s"></div>`)
    .join('');
  const stageLegend = Object.entries(m.stageMs)
    .map(([k, v], i) => `<span><i style="background:${stageColors[i % stageColors.length]}"></i>${esc(k.replace(/Ms$/, ''))} ${fmt(v / 1000, 1)} s (${fmt((100 * v) / stageTotal, 0)}%)</span>`)
    .join('');
  const hist = m.latencyHistogram;
  const histLabels = hist.boundsMs.map((b, i) => (b < 0 ? `>${hist.boundsMs[i - 1]}` : `≤${b}`));
  const thumbs = d.samples
    .map((s) => {
      const img = s.overlay
        ? `<a href="${esc(href(s.overlay))}"><img src="${esc(href(s.overlay))}" alt="${esc(s.name)}" loading="lazy" width="${Math.min(240, s.width)}"></a>`
        : `<div class="noimg">no overlay</div>`;
      const what = s.top
        ? `<b>${esc(s.top.label)}</b> ${s.top.score.toFixed(3)}`
        : `<b>${s.detections}</b> ${s.detections === 1 ? 'detection' : 'detections'}${s.labels.length ? ` · ${esc([...new Set(s.labels)].slice(0, 4).join(', '))}` : ''}`;
      return `<figure>${img}<figcaption title="${esc(s.name)}">${esc(s.name)}<br>${what}</figcaption></figure>`;
    })
    .join('');
  const failRows = d.failures
    .map((f) => `<tr><td>${esc(f.frame === undefined ? f.blob : `${f.blob}#frame=${f.frame}`)}</td><td>${esc(f.stage)}</td><td><code>${esc(f.code)}</code></td><td>${esc(f.message)}</td></tr>`)
    .join('');
  const cost = m.cost;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>lakeinfer job ${esc(m.jobId)}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2937;background:#f8fafc}
header{padding:20px 28px;background:${ok ? '#065f46' : m.status === 'cancelled' ? '#4b5563' : m.status === 'running' ? '#1e3a8a' : '#7f1d1d'};color:#fff}
header h1{margin:0 0 4px;font-size:22px} header .sub{opacity:.85}
main{padding:20px 28px;max-width:1280px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px 20px;margin:0 0 18px}
h2{font-size:16px;margin:0 0 12px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 140px;border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px;background:#fff}
.card .v{font-size:22px;font-weight:600} .card .k{color:#6b7280;font-size:12px}
.bar{display:flex;height:18px;border-radius:4px;overflow:hidden;margin:6px 0}
.seg{height:100%} .legend span{margin-right:14px;font-size:12px} .legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}
figure{margin:0;border:1px solid #e5e7eb;border-radius:6px;overflow:hidden;background:#fafafa}
figure img{display:block;width:100%;height:auto}
figcaption{font-size:12px;padding:6px 8px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.noimg{height:120px;display:flex;align-items:center;justify-content:center;color:#9ca3af}
table{border-collapse:collapse;width:100%;font-size:12px} td,th{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}
.charts{display:flex;flex-wrap:wrap;gap:24px} .muted{color:#6b7280} code{font-size:12px}
pre{background:#f3f4f6;padding:10px;border-radius:6px;overflow:auto;font-size:12px}
</style></head>
<body>
<header><h1>Job ${esc(m.jobId)}: ${esc(m.status)}</h1>
<div class="sub">model <b>${esc(m.model.name)}</b> · ${esc(m.input.container)}/${esc(m.input.prefix)} → ${esc(m.output.container)}/${esc(m.output.jobPrefix)} · ${esc(m.startedAt)} – ${esc(m.endedAt)}</div></header>
<main>
<section><h2>Summary</h2><div class="cards">
<div class="card"><div class="v" id="count-images">${fmt(c.images)}</div><div class="k">images</div></div>
<div class="card"><div class="v" id="count-succeeded">${fmt(c.succeeded)}</div><div class="k">succeeded</div></div>
<div class="card"><div class="v" id="count-failed">${fmt(c.failed)}</div><div class="k">failed (${fmt(m.failedPercent, 2)}%, tolerated ${fmt(m.toleratedFailurePercent, 2)}%)</div></div>
<div class="card"><div class="v" id="count-skipped">${fmt(c.skipped)}</div><div class="k">skipped (already done)</div></div>
${m.labels?.kind === 'classes' ? `<div class="card"><div class="v" id="count-top-class">${esc(m.labels.top[0]?.label ?? '-')}</div><div class="k">most frequent top class (${fmt(m.labels.top[0]?.count ?? 0)} images)</div></div>` : `<div class="card"><div class="v" id="count-detections">${fmt(c.detections)}</div><div class="k">detections</div></div>`}
<div class="card"><div class="v">${fmt(c.partitions)}</div><div class="k">partitions (${fmt(c.partitionsFailed)} failed)</div></div>
<div class="card"><div class="v">${fmt(m.wallSeconds, 1)} s</div><div class="k">wall time · ${fmt(c.images / Math.max(1e-3, m.wallSeconds), 1)} images/s</div></div>
${m.busySeconds !== undefined && m.busySeconds < 0.9 * m.wallSeconds ? `<div class="card"><div class="v" id="busy-rate">${fmt(c.images / Math.max(1e-3, m.busySeconds), 1)}</div><div class="k">images/s while inferring (${fmt(m.busySeconds, 1)} s busy; idle time left out)</div></div>` : ''}
</div></section>
<section><h2>Cost</h2><div class="cards">
<div class="card"><div class="v" id="cost-instance-seconds">${fmt(cost.instanceSeconds, 1)}</div><div class="k">instance-seconds (activities, measured)</div></div>
<div class="card"><div class="v" id="cost-gb-seconds">${fmt(cost.gbSeconds, 1)}</div><div class="k">GB-seconds at ${fmt(cost.instanceMemoryMB)} MB per instance</div></div>
<div class="card"><div class="v" id="cost-usd">$${cost.estimatedUsd.toFixed(4)}</div><div class="k">estimated at $${cost.pricePerGbSecond} per GB-second (Flex Consumption on demand)</div></div>
<div class="card"><div class="v">$${(c.images > 0 ? (1000 * cost.estimatedUsd) / c.images : 0).toFixed(4)}</div><div class="k">per 1,000 images</div></div>
</div></section>
<section><h2>Where the time went</h2><div class="bar">${stages}</div><div class="legend">${stageLegend}</div>
<div class="charts"><div><h2>Throughput over time</h2>${lineChart(throughput(d.partitionEnds))}</div>
<div><h2>Per-image latency (ms)</h2>${barChart(hist.counts, histLabels)}</div></div></section>
<section><h2>Images</h2><p class="muted">${d.samples.length < c.succeeded + c.skipped ? `${d.samples.length} of ${fmt(c.succeeded + c.skipped)} images, sampled evenly` : `all ${d.samples.length} images`}${d.samples.some((s) => s.overlay) ? '; click an image for its full-size overlay' : ' (overlays were off: output.overlays "samples" or true draws masks and boxes)'}.</p>
<div class="grid" id="thumbnails">${thumbs}</div></section>
${labelSection(m)}
${landedSection(m)}
${videoSection(d.videos, m.annotatedVideos, d.samples)}
<section><h2>Failures (${fmt(d.failuresTotal)})</h2>${d.failuresTotal === 0 ? '<p class="muted">none</p>' : `<table id="failures"><thead><tr><th>blob</th><th>stage</th><th>code</th><th>message</th></tr></thead><tbody>${failRows}</tbody></table>${d.failuresTotal > d.failures.length ? `<p class="muted">first ${d.failures.length} shown; all in _failures.jsonl</p>` : ''}`}</section>
<section><h2>Model and parameters</h2><pre>${esc(JSON.stringify({ model: m.model, params: m.params, input: m.input, output: m.output, submittedAt: m.submittedAt }, null, 2))}</pre></section>
</main></body></html>
`;
}
