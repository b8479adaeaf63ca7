// The dashboard: reads /api/v1 with the session cookie, follows /api/v1/events.
// Data goes in with textContent only: nothing from a task is ever parsed as HTML.
"use strict";

const API = "/api/v1";
let selected = null;
let refreshing = null;
let diffShown = ""; // the task, status and iterations the diff on the page is of

async function call(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  const data = await response.json().catch(() => null);
  if (response.status === 401) document.getElementById("signin").hidden = false;
  if (!response.ok) throw new Error(data && data.error ? data.error.message : response.statusText);
  return data;
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}

const score = (s) => (s === null || s === undefined ? "" : Number(s).toFixed(2));

async function loadTasks() {
  const { tasks } = await call("GET", "/tasks?limit=50");
  const body = document.querySelector("#tasks tbody");
  body.replaceChildren();
  for (const t of tasks) {
    const row = body.insertRow();
    row.id = "task-" + t.id;
    row.dataset.status = t.status;
    if (t.id === selected) row.className = "selected";
    cell(row, t.id.slice(0, 10));
    cell(row, t.status, "status status-" + t.status);
    cell(row, score(t.score), "score");
    cell(row, t.iterations);
    cell(row, t.tokens);
    cell(row, "$" + Number(t.cost_usd || 0).toFixed(4));
    cell(row, t.description);
    const act = row.insertCell();
    if (t.status === "running") {
      const button = document.createElement("button");
      button.textContent = "Cancel";
      button.className = "cancel";
      button.onclick = (e) => { e.stopPropagation(); call("POST", `/tasks/${t.id}/cancel`).catch(alert); };
      act.append(button);
    }
    row.onclick = () => { selected = t.id; loadDetail().catch(() => {}); loadTasks().catch(() => {}); };
  }
}

async function loadDetail() {
  if (!selected) return;
  const t = await call("GET", "/tasks/" + selected);
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-id").textContent = `${t.id} (${t.status})`;
  document.getElementById("detail-summary").textContent = t.summary || t.description;
  const body = document.querySelector("#iterations tbody");
  body.replaceChildren();
  for (const it of t.iterations_detail) {
    const row = body.insertRow();
    row.className = "iteration";
    cell(row, it.n);
    cell(row, score(it.score), "score");
    cell(row, score(it.judge_score));
    cell(row, it.decision);
    cell(row, it.tool_calls);
    cell(row, it.tokens);
  }
  const findings = document.getElementById("findings");
  findings.replaceChildren();
  for (const f of t.findings) {
    const li = document.createElement("li");
    li.textContent = `#${f.iteration} ${f.severity}: ${f.title}`;
    findings.append(li);
  }
  await loadDiff(t);
}

async function loadDiff(t) {
  // The diff changes only with a new iteration or the end of the task.
  const key = `${t.id} ${t.status} ${t.iterations}`;
  if (key === diffShown) return;
  const d = await call("GET", `/tasks/${t.id}/diff`);
  const title = document.getElementById("diff-title");
  const which = d.best ? "the best" : "the latest so far";
  title.textContent = d.iteration === null ? "Diff" : `Diff of iteration ${d.iteration} (${which})`;
  // Model and repository text: textContent only, never parsed as HTML.
  document.getElementById("diff").textContent =
    d.iteration === null ? "no iteration yet" : (d.diff || "no changes") + (d.truncated ? "\n[cut at 1 MiB]" : "");
  diffShown = key;
}

async function loadActors() {
  const status = await call("GET", "/status");
  const body = document.querySelector("#actors tbody");
  body.replaceChildren();
  for (const a of status.orchestrator.actors) {
    const row = body.insertRow();
    for (const v of [a.name, a.role, a.state, a.pid, a.restarts, a.last_heartbeat]) cell(row, v);
  }
}

function refreshSoon() {
  // Events come in bursts; one reload per burst.
  if (refreshing) return;
  refreshing = setTimeout(() => {
    refreshing = null;
    loadTasks().catch(() => {});
    loadDetail().catch(() => {});
    loadActors().catch(() => {}); // states and heartbeats are not events of their own
  }, 150);
}

function follow() {
  const live = document.getElementById("live");
  // Reconnects by itself after a dropped connection (retry: 2 s), but gives up for good on
  // an answer other than 200 (an orchestrator still starting, a 503): then start anew.
  const events = new EventSource(API + "/events");
  events.onopen = () => {
    live.textContent = "live";
    live.className = "on";
    document.getElementById("signin").hidden = true;
    refreshSoon();
    loadActors().catch(() => {});
  };
  events.onerror = () => {
    live.textContent = "reconnecting";
    live.className = "off";
    if (events.readyState === EventSource.CLOSED) setTimeout(follow, 2000);
  };
  events.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.kind.startsWith("actor.")) loadActors().catch(() => {});
    if (event.kind.startsWith("task.") || event.kind.startsWith("eval.")) refreshSoon();
  };
}

document.getElementById("task-form").onsubmit = async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const body = { description: form.get("description"), cwd: form.get("cwd") };
  if (form.get("model")) body.model = form.get("model");
  if (form.get("iterations")) body.iterations = Number(form.get("iterations"));
  const error = document.getElementById("form-error");
  error.textContent = "";
  try {
    const created = await call("POST", "/tasks", body);
    selected = created.id;
    refreshSoon();
  } catch (err) {
    error.textContent = err.message;
  }
};

loadTasks().catch(() => {});
loadActors().catch(() => {});
follow();
