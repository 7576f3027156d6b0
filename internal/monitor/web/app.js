// gpujobs dashboard: renders /api/stats, /api/speedup and /api/results as inline SVG and tables,
// refreshed when the monitor's SSE stream says results arrived (and every 10 s regardless).
// getJSON and streamEvents (api.js) send the monitor's token; the log view is logs.js.
// Elements that show API numbers carry data-value with the exact number, for tests.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const nf = new Intl.NumberFormat("en-US");
const COLORS = { cpu: "#3b82f6", gpu: "#76b900", bad: "#e5484d" };
const seen = new Set();
let firstRender = true;

function fmtTime(s) {
  if (s == null || !isFinite(s)) return "–";
  if (s === 0) return "0";
  if (s < 1e-3) return (s * 1e6).toPrecision(3) + " µs";
  if (s < 1) return (s * 1e3).toPrecision(3) + " ms";
  return s.toPrecision(3) + " s";
}
const fmtRate = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const fmtSpeedup = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + "×";

function setNum(id, v, text) {
  const el = $(id);
  el.dataset.value = String(v);
  el.textContent = text ?? nf.format(v);
}

function renderTotals(t, overall, lastMinute) {
  setNum("kpi-results", t.results);
  setNum("kpi-completed", t.completed);
  setNum("kpi-gpu-runs", t.gpu_runs);
  setNum("kpi-cpu-runs", t.cpu_runs);
  setNum("kpi-fallbacks", t.fallbacks);
  setNum("kpi-failed", t.failed);
  setNum("kpi-canceled", t.canceled);
  setNum("kpi-duplicates", t.duplicates);
  setNum("kpi-malformed", t.malformed);
  setNum("kpi-rejected", t.rejected);
  setNum("kpi-rejected-at-load", t.rejected_at_load);
  setNum("kpi-throughput-minute", lastMinute, lastMinute.toFixed(2));
  setNum("kpi-throughput-overall", overall, overall.toFixed(2));
}

function empty(msg) { return `<div class="empty">${esc(msg)}</div>`; }

// Mean processing time per job type: CPU and GPU bars on the job type's own scale.
function renderTimeChart(groups) {
  const byType = new Map();
  for (const g of groups) {
    if (!g.processing_time || (g.worker_type !== "cpu" && g.worker_type !== "gpu")) continue;
    if (!byType.has(g.job_type)) byType.set(g.job_type, {});
    byType.get(g.job_type)[g.worker_type] = g;
  }
  if (byType.size === 0) { $("time-chart").innerHTML = empty("No completed results yet."); return; }
  const W = 640, rowH = 74, labelW = 44, barMax = W - labelW - 200;
  let y = 0, body = "";
  for (const [jt, pair] of byType) {
    const max = Math.max(pair.cpu?.processing_time.avg ?? 0, pair.gpu?.processing_time.avg ?? 0) || 1;
    body += `<text x="0" y="${y + 14}" font-weight="600">${esc(jt)}</text>`;
    ["cpu", "gpu"].forEach((wt, i) => {
      const g = pair[wt], by = y + 22 + i * 24;
      const avg = g ? g.processing_time.avg : 0;
      const w = g ? Math.max(2, (avg / max) * barMax) : 0;
      body += `<g class="time-bar" data-job-type="${esc(jt)}" data-worker-type="${wt}" data-value="${g ? avg : ""}">` +
        `<text x="${labelW - 8}" y="${by + 14}" text-anchor="end" class="dim">${wt.toUpperCase()}</text>` +
        (g ? `<rect x="${labelW}" y="${by}" width="${w}" height="19" rx="3" fill="${COLORS[wt]}"></rect>` +
          `<text x="${labelW + w + 6}" y="${by + 14}" font-weight="600">${fmtTime(avg)} <tspan class="dim" font-weight="400">· p95 ${fmtTime(g.processing_time.p95)} · n=${nf.format(g.completed)}</tspan></text>`
          : `<text x="${labelW}" y="${by + 14}" class="dim">no runs</text>`) + `</g>`;
    });
    y += rowH;
  }
  $("time-chart").innerHTML = `<svg viewBox="0 0 ${W} ${y}" role="img" aria-label="mean processing time per job type">${body}</svg>`;
}

