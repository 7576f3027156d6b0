// gpujobs dashboard, usage card: renders /api/usage as a table, one row per tenant and one per
// tenant and job type. It refreshes whenever app.js has rendered new totals (body[data-results]
// changes). Cells carry data-value for tests.
"use strict";

function usageRow(tenant, jobType, c, cls) {
  const h = (s) => (s / 3600).toFixed(s >= 36 ? 2 : 4);
  const cell = (v, text) => `<td class="n" data-value="${v}">${text}</td>`;
  return `<tr class="${cls}" data-tenant="${esc(tenant)}" data-job-type="${esc(jobType)}"><td>${esc(tenant || "(none)")}</td><td>${esc(jobType)}</td>` +
    cell(c.jobs, c.jobs) + cell(c.failed + c.canceled, c.failed + c.canceled) +
    cell(c.gpu_seconds, h(c.gpu_seconds)) + cell(c.cpu_seconds, h(c.cpu_seconds)) +
    cell(c.gpu_occupancy_seconds, h(c.gpu_occupancy_seconds)) + cell(c.cpu_occupancy_seconds, h(c.cpu_occupancy_seconds)) +
    cell(c.cost || 0, c.cost ? c.cost.toFixed(4) : "–") + `</tr>`;
}

async function refreshUsage() {
  let u;
  try {
    u = await getJSON("/api/usage");
  } catch (e) {
    return;
  }
  const rows = [];
  for (const t of u.tenants) {
    rows.push(usageRow(t.tenant, "all", t, "usage-tenant"));
    for (const jt of t.job_types) rows.push(usageRow(t.tenant, jt.job_type, jt, "usage-job-type"));
  }
  document.getElementById("usage").innerHTML = rows.length === 0 ? `<p class="empty">No results yet.</p>` :
    `<table class="usage"><thead><tr><th>tenant</th><th>job type</th><th class="n">jobs</th><th class="n">failed</th>` +
    `<th class="n">GPU h</th><th class="n">CPU h</th><th class="n">GPU occ. h</th><th class="n">CPU occ. h</th><th class="n">cost</th></tr></thead>` +
    `<tbody>${rows.join("")}</tbody></table>`;
}

new MutationObserver(refreshUsage).observe(document.body, { attributes: true, attributeFilter: ["data-results"] });
refreshUsage();
