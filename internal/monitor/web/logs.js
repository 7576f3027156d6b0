// gpujobs dashboard: the log view. Clicking a job in the latest results (or opening
// /#log=<job id>) shows its log from /api/jobs/{id}/logs/stream and follows it live: stdout,
// stderr and gpujobs's notices, attempt by attempt. Lines are text, never HTML. The view keeps
// the last MAX_LINES lines; `starter logs` prints all of them.
"use strict";

const logView = (() => {
  const MAX_LINES = 20000;
  let stream = null, shown = 0, attempt = 0, job = "";
  const el = (id) => document.getElementById(id);

  function close() {
    stream?.close();
    stream = null;
    el("log-view").hidden = true;
    if (location.hash.startsWith("#log=")) history.replaceState(null, "", location.pathname + location.search);
  }

  function append(l) {
    const box = el("log-lines");
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    if (l.attempt !== attempt) {
      if (attempt !== 0 || l.attempt > 1) {
        const sep = document.createElement("div");
        sep.className = "log-attempt";
        sep.dataset.attempt = String(l.attempt);
        sep.textContent = `attempt ${l.attempt}`;
        box.appendChild(sep);
      }
      attempt = l.attempt;
    }
    const div = document.createElement("div");
    div.className = "log-line " + l.stream;
    div.dataset.attempt = String(l.attempt);
    div.dataset.seq = String(l.seq);
    div.dataset.stream = l.stream;
    div.title = `${l.stream} · attempt ${l.attempt} · line ${l.seq} · ${l.time}`;
    div.textContent = l.text;
    box.appendChild(div);
    shown++;
    while (box.childElementCount > MAX_LINES) box.firstElementChild.remove();
    el("log-view").dataset.lines = String(shown);
    el("log-count").textContent = `${shown.toLocaleString("en-US")} lines`;
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  function open(id) {
    if (stream && id === job) return;
    stream?.close();
    job = id; shown = 0; attempt = 0;
    const view = el("log-view");
    view.hidden = false;
    view.dataset.job = id;
    view.dataset.lines = "0";
    view.dataset.ended = "";
    el("log-job").textContent = id;
    el("log-lines").textContent = "";
    el("log-count").textContent = "no lines yet";
    el("log-state").textContent = "connecting…";
    stream = streamEvents(`/api/jobs/${encodeURIComponent(id)}/logs/stream`, (name, ev) => {
      if (name === "line") append(JSON.parse(ev.data));
      else if (name === "end") {
        const e = JSON.parse(ev.data);
        view.dataset.ended = (view.dataset.ended ? view.dataset.ended + "," : "") + e.attempt;
        el("log-state").textContent = `attempt ${e.attempt} ended`;
      }
    }, {
      onOpen: () => { el("log-state").textContent = "following"; },
      onDown: () => { el("log-state").textContent = "reconnecting…"; },
    });
    view.scrollIntoView({ block: "nearest" });
  }

  function fromHash() {
    const m = location.hash.match(/^#log=(.+)$/);
    if (m) open(decodeURIComponent(m[1]));
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelector("#latest tbody").addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr[data-job-id]");
      if (tr) location.hash = "log=" + encodeURIComponent(tr.dataset.jobId);
    });
    el("log-close").addEventListener("click", close);
    window.addEventListener("hashchange", fromHash);
    fromHash();
  });
  return { open, close };
})();