// Speedup bars on a log scale from 1×: slowdowns go left in red.
function renderSpeedup(sp) {
  const rows = sp.job_types.filter((j) => j.speedup > 0);
  const missing = sp.job_types.filter((j) => !(j.speedup > 0)).map((j) => j.job_type);
  if (rows.length === 0) { $("speedup-chart").innerHTML = empty("No job type has run on both CPU and GPU with the same params yet."); return; }
  const W = 640, labelW = 150, right = 70, rowH = 40, top = 20;
  const vals = rows.map((r) => r.speedup);
  const lo = Math.min(0.5, Math.min(...vals) / 1.5), hi = Math.max(2, Math.max(...vals) * 1.3);
  const x = (v) => labelW + ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (W - labelW - right);
  let body = `<g class="grid axis">`;
  for (let p = Math.floor(Math.log10(lo)); p <= Math.ceil(Math.log10(hi)); p++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** p;
      if (v < lo || v > hi) continue;
      body += `<line x1="${x(v)}" x2="${x(v)}" y1="${top - 6}" y2="${top + rows.length * rowH}"></line>` +
        (m === 1 || m === 5 ? `<text x="${x(v)}" y="${top - 9}" text-anchor="middle">${v}×</text>` : "");
    }
  }
  body += `</g>`;
  rows.forEach((r, i) => {
    const y = top + i * rowH + 8, x1 = x(1), xv = x(r.speedup);
    const up = r.speedup >= 1;
    const n = r.compared.length;
    body += `<g class="speedup-bar" data-job-type="${esc(r.job_type)}" data-value="${r.speedup}">` +
      `<text x="0" y="${y + 16}" font-weight="600">${esc(r.job_type)}</text>` +
      `<rect x="${Math.min(x1, xv)}" y="${y}" width="${Math.max(2, Math.abs(xv - x1))}" height="22" rx="3" fill="${up ? COLORS.gpu : COLORS.bad}"></rect>` +
      `<text class="speedup-label" x="${Math.max(x1, xv) + 6}" y="${y + 16}" font-weight="700">${fmtSpeedup(r.speedup)}</text>` +
      `<title>${esc(r.job_type)}: CPU ${fmtTime(r.cpu_mean_time)} / GPU ${fmtTime(r.gpu_mean_time)} over ${n} param set${n === 1 ? "" : "s"}:\n` +
      r.compared.map((c) => `${JSON.stringify(c.params)} → ${fmtSpeedup(c.speedup)}`).join("\n") + `</title></g>`;
  });
  body += `<line x1="${x(1)}" x2="${x(1)}" y1="${top - 6}" y2="${top + rows.length * rowH}" stroke="#111827" stroke-width="1.5"></line>`;
  const h = top + rows.length * rowH + 4;
  // Params that differ between a job type's compared sets come first: they are what tells them apart.
  const params = (p, varying) => Object.entries(p || {})
    .sort(([a], [b]) => (varying.has(b) - varying.has(a)) || a.localeCompare(b))
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
  const varyingOf = (r) => {
    const keys = new Set();
    for (const c of r.compared) for (const [k, v] of Object.entries(c.params || {}))
      if (r.compared.some((o) => JSON.stringify((o.params || {})[k]) !== JSON.stringify(v))) keys.add(k);
    return keys;
  };
  const detail = rows.flatMap((r) => r.compared.map((c, i, all, varying = varyingOf(r)) =>
    `<tr class="compared" data-job-type="${esc(r.job_type)}" data-value="${c.speedup}"><td>${i === 0 ? esc(r.job_type) : ""}</td>` +
    `<td class="params dim" title="${esc(JSON.stringify(c.params))}">${esc(params(c.params, varying))}</td>` +
    `<td class="n" title="${c.cpu_runs} CPU runs">${fmtTime(c.cpu_mean_time)}</td><td class="n" title="${c.gpu_runs} GPU runs">${fmtTime(c.gpu_mean_time)}</td>` +
    `<td class="n"><b>${fmtSpeedup(c.speedup)}</b></td></tr>`)).join("");
  const note = missing.length ? `<p class="hint">Not comparable yet (no same-params run on both): ${esc(missing.join(", "))}</p>` : "";
  $("speedup-chart").innerHTML = `<svg viewBox="0 0 ${W} ${h}" role="img" aria-label="GPU speedup per job type">${body}</svg>` +
    `<table class="compared-table"><thead><tr><th>compared</th><th>params</th><th class="n">CPU, mean</th><th class="n">GPU, mean</th><th class="n">speedup</th></tr></thead><tbody>${detail}</tbody></table>` + note;
}

