// jetsched dashboard: hash-routed views over /api, live through /api/events (server-sent events).
// Every piece of data reaches the page through textContent or an attribute; never through innerHTML.
"use strict";

const TOKEN_KEY = "jetsched.token";
const view = document.getElementById("view");
let current = { name: "", arg: "" };
let refreshTimer = null;
const recent = [];

// ---- DOM and formatting helpers -------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "onclick") node.addEventListener("click", value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function ago(ms) {
  if (ms === null || ms === undefined) return "";
  const s = Math.round(ms / 1000);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d";
}

function when(ms) {
  if (ms === null || ms === undefined) return "";
  const d = new Date(ms);
  const delta = Date.now() - ms;
  const rel = delta >= 0 ? ago(delta) + " ago" : "in " + ago(-delta);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") + " (" + rel + ")";
}

function stateCell(state) {
  return el("span", { class: "state state-" + String(state) }, state === null ? "deleted" : state);
}

function jobLink(id) {
  return el("a", { href: "#/job/" + encodeURIComponent(id), class: "mono" }, id);
}

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "nothing here"))));
}

function flash(message, ok) {
  const box = document.getElementById("flash");
  box.replaceChildren(el("div", { class: ok ? "ok" : "", id: "flash-message" }, message));
  setTimeout(() => { if (box.firstChild && box.firstChild.textContent === message) box.replaceChildren(); }, 8000);
}

// ---- API --------------------------------------------------------------------------------------
async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error((body.error && (body.error.code + ": " + body.error.message)) || response.statusText);
  return body;
}

async function act(path, body, okText) {
  const headers = { "Content-Type": "application/json", "X-Jetsched-Token": sessionStorage.getItem(TOKEN_KEY) || "" };
  try {
    const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body || {}) });
    const reply = await response.json();
    if (!response.ok) {
      flash("refused: " + (reply.error ? reply.error.code + ": " + reply.error.message : response.statusText));
      return null;
    }
    flash(typeof okText === "function" ? okText(reply) : okText, true);
    render();
    refreshSoon();  // what the API shows catches up a moment later (settings watchers, worker heartbeats)
    return reply;
  } catch (err) {
    flash("failed: " + err.message);
    return null;
  }
}

function actionButton(label, path, okText, danger, body) {
  return el("button", { class: danger ? "danger" : "", "data-action": label.toLowerCase(),
    onclick: () => act(path, body, okText) }, label);
}

