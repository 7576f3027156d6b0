// gpujobs dashboard, queue card: where the jobs waiting for a worker stand, from /api/queue
// (which the monitor gets from a scheduler worker, --scheduler-url): per queue the jobs running
// and waiting and the workers polling, and the next waiting jobs with their predicted starts and
// ends, counted from the snapshot's own time. Refreshed every 5 s and whenever app.js has
// rendered new totals. A monitor without --scheduler-url answers 503 and the card says how to
// set it. Elements carry data-* with the exact numbers, for tests.
"use strict";

const QUEUE_ROWS = 10; // waiting jobs shown per queue

function fmtIn(seconds) {
  if (seconds <= 0) return "now";
  const s = Math.round(seconds);
  if (s < 60) return `in ${s} s`;
  if (s < 3600) return `in ${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `in ${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `in ${(s / 86400).toFixed(1)} days`;
}

function queueCard(name, preds, at) {
  const waiting = preds.filter((p) => p.position > 0).sort((a, b) => a.position - b.position);
  const any = preds[0];
  const counts = any ? { waiting: any.waiting, running: any.running, pollers: any.pollers } : { waiting: 0, running: 0, pollers: null };
  const polling = counts.pollers == null ? "" : ` · ${counts.pollers} worker${counts.pollers === 1 ? "" : "s"} polling`;
  const noWorker = counts.pollers === 0 && counts.waiting > 0 ? ` <span class="pill failed">no worker polls ${esc(name)}</span>` : "";
  const summary = `<p class="queue-summary" data-queue="${esc(name)}" data-waiting="${counts.waiting}" data-running="${counts.running}" data-pollers="${counts.pollers ?? ""}">` +
    `<b>${esc(name)}</b>: ${counts.waiting} waiting · ${counts.running} running${polling}${noWorker}</p>`;
  if (waiting.length === 0) return summary + `<p class="empty">No job waiting.</p>`;
  const rows = waiting.slice(0, QUEUE_ROWS).map((p) => {
    const startIn = (Date.parse(p.predicted_start) - at) / 1000, endIn = (Date.parse(p.predicted_end) - at) / 1000;
    return `<tr class="queued" data-job-id="${esc(p.job_id)}" data-queue="${esc(name)}" data-position="${p.position}" data-start-in="${startIn}" data-end-in="${endIn}">` +
      `<td class="n">${p.position}</td><td class="mono">${esc(p.job_id)}</td>` +
      `<td title="${esc(p.predicted_start)}">${fmtIn(startIn)}</td><td title="${esc(p.predicted_end)}">${fmtIn(endIn)}</td></tr>`;
  });
  const more = waiting.length > QUEUE_ROWS ? `<p class="hint">and ${waiting.length - QUEUE_ROWS} more waiting (/api/queue?queue=${esc(name)} lists them all)</p>` : "";
  return summary + `<table class="queue"><thead><tr><th class="n">#</th><th>job</th><th>predicted start</th><th>predicted end</th></tr></thead>` +
    `<tbody>${rows.join("")}</tbody></table>` + more;
}

async function refreshQueue() {
  const box = document.getElementById("queue");
  let r;
  try {
    r = await apiFetch("/api/queue");
  } catch (e) {
    return;
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    box.dataset.state = r.status === 503 ? "off" : "error";
    box.innerHTML = `<p class="${r.status === 503 ? "empty" : "bad"}" id="queue-message">${esc(body.error || `/api/queue: ${r.status}`)}</p>`;
    return;
  }
  const at = Date.parse(body.at);
  const by = { cpu_queue: [], gpu_queue: [] };
  for (const p of body.jobs) (by[p.queue] ||= []).push(p);
  box.dataset.state = "on";
  box.dataset.at = body.at;
  box.innerHTML = `<div class="queues">${Object.keys(by).map((q) => `<div>${queueCard(q, by[q], at)}</div>`).join("")}</div>` +
    `<p class="hint">From the scheduler worker at ${esc(body.source)}, ${new Date(at).toLocaleTimeString()}.</p>`;
}

new MutationObserver(refreshQueue).observe(document.body, { attributes: true, attributeFilter: ["data-results"] });
setInterval(refreshQueue, 5000);
refreshQueue();