// Stacked columns of jobs/s per bucket of end time.
function renderThroughput(tp) {
  const s = tp.series;
  if (!s || s.gpu.length === 0) { $("throughput-chart").innerHTML = empty("No results yet."); return; }
  const n = s.gpu.length, W = 1300, H = 210, left = 48, bottom = 24, top = 8;
  const rate = (i) => (s.gpu[i] + s.cpu[i] + s.failed[i]) / s.bucket_seconds;
  let max = 0;
  for (let i = 0; i < n; i++) max = Math.max(max, rate(i));
  max = niceMax(max || 1);
  const bw = (W - left) / n, y = (v) => top + (H - top - bottom) * (1 - v / max);
  let body = `<g class="grid axis">`;
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    body += `<line x1="${left}" x2="${W}" y1="${y(v)}" y2="${y(v)}"></line><text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${+v.toPrecision(3)}</text>`;
  }
  const start = new Date(s.start).getTime(), every = Math.max(1, Math.ceil(n / 8));
  for (let i = 0; i < n; i += every) {
    const t = new Date(start + i * s.bucket_seconds * 1000);
    const lx = Math.min(left + i * bw + bw / 2, W - 28);
    body += `<text x="${lx}" y="${H - 6}" text-anchor="middle">${t.toLocaleTimeString("en-GB", { hour12: false })}</text>`;
  }
  body += `</g>`;
  for (let i = 0; i < n; i++) {
    let base = 0;
    for (const [k, col] of [["gpu", COLORS.gpu], ["cpu", COLORS.cpu], ["failed", COLORS.bad]]) {
      const v = s[k][i] / s.bucket_seconds;
      if (v > 0) body += `<rect x="${left + i * bw + 1}" y="${y(base + v)}" width="${Math.max(1, bw - 2)}" height="${y(base) - y(base + v)}" fill="${col}"></rect>`;
      base += v;
    }
  }
  $("throughput-hint").textContent = `Jobs per second in ${s.bucket_seconds} s buckets of end time; ${tp.overall_per_sec.toFixed(2)} jobs/s overall.`;
  $("throughput-chart").innerHTML = `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="throughput over time">${body}` +
    `<text x="${left}" y="${top + 4}" class="dim">jobs/s</text></svg>`;
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function renderGroups(groups) {
  const rows = groups.map((g) => {
    const pt = g.processing_time, gt = g.gpu_telemetry;
    const cell = (f, v, text) => `<td class="n" data-field="${f}" data-value="${v ?? ""}">${text}</td>`;
    return `<tr data-group="${esc(g.job_type)}/${esc(g.worker_type)}"><td>${esc(g.job_type)}</td><td><span class="pill ${esc(g.worker_type)}">${esc(g.worker_type)}</span></td>` +
      cell("results", g.results, nf.format(g.results)) + cell("failed", g.failed + g.canceled, nf.format(g.failed + g.canceled)) +
      cell("fallbacks", g.fallbacks, nf.format(g.fallbacks)) +
      cell("avg", pt?.avg, fmtTime(pt?.avg)) + cell("min", pt?.min, fmtTime(pt?.min)) + cell("p50", pt?.p50, fmtTime(pt?.p50)) +
      cell("p95", pt?.p95, fmtTime(pt?.p95)) + cell("max", pt?.max, fmtTime(pt?.max)) +
      cell("rate", g.rate?.mean, g.rate ? `${fmtRate(g.rate.mean)} ${esc(g.rate.unit)}` : "–") +
      cell("gpu_util", gt?.utilization_mean, gt ? `${gt.utilization_mean.toFixed(0)} % <span class="dim">/ ${gt.utilization_peak.toFixed(0)} %</span>` : "–") +
      cell("gpu_mem", gt?.memory_peak, gt ? fmtBytes(gt.memory_peak) : "–") + `</tr>`;
  });
  document.querySelector("#groups tbody").innerHTML = rows.join("") || `<tr><td colspan="13" class="empty">No results yet.</td></tr>`;
}

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function renderBars(el, items, label, cls) {
  if (items.length === 0) { $(el).innerHTML = empty("None."); return; }
  const max = Math.max(...items.map((i) => i.count));
  $(el).innerHTML = `<div class="bars">` + items.map((i) =>
    `<div class="row" data-key="${esc(label(i))}" data-value="${i.count}"><div title="${esc(label(i))}" style="overflow:hidden;text-overflow:ellipsis;white-space:nowrap">${esc(label(i))}</div>` +
    `<div class="track"><div class="fill ${cls}" style="width:${(100 * i.count) / max}%"></div></div><div class="n">${nf.format(i.count)}</div></div>`).join("") + `</div>`;
}