// ---- views ------------------------------------------------------------------------------------
const views = {
  async ""() {
    const data = await api("/api/queues");
    const cards = el("div", { class: "cards" },
      Object.entries(data.jobs).map(([state, n]) => el("div", { class: "card" }, el("b", {}, n), stateCell(state))),
      el("div", { class: "card" }, el("b", {}, (data.workers.busy || 0) + "/" + (data.workers.slots || 0)), "slots busy"));
    const rows = data.queues.map((q) => el("tr", { "data-capability": q.capability },
      el("td", {}, el("a", { href: "#/jobs?capability=" + encodeURIComponent(q.capability) }, q.capability)),
      el("td", { class: "num" }, q.ready ?? 0), el("td", { class: "num" }, q.running ?? 0),
      el("td", { class: "num" }, q.oldest_ready_age_ms ? ago(q.oldest_ready_age_ms) : ""),
      el("td", { class: "num" }, q.free_worker_slots ?? ""),
      el("td", { class: "num" }, q.states.succeeded ?? 0), el("td", { class: "num" }, q.states.dead ?? 0),
      el("td", {}, q.paused || (q.settings && q.settings.paused) ? "paused" : ""),
      el("td", {}, (q.paused || (q.settings && q.settings.paused))
        ? actionButton("Resume", "/api/queues/" + encodeURIComponent(q.capability) + "/resume", "resumed " + q.capability)
        : actionButton("Pause", "/api/queues/" + encodeURIComponent(q.capability) + "/pause", "paused " + q.capability))));
    const feed = el("ul", { class: "feed", id: "recent" }, recent.map(eventItem));
    return [el("h1", {}, "Queues"), cards,
      table(["capability", "ready", "running", "oldest ready", "free slots", "succeeded", "dead", "", ""], rows),
      el("h2", {}, "Live: job changes as they happen"), feed];
  },

  async workers() {
    const data = await api("/api/workers");
    const rows = data.workers.map((w) => el("tr", {},
      el("td", {}, w.worker), el("td", { class: "mono" }, w.session), el("td", {}, (w.capabilities || []).join(", ")),
      el("td", {}, Object.entries(w.labels || {}).map(([k, v]) => k + "=" + v).join(" ")),
      el("td", { class: "num" }, (w.running ?? 0) + "/" + w.concurrency),
      el("td", {}, w.draining ? "draining" : ""), el("td", {}, ago(w.seen_ms_ago) + " ago"),
      el("td", {}, w.draining ? "" : actionButton("Drain", "/api/workers/" + encodeURIComponent(w.session) + "/drain", "draining " + w.session, true))));
    return [el("h1", {}, "Workers"), table(["worker", "session", "capabilities", "labels", "busy/slots", "", "seen", ""], rows)];
  },

  async running() { return jobList("Running jobs", "state=running"); },

  async jobs(arg) { return jobList("Jobs", arg); },

  async job(id) {
    const data = await api("/api/jobs/" + encodeURIComponent(id));
    const job = data.job;
    const facts = [["capability", job.capability], ["priority", job.priority], ["attempt", job.attempt + " of " + job.max_attempts],
      ["created", when(job.created_at_ms)], ["run at", when(job.run_at_ms)], ["started", when(job.started_at_ms)],
      ["finished", when(job.finished_at_ms)], ["waiting", data.waiting || ""],
      ["workflow", job.workflow ? job.workflow.id + " / " + job.workflow.step : ""], ["schedule", job.schedule_id || ""]];
    const attempts = data.timeline.map((a) => el("tr", { "data-attempt": a.attempt },
      el("td", { class: "num" }, a.attempt), el("td", { title: a.session ? "session " + a.session : null }, a.worker || ""), el("td", {}, when(a.claimed_at_ms)),
      el("td", {}, a.outcome ? stateCell(a.outcome) : ""),
      el("td", {}, a.errors.map((e) => el("div", {}, el("div", {}, when(e.at_ms) + " — " + e.kind + ": " + e.type + ": " + e.message),
        e.traceback ? el("pre", {}, e.traceback) : null)))));
    const actions = [];
    if (job.state === "dead") {
      actions.push(actionButton("Retry", "/api/dead/" + encodeURIComponent(job.id) + "/retry", "retried " + job.id));
      actions.push(actionButton("Purge", "/api/dead/" + encodeURIComponent(job.id) + "/purge", "purged " + job.id, true));
    } else if (!["succeeded", "cancelled"].includes(job.state)) {
      actions.push(actionButton("Cancel", "/api/jobs/" + encodeURIComponent(job.id) + "/cancel", "cancelled " + job.id, true));
    }
    return [el("h1", {}, "Job ", el("span", { class: "mono" }, job.id), " ", el("span", { id: "job-state" }, stateCell(job.state))),
      el("div", { class: "filters" }, actions),
      table(["", ""], facts.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))),
      el("h2", {}, "Attempts"), table(["#", "worker", "claimed", "outcome", "errors"], attempts),
      el("h2", {}, "Payload"), el("pre", {}, JSON.stringify(job.payload, null, 2)),
      el("h2", {}, "Result"), el("pre", {}, JSON.stringify(job.result, null, 2))];
  },

  async dead(arg) {
    const query = new URLSearchParams(arg);
    const data = await api("/api/dead?" + query.toString());
    const kind = query.get("error_type") || "";
    const capInput = el("input", { id: "dead-capability", placeholder: "capability", value: query.get("capability") || "" });
    const typeInput = el("input", { id: "dead-error-type", placeholder: "error type", value: kind });
    const apply = el("button", { id: "dead-filter", onclick: () => {
      const q = new URLSearchParams();
      if (capInput.value) q.set("capability", capInput.value);
      if (typeInput.value) q.set("error_type", typeInput.value);
      location.hash = "#/dead?" + q.toString();
    } }, "Filter");
    const bulkBody = { error_type: kind, ...(query.get("capability") ? { capability: query.get("capability") } : {}) };
    const bulkDone = (verb) => (r) => verb + " " + r.done.length + (r.done.length === 1 ? " dead letter" : " dead letters") + " of type " + kind
      + (r.failed.length ? "; " + r.failed.length + " refused" : "") + (r.truncated ? "; more remain: run it again" : "");
    const bulk = kind ? [actionButton("Retry all", "/api/dead/bulk/retry", bulkDone("retried"), false, bulkBody),
      actionButton("Purge all", "/api/dead/bulk/purge", bulkDone("purged"), true, bulkBody)] : [];
    const rows = data.jobs.map((j) => el("tr", { "data-id": j.id },
      el("td", {}, jobLink(j.id)), el("td", {}, j.capability), el("td", { class: "num" }, j.attempt),
      el("td", {}, j.last_error ? j.last_error.type : ""), el("td", {}, j.last_error ? j.last_error.message : ""),
      el("td", {}, when(j.finished_at_ms || j.updated_at_ms)),
      el("td", {}, actionButton("Retry", "/api/dead/" + encodeURIComponent(j.id) + "/retry", "retried " + j.id),
        actionButton("Purge", "/api/dead/" + encodeURIComponent(j.id) + "/purge", "purged " + j.id, true))));
    return [el("h1", {}, "Dead letters"), el("div", { class: "filters" }, capInput, typeInput, apply, bulk),
      table(["id", "capability", "attempts", "error type", "message", "died", ""], rows), pager("dead", query, data.next)];
  },

  async schedules() {
    const data = await api("/api/schedules");
    const rows = data.schedules.map((s) => {
      const r = s.schedule;
      const spec = r.spec || r;
      return el("tr", {},
        el("td", {}, r.id || spec.id), el("td", { class: "mono" }, spec.cron || (spec.every_ms ? "every " + ago(spec.every_ms) : "")),
        el("td", {}, spec.timezone || "UTC"), el("td", {}, when(r.last_fire_ms)), el("td", {}, when(r.next_fire_ms)),
        el("td", { class: "num" }, r.fired ?? 0), el("td", { class: "num" }, r.missed ?? 0), el("td", {}, spec.paused || r.paused ? "paused" : ""),
        el("td", {}, el("ul", {}, (s.next_fires || []).slice(0, 5).map((f) => el("li", {}, f.local + " (" + f.utc + ")")))));
    });
    return [el("h1", {}, "Schedules"),
      table(["id", "when", "zone", "last fire", "next fire", "fired", "missed", "", "next fires: local (UTC), DST applied"], rows)];
  },

  async workflows(arg) {
    const query = new URLSearchParams(arg);
    const data = await api("/api/workflows?" + query.toString());
    const rows = data.workflows.map((w) => el("tr", {},
      el("td", {}, el("a", { href: "#/workflow/" + encodeURIComponent(w.id), class: "mono" }, w.id)), el("td", {}, stateCell(w.state))));
    return [el("h1", {}, "Workflows"), table(["id", "state"], rows), pager("workflows", query, data.next)];
  },

  async workflow(id) {
    const data = await api("/api/workflows/" + encodeURIComponent(id));
    const wf = data.workflow;
    return [el("h1", {}, "Workflow ", el("span", { class: "mono" }, wf.id), " ", stateCell(wf.state)),
      graph(wf.steps),
      table(["step", "state", "job", "attempt", "depends on", "last error"], Object.entries(wf.steps).map(([name, s]) => el("tr", {},
        el("td", {}, name), el("td", {}, stateCell(s.state)), el("td", {}, s.job_id ? jobLink(s.job_id) : ""),
        el("td", { class: "num" }, s.attempt ?? ""), el("td", {}, (s.depends_on || []).join(", ")),
        el("td", {}, s.last_error ? s.last_error.type + ": " + s.last_error.message : ""))))];
  },
};

