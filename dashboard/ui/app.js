// The Burla dashboard: polls /api/cluster and /api/jobs, and follows the selected
// job's logs over server-sent events (/api/jobs/{id}/logs).
"use strict";

const maxLogLines = 5000;
let selected = null;   // the job whose details and logs are shown
let logSource = null;  // its EventSource
let logLines = 0;

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ""));
  return e;
}

function duration(ms) {
  if (ms < 10000) return (ms / 1000).toFixed(1) + "s";
  const s = Math.round(ms / 1000);
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
}

// The client's own steps read "uploading inputs 1200/5000 (12s)"; the cluster's,
// "waiting 42s: 3 nodes booting" (as status.Waiting.Text). The server counts the
// seconds, so that the browser's clock does not matter.
const clientReasons = ["uploading-binary", "building-environment", "uploading-inputs"];

function waitingText(w) {
  const d = duration(Math.max(w.seconds || 0, 0) * 1000);
  return clientReasons.includes(w.reason) ? w.detail + " (" + d + ")" : "waiting " + d + ": " + w.detail;
}

function progressCell(j) {
  let frac = null, text = "";
  if (j.state === "Succeeded") { frac = 1; text = "done"; }
  else if (j.progress && j.progress.sealed && j.progress.chunks > 0) {
    frac = j.progress.done / j.progress.chunks;
    text = Math.round(frac * 100) + "% (" + j.progress.in_flight + " chunks running, " + j.progress.waiting + " waiting)";
  } else if (j.progress) { text = "uploading inputs"; }
  else if (!["Failed", "Cancelled"].includes(j.state)) { text = j.state === "Placing" ? "waiting for nodes" : ""; }
  if (j.waiting) text = ""; // the wait says it better
  const bar = el("span", { class: "bar", "data-fraction": frac === null ? "" : frac.toFixed(3) },
    el("span", { style: "" }));
  bar.firstChild.style.width = ((frac || 0) * 100) + "%";
  const td = el("td", { class: "progress" }, bar, " ", el("span", { class: "muted" }, text));
  if (j.waiting) {
    td.append(" ", el("span", { class: "waiting", "data-reason": j.waiting.reason, title: "since " + new Date(Date.parse(j.waiting.since)).toLocaleString() },
      waitingText(j.waiting)));
  }
  return td;
}

