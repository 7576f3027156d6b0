// gpujobs dashboard, sweeps card: renders /api/sweeps (the latest sweeps, one chart each) as
// inline SVG: the GPU speedup over the sweep's points, or, when no point ran on both a CPU and a
// GPU, the mean rate on each. It reuses app.js's helpers and refreshes whenever app.js has
// rendered new totals (body[data-results] changes). Elements carry data-value for tests.
"use strict";

function sweepX(points, varies) {
  const numeric = varies.length === 1 && points.every((p) => p.x != null && p.x > 0);
  if (!numeric) return { pos: points.map((_, i) => i), label: (p) => p.label, log: false, numeric };
  const xs = points.map((p) => p.x);
  const lo = Math.min(...xs), hi = Math.max(...xs);
  const log = hi > 8 * lo;
  const f = log ? Math.log10 : (v) => v;
  return { pos: xs.map(f), label: (p) => String(p.x), log, numeric };
}

function renderSweep(s) {
  const W = 640, H = 190, left = 56, right = 18, top = 16, bottom = 34;
  const pts = s.points;
  const ax = sweepX(pts, s.varies);
  const withSpeedup = pts.filter((p) => p.speedup > 0);
  const mode = withSpeedup.length > 0 ? "speedup" : "rate";
  const series = mode === "speedup"
    ? [{ cls: "sweep-speedup-point", color: COLORS.gpu, device: "gpu", vals: pts.map((p) => (p.speedup > 0 ? p.speedup : null)) }]
    : [{ cls: "sweep-rate-point", color: COLORS.cpu, device: "cpu", vals: pts.map((p) => p.cpu?.mean_rate ?? null) },
       { cls: "sweep-rate-point", color: COLORS.gpu, device: "gpu", vals: pts.map((p) => p.gpu?.mean_rate ?? null) }];
  const all = series.flatMap((se) => se.vals.filter((v) => v != null));
  if (all.length === 0) return `<div class="sweep" data-sweep-id="${esc(s.sweep_id)}">${empty(`${s.sweep_id}: no completed runs yet.`)}</div>`;
  const ymax = niceMax(Math.max(...all, mode === "speedup" ? 1 : 0) * 1.15);
  const pmin = Math.min(...ax.pos), pmax = Math.max(...ax.pos);
  const x = (v) => left + (pmax === pmin ? 0.5 : (v - pmin) / (pmax - pmin)) * (W - left - right);
  const y = (v) => top + (1 - v / ymax) * (H - top - bottom);
  let body = `<g class="grid axis">`;
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    body += `<line x1="${left}" x2="${W - right}" y1="${y(v)}" y2="${y(v)}"></line>` +
      `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${mode === "speedup" ? fmtSpeedup(v) : fmtRate(v)}</text>`;
  }
  pts.forEach((p, i) => {
    body += `<text x="${x(ax.pos[i])}" y="${H - bottom + 16}" text-anchor="middle">${esc(ax.label(p))}</text>`;
  });
  body += `<text x="${(left + W - right) / 2}" y="${H - 4}" text-anchor="middle">${esc(ax.numeric ? s.varies[0] + (ax.log ? " (log scale)" : "") : "point")}</text></g>`;
  if (mode === "speedup") body += `<line x1="${left}" x2="${W - right}" y1="${y(1)}" y2="${y(1)}" stroke="#111827" stroke-dasharray="4 3"></line>`;
  for (const se of series) {
    const xy = se.vals.map((v, i) => (v == null ? null : [x(ax.pos[i]), y(v)])).filter(Boolean);
    if (xy.length > 1) body += `<polyline fill="none" stroke="${se.color}" stroke-width="2.5" points="${xy.map((q) => q.join(",")).join(" ")}"></polyline>`;
    se.vals.forEach((v, i) => {
      if (v == null) return;
      const p = pts[i];
      body += `<g class="${se.cls}" data-sweep-id="${esc(s.sweep_id)}" data-label="${esc(p.label)}" data-device="${se.device}" data-value="${v}">` +
        `<circle cx="${x(ax.pos[i])}" cy="${y(v)}" r="4.5" fill="${se.color}"></circle>` +
        (mode === "speedup" ? `<text x="${x(ax.pos[i])}" y="${y(v) - 9}" text-anchor="middle" font-weight="700">${fmtSpeedup(v)}</text>` : "") +
        `<title>${esc(p.label)}: CPU ${fmtTime(p.cpu?.mean_time)} (${p.cpu?.runs ?? 0} runs), GPU ${fmtTime(p.gpu?.mean_time)} (${p.gpu?.runs ?? 0} runs)</title></g>`;
    });
  }
  const unit = pts.find((p) => p.cpu?.rate_unit || p.gpu?.rate_unit);
  const what = mode === "speedup" ? "GPU speedup (mean CPU time ÷ mean GPU time)"
    : `mean rate${unit ? ", " + esc(unit.cpu?.rate_unit || unit.gpu?.rate_unit) : ""} <i class="sw cpu"></i>CPU <i class="sw gpu"></i>GPU · no point ran on both a CPU and a GPU`;
  const fallbacks = pts.reduce((n, p) => n + p.fallbacks, 0);
  return `<div class="sweep" data-sweep-id="${esc(s.sweep_id)}" data-mode="${mode}">` +
    `<h3>${esc(s.sweep_id)} <span class="dim">${esc(s.job_type)} · <span class="sweep-results" data-value="${s.results}">${nf.format(s.results)}</span> jobs, ` +
    `${nf.format(s.completed)} completed${s.failed + s.canceled ? `, ${s.failed + s.canceled} not` : ""}${fallbacks ? `, ${fallbacks} fallbacks to CPU` : ""}</span></h3>` +
    `<p class="hint">${what}</p>` +
    `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="sweep ${esc(s.sweep_id)}">${body}</svg></div>`;
}

let sweepsBusy = false;
async function refreshSweeps() {
  if (sweepsBusy) return;
  sweepsBusy = true;
  try {
    const data = await getJSON("/api/sweeps?limit=4");
    $("sweeps").innerHTML = data.sweeps.length ? data.sweeps.map(renderSweep).join("")
      : empty("No sweeps yet: starter sweep matrix_multiply --size 500,1000,2000 --device cpu,gpu");
    $("sweeps").dataset.matched = String(data.matched);
    $("sweeps").dataset.loaded = "1";
  } catch (e) {
    $("sweeps").innerHTML = empty("API unreachable: " + e.message);
  } finally {
    sweepsBusy = false;
  }
}

refreshSweeps();
new MutationObserver(refreshSweeps).observe(document.body, { attributes: true, attributeFilter: ["data-results"] });