async function jobList(title, arg) {
  const query = new URLSearchParams(arg);
  const data = await api("/api/jobs?" + query.toString());
  const rows = data.jobs.map((j) => el("tr", { "data-id": j.id },
    el("td", {}, jobLink(j.id)), el("td", {}, j.capability), el("td", {}, stateCell(j.state)), el("td", { class: "num" }, j.priority),
    el("td", { class: "num" }, j.attempt + "/" + j.max_attempts), el("td", {}, j.worker || ""),
    el("td", {}, when(j.started_at_ms || j.created_at_ms)), el("td", {}, j.last_error ? j.last_error.type + ": " + j.last_error.message : "")));
  return [el("h1", {}, title), table(["id", "capability", "state", "prio", "attempt", "worker", "started / created", "last error"], rows),
    pager(current.name, query, data.next)];
}

function pager(name, query, next) {
  if (!next) return null;
  const q = new URLSearchParams(query);
  q.set("after", next);
  return el("p", {}, el("a", { href: "#/" + name + "?" + q.toString() }, "next page →"));
}

function graph(steps) {
  // Layered layout: a step's column is one more than its deepest parent's. Keyed by step name, so
  // prototype-less: a step named `constructor`, `toString` or `__proto__` is a step like any other.
  const names = Object.keys(steps);
  const isStep = (name) => Object.prototype.hasOwnProperty.call(steps, name);
  const depth = Object.create(null);
  const depthOf = (name, seen) => {
    if (depth[name] !== undefined) return depth[name];
    if (seen.has(name)) return 0;
    seen.add(name);
    const parents = (steps[name].depends_on || []).filter(isStep);
    depth[name] = parents.length ? 1 + Math.max(...parents.map((p) => depthOf(p, seen))) : 0;
    return depth[name];
  };
  names.forEach((n) => depthOf(n, new Set()));
  const rows = Object.create(null);
  const pos = Object.create(null);
  for (const n of names.slice(0, 500)) {
    const d = depth[n];
    rows[d] = (rows[d] || 0) + 1;
    pos[n] = { x: 20 + d * 190, y: 20 + (rows[d] - 1) * 56 };
  }
  const ns = "http://www.w3.org/2000/svg";
  const svgEl = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const width = 40 + (Math.max(0, ...Object.values(depth)) + 1) * 190;
  const height = 40 + Math.max(1, ...Object.values(rows)) * 56;
  const svg = svgEl("svg", { class: "graph", width, height, viewBox: "0 0 " + width + " " + height });
  for (const n of Object.keys(pos)) {
    for (const p of steps[n].depends_on || []) {
      if (!pos[p]) continue;
      svg.append(svgEl("line", { x1: pos[p].x + 150, y1: pos[p].y + 20, x2: pos[n].x, y2: pos[n].y + 20 }));
    }
  }
  for (const [n, at] of Object.entries(pos)) {
    const s = steps[n];
    const g = svgEl("g", { "data-step": n });
    g.append(svgEl("rect", { x: at.x, y: at.y, width: 150, height: 40, class: String(s.state) }));
    g.append(svgEl("text", { x: at.x + 8, y: at.y + 16 }, n.length > 20 ? n.slice(0, 19) + "…" : n));
    g.append(svgEl("text", { x: at.x + 8, y: at.y + 32 }, String(s.state) + (s.instances ? " ×" + s.instances : "")));
    svg.append(g);
  }
  return svg;
}