function link(href, text) {
  return href ? el("a", { class: "temporal", href, target: "_blank", rel: "noopener" }, text) : "";
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function refreshCluster() {
  const c = await getJSON("api/cluster");
  $("#cluster-name").textContent = c.name;
  const cl = $("#cluster-link");
  if (c.links && c.links.workflow) { cl.href = c.links.workflow; cl.hidden = false; }
  const sb = c.standby || {};
  const dl = $("#standby");
  dl.replaceChildren();
  const add = (k, v) => { if (v !== undefined && v !== "" && v !== 0) dl.append(el("dt", {}, k), el("dd", { "data-key": k }, v)); };
  add("Nodes", String(sb.nodes ?? 0));
  add("CPUs per node", sb.cpus);
  add("RAM per node", sb.ram_mb ? sb.ram_mb + " MB" : "");
  add("Provider", sb.provider);
  add("Max nodes", sb.max_nodes);
  add("Max grow", sb.max_grow);
  add("Environments", (sb.envs || []).join(", "));
  add("Project / zone", [sb.project, sb.zone].filter(Boolean).join(" / "));
  if (c.shutting_down) add("Shutting down", "yes");
  add("Nodes lost", c.lost);
  if (c.error) add("Cluster workflow", c.error);
  const tb = $("#nodes tbody");
  tb.replaceChildren(...c.nodes.map((n) => el("tr", { class: "node", "data-id": n.id },
    el("td", {}, n.id),
    el("td", { class: "state state-" + (n.state || "unmanaged") }, n.state || (n.live ? "unmanaged" : "")),
    el("td", {}, n.cpus),
    el("td", { class: "warm" }, n.live ? n.warm : "-"),
    el("td", { class: "busy" }, n.live ? n.busy : "-"),
    el("td", {}, n.job || ""),
    el("td", {}, n.metrics ? el("a", { href: n.metrics, target: "_blank", rel: "noopener" }, "metrics") : ""))));
  $("#node-count").textContent = c.nodes.length + " nodes, " +
    c.nodes.reduce((a, n) => a + (n.warm || 0), 0) + " containers warm, " +
    c.nodes.reduce((a, n) => a + (n.busy || 0), 0) + " busy";
}

async function refreshJobs() {
  const jobs = await getJSON("api/jobs?limit=50");
  const now = Date.now();
  const tb = $("#jobs tbody");
  tb.replaceChildren(...jobs.map((j) => {
    const started = Date.parse(j.started);
    const ended = j.ended ? Date.parse(j.ended) : now;
    const tr = el("tr", { class: "job" + (j.id === selected ? " selected" : ""), "data-id": j.id, "data-state": j.state },
      el("td", {}, j.id),
      el("td", { class: "state state-" + j.state }, j.state),
      el("td", {}, j.function),
      el("td", {}, j.inputs),
      progressCell(j),
      el("td", {}, new Date(started).toLocaleTimeString()),
      el("td", {}, duration(ended - started)),
      el("td", {}, link(j.link, "Temporal")));
    tr.addEventListener("click", (ev) => { if (ev.target.tagName !== "A") select(j.id); });
    return tr;
  }));
}

async function refreshJob() {
  if (!selected) return;
  const j = await getJSON("api/jobs/" + encodeURIComponent(selected));
  $("#job-state").textContent = j.state;
  $("#job-state").className = "state state-" + j.state;
  const jl = $("#job-link");
  if (j.link) { jl.href = j.link; jl.hidden = false; } else { jl.hidden = true; }
  const cb = $("#job-cancel");
  if (cb.dataset.job !== j.id) { cb.dataset.job = j.id; disarm(cb); }
  cb.hidden = !["Placing", "Running"].includes(j.state);
  const dl = $("#job-details");
  dl.replaceChildren();
  const add = (k, v) => { if (v !== undefined && v !== "") dl.append(el("dt", {}, k), el("dd", { "data-key": k }, v)); };
  add("Function", j.function);
  add("Inputs", String(j.inputs));
  if (j.waiting) add("Waiting", waitingText(j.waiting) + " [" + j.waiting.reason + "]");
  if (j.progress && j.progress.sealed) add("Chunks", j.progress.done + " of " + j.progress.chunks + " done, " + j.progress.in_flight + " running, " + j.progress.waiting + " waiting");
  if (j.nodes) add("Nodes", j.nodes.map((n) => n.id + " (" + n.busy + " busy)").join(", "));
  if (j.spec) add("Per call", j.spec.func_cpu + " CPU" + (j.spec.func_ram_mb ? ", " + j.spec.func_ram_mb + " MB" : ""));
  add("Started", new Date(Date.parse(j.started)).toLocaleString());
  if (j.ended) add("Took", duration(Date.parse(j.ended) - Date.parse(j.started)));
  if (j.error) add("Error", j.error);
}

// The cancel button asks to be clicked twice, and then posts the request.
function disarm(cb) {
  cb.dataset.state = "";
  cb.disabled = false;
  cb.textContent = "Cancel job";
}

async function cancelClicked() {
  const cb = $("#job-cancel");
  const id = cb.dataset.job;
  if (cb.dataset.state !== "armed") {
    cb.dataset.state = "armed";
    cb.textContent = "Cancel " + id + "? Click again";
    setTimeout(() => { if (cb.dataset.state === "armed" && cb.dataset.job === id) disarm(cb); }, 5000);
    return;
  }
  cb.dataset.state = "sent";
  cb.disabled = true;
  cb.textContent = "Cancelling…";
  try {
    const r = await fetch("api/jobs/" + encodeURIComponent(id) + "/cancel", { method: "POST", cache: "no-store" });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
  } catch (err) {
    disarm(cb);
    showError(err);
  }
}

function appendLines(lines) {
  const pre = $("#logs");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  const frag = document.createDocumentFragment();
  for (const l of lines) {
    frag.append(el("span", { class: "line" + (l.e ? " stderr" : "") }, el("span", { class: "idx" }, "[" + l.i + "] "), l.t + "\n"));
  }
  pre.append(frag);
  logLines += lines.length;
  while (pre.childNodes.length > maxLogLines) pre.firstChild.remove();
  $("#log-count").textContent = logLines + " lines" + (logLines > maxLogLines ? " (the last " + maxLogLines + " shown)" : "");
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function select(id) {
  selected = id;
  location.hash = "job=" + id;
  $("#job").hidden = false;
  $("#job-id").textContent = id;
  $("#log-input").value = "";
  for (const tr of document.querySelectorAll("tr.job")) tr.classList.toggle("selected", tr.dataset.id === id);
  openLogs();
  refreshJob().catch(showError);
}

// openLogs follows the selected job's logs, those of the input in the filter
// box alone if it holds one. A stream that drops is reopened by EventSource,
// which sends the last event's ID: the dashboard resumes after the lines it
// counts, so none shows twice.
function openLogs() {
  if (logSource) logSource.close();
  logLines = 0;
  $("#logs").replaceChildren();
  delete $("#logs").dataset.ended;
  $("#log-count").textContent = "";
  const input = $("#log-input").value.trim();
  logSource = new EventSource("api/jobs/" + encodeURIComponent(selected) + "/logs" + (input ? "?input=" + encodeURIComponent(input) : ""));
  logSource.addEventListener("lines", (ev) => appendLines(JSON.parse(ev.data)));
  logSource.addEventListener("end", (ev) => {
    const end = JSON.parse(ev.data);
    $("#logs").dataset.ended = end.state;
    logSource.close();
    refreshJob().catch(showError);
  });
}

function showError(err) {
  const p = $("#error");
  p.textContent = String(err && err.message || err);
  p.hidden = false;
}

async function tick() {
  try {
    await Promise.all([refreshCluster(), refreshJobs(), refreshJob()]);
    $("#error").hidden = true;
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    showError(err);
  }
}

$("#job-cancel").addEventListener("click", () => { cancelClicked(); });
$("#log-input").addEventListener("change", () => { if (selected) openLogs(); });
const m = location.hash.match(/job=([a-z0-9-]+)/);
if (m) select(m[1]);
tick();
setInterval(tick, 1000);