function renderLatest(results) {
  const rows = results.map((r) => {
    const rate = rateOf(r);
    const note = r.error ? `${r.error_type}: ${r.error}` : r.fallback ? `fallback: ${r.fallback}` : "";
    const fresh = !firstRender && !seen.has(r.job_id);
    seen.add(r.job_id);
    return `<tr data-job-id="${esc(r.job_id)}" class="${fresh ? "new" : ""}"><td class="mono">${esc(r.job_id)}</td><td>${esc(r.job_type)}</td>` +
      `<td><span class="pill ${esc(r.status)}">${esc(r.status)}</span></td><td><span class="pill ${esc(r.worker_type || "none")}">${esc(r.worker_type || "none")}</span></td>` +
      `<td class="dim">${esc(r.device || "–")}</td><td class="n">${r.status === "completed" ? fmtTime(r.processing_time) : "–"}</td>` +
      `<td class="n">${rate}</td><td class="wrap dim">${esc(note)}</td></tr>`;
  });
  document.querySelector("#latest tbody").innerHTML = rows.join("") || `<tr><td colspan="8" class="empty">No results yet.</td></tr>`;
}

// rateOf mirrors jobs.Result.Rate: the metric the result names as its headline (a kind the
// monitor was not built with says which), else GB/s, else GFLOP/s, else samples/s.
function rateOf(r) {
  const m = r.metrics || {};
  if (r.status !== "completed") return "–";
  if (r.rate_metric) return m[r.rate_metric] != null ? `${fmtRate(m[r.rate_metric])} ${esc(r.rate_unit || r.rate_metric)}` : "–";
  if (m.gbps != null) return `${fmtRate(m.gbps)} GB/s`;
  if (m.gflops != null) return `${fmtRate(m.gflops)} GFLOP/s`;
  if (m.samples_per_sec != null) return `${fmtRate(m.samples_per_sec)} samples/s`;
  return "–";
}

let refreshing = false, again = false;
async function refresh() {
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    const [stats, speedup, latest] = await Promise.all([getJSON("/api/stats"), getJSON("/api/speedup"), getJSON("/api/results?limit=15")]);
    renderTotals(stats.totals, stats.throughput.overall_per_sec, stats.throughput.last_minute_per_sec);
    renderTimeChart(stats.groups);
    renderSpeedup(speedup);
    renderThroughput(stats.throughput);
    renderGroups(stats.groups);
    renderBars("failures", stats.failures, (f) => f.error_type, "");
    renderBars("fallbacks", stats.fallbacks, (f) => `${f.job_type}: ${f.reason}`, "warn");
    renderLatest(latest.results);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString("en-GB", { hour12: false });
    firstRender = false;
    document.body.dataset.results = String(stats.totals.results);
    document.body.dataset.loaded = "1";
  } catch (e) {
    $("updated").textContent = (e instanceof Unauthorized ? "token required: " : "API unreachable: ") + e.message;
  } finally {
    refreshing = false;
    if (again) { again = false; setTimeout(refresh, 0); }
  }
}

// Refresh at most once a second while results stream in.
let pending = null;
function schedule() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh(); }, 1000);
}

function live() {
  // A stream may end and reconnect at once (the server can bound its age): say "reconnecting"
  // only when it stays down.
  let down = null;
  streamEvents("/api/events?results=0", (name, ev) => {
    if (name !== "summary") return;
    const s = JSON.parse(ev.data);
    if (String(s.results) !== document.body.dataset.results) schedule();
  }, {
    onOpen: () => {
      clearTimeout(down); down = null;
      $("live").classList.remove("off"); $("live-text").textContent = "live";
    },
    onDown: () => {
      if (down) return;
      down = setTimeout(() => { $("live").classList.add("off"); $("live-text").textContent = "reconnecting…"; }, 3000);
    },
  });
}

refresh();
live();
setInterval(refresh, 10000);