function eventItem(e) {
  return el("li", { "data-id": e.id }, new Date(e.at).toLocaleTimeString(), " ", jobLink(e.id), " ", e.capability || "", " → ", stateCell(e.state));
}

// ---- routing and rendering -------------------------------------------------------------------
function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, search] = hash.split("?");
  const [name, ...rest] = path.split("/");
  return { name: name in views ? name : "", arg: name === "job" || name === "workflow" ? decodeURIComponent(rest.join("/")) : (search || "") };
}

let rendering = false;
let again = false;
async function render() {
  if (rendering) { again = true; return; }  // one render at a time; the last request wins
  rendering = true;
  try {
    do {
      again = false;
      current = route();
      for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.getAttribute("href") === "#/" + current.name);
      try {
        const nodes = await views[current.name](current.arg);
        if (!again) replaceView(nodes.flat().filter((n) => n));
      } catch (err) {
        view.replaceChildren(el("p", { class: "muted", id: "error" }, "could not load: " + err.message));
      }
    } while (again);
  } finally {
    rendering = false;
  }
}

// A live refresh must not undo what someone is typing: inputs they changed keep their text and focus.
function replaceView(nodes) {
  const typed = [...view.querySelectorAll("input[id]")].filter((i) => i.value !== i.defaultValue);
  const focused = document.activeElement && document.activeElement.id;
  view.replaceChildren(...nodes);
  for (const old of typed) {
    const fresh = document.getElementById(old.id);
    if (fresh) fresh.value = old.value;
  }
  if (focused && view.querySelector("#" + CSS.escape(focused))) document.getElementById(focused).focus();
}

