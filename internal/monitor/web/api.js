// gpujobs dashboard: access to the monitor's API. A monitor started with a token answers
// /api/... only with "Authorization: Bearer <token>": the page takes the token from ?token=
// (moved at once into sessionStorage and out of the address bar, so it stays out of history and
// bookmarks) or from the login form, and sends it with every request. Server-sent events are
// read with fetch rather than EventSource, which cannot send that header.
"use strict";

const auth = (() => {
  const KEY = "gpujobs-monitor-token";
  const u = new URL(location.href);
  if (u.searchParams.has("token")) {
    sessionStorage.setItem(KEY, u.searchParams.get("token"));
    u.searchParams.delete("token");
    history.replaceState(null, "", u.pathname + u.search + u.hash);
  }
  return {
    get: () => sessionStorage.getItem(KEY) || "",
    set: (t) => sessionStorage.setItem(KEY, t),
  };
})();

class Unauthorized extends Error {}

// askToken shows the login form; the page reloads once a token is entered.
function askToken() {
  document.body.dataset.auth = auth.get() ? "refused" : "required";
  const form = document.getElementById("login");
  if (!form || !form.hidden) return;
  document.getElementById("login-refused").hidden = !auth.get();
  form.hidden = false;
  form.querySelector("input").focus();
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login");
  form?.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = form.querySelector("input").value.trim();
    if (t) { auth.set(t); location.reload(); }
  });
});

async function apiFetch(url, opts = {}) {
  const headers = Object.assign({}, opts.headers);
  const t = auth.get();
  if (t) headers.Authorization = "Bearer " + t;
  const r = await fetch(url, { cache: "no-store", ...opts, headers });
  if (r.status === 401) { askToken(); throw new Unauthorized(`${url}: 401 (token required)`); }
  return r;
}

async function getJSON(url) {
  const r = await apiFetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

// streamEvents reads the server-sent events of url until close(): on(name, event) for each
// event ({id, data}), reconnecting after the server's retry delay with Last-Event-ID, so a
// stream resumes where it stopped. onOpen and onDown report the connection.
function streamEvents(url, on, { onOpen, onDown } = {}) {
  let lastId = "", retry = 1000, stopped = false, ctrl = null;
  const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
  (async () => {
    while (!stopped) {
      ctrl = new AbortController();
      try {
        const headers = { Accept: "text/event-stream" };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const r = await apiFetch(url, { headers, signal: ctrl.signal });
        if (!r.ok) throw new Error(`${url}: ${r.status}`);
        onOpen?.();
        const reader = r.body.getReader(), dec = new TextDecoder();
        let buf = "", id = null, name = "", data = [];
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n")) >= 0) {
            let line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line.endsWith("\r")) line = line.slice(0, -1);
            if (line === "") {
              if (id !== null) lastId = id;
              if (data.length) on(name || "message", { id: lastId, data: data.join("\n") });
              id = null; name = ""; data = [];
              continue;
            }
            if (line[0] === ":") continue;
            const c = line.indexOf(":");
            const field = c < 0 ? line : line.slice(0, c);
            let v = c < 0 ? "" : line.slice(c + 1);
            if (v[0] === " ") v = v.slice(1);
            if (field === "id") id = v;
            else if (field === "event") name = v;
            else if (field === "data") data.push(v);
            else if (field === "retry" && /^\d+$/.test(v)) retry = +v;
          }
        }
      } catch (e) {
        if (e instanceof Unauthorized || stopped) return;
      }
      if (stopped) return;
      onDown?.();
      await sleep(retry);
    }
  })();
  return { close() { stopped = true; ctrl?.abort(); } };
}