function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; render(); }, 1000);
}

function onJobEvent(e) {
  e.at = Date.now();
  recent.unshift(e);
  recent.length = Math.min(recent.length, 50);
  const list = document.getElementById("recent");
  if (list) { list.prepend(eventItem(e)); while (list.children.length > 50) list.lastChild.remove(); }
  if (current.name === "job") { if (e.id === current.arg) render(); return; }
  if (current.name === "workflow") { if (e.workflow === current.arg) refreshSoon(); return; }
  if (["", "running", "jobs", "dead"].includes(current.name)) refreshSoon();
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events");
  source.addEventListener("hello", (m) => {
    const hello = JSON.parse(m.data);
    live.textContent = hello.live ? "live" : "no live feed";
    live.className = "pill " + (hello.live ? "on" : "off");
  });
  source.addEventListener("job", (m) => onJobEvent(JSON.parse(m.data)));
  source.addEventListener("resync", () => render());
  source.onerror = () => {
    live.textContent = "reconnecting…";
    live.className = "pill off";
    // A refused stream (503: the dashboard serves as many as it may) is closed for good by the browser,
    // not retried as a dropped one is: try again later.
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 10000 + Math.random() * 10000);
  };
}

async function checkRole() {
  const role = document.getElementById("role");
  try {
    const response = await fetch("/api/session", { headers: { "X-Jetsched-Token": sessionStorage.getItem(TOKEN_KEY) || "" } });
    const s = await response.json();
    role.textContent = !s.operator ? "read-only" : s.authorized ? "operator" : "read-only (token needed)";
    role.className = "pill " + (s.authorized ? "on" : "");
  } catch (err) {
    role.textContent = "?";
  }
}

function init() {
  // A token may come in the URL fragment (`jetsched dev` prints such a link); it never reaches the server
  // in a URL, only in the X-Jetsched-Token header, and is kept for this tab only.
  const m = location.hash.match(/^#token=([A-Za-z0-9_\-]{16,256})$/);
  if (m) { sessionStorage.setItem(TOKEN_KEY, m[1]); history.replaceState(null, "", location.pathname + "#/"); }
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("token");
    if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value); else sessionStorage.removeItem(TOKEN_KEY);
    input.value = "";
    checkRole();
  });
  window.addEventListener("hashchange", render);
  checkRole();
  connect();
  render();
}

init();
