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
  const costs = document.querySelector("#task-costs tbody");
  costs.replaceChildren();
  for (const c of t.cost_by_role) {
    const row = costs.insertRow();
    row.dataset.role = c.role;
    cell(row, c.role, "role");
    cell(row, c.model);
    cell(row, c.calls);
    cell(row, c.prompt_tokens + c.completion_tokens);
    cell(row, "$" + Number(c.cost_usd).toFixed(4), "cost");
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

// Teams: a box per member (kept across reloads, so a half-typed steering line survives),
// its transcript in a <pre> (textContent only) and a steering input.
let teamsLoading = null;
let teamsAgain = false;

function memberBox(team, m) {
  const id = "member-" + m.name.replace(/[^A-Za-z0-9_-]/g, "_");
  let box = document.getElementById(id);
  if (box) return box;
  box = document.createElement("div");
  box.id = id;
  box.className = "member";
  box.dataset.member = m.name;
  const head = document.createElement("h4");
  const name = document.createElement("span");
  name.textContent = m.name;
  const doing = document.createElement("span");
  doing.className = "doing";
  head.append(name, doing);
  const pre = document.createElement("pre");
  pre.className = "transcript";
  box.append(head, pre);
  if (m.steerable) box.append(steerForm(team, m));
  return box;
}

function steerForm(team, m) {
  const form = document.createElement("form");
  form.className = "steer";
  const input = document.createElement("input");
  input.name = "text";
  input.placeholder = `a steering line for ${m.name}: it reads it on its next turn`;
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = "Steer";
  const said = document.createElement("output");
  form.append(input, button, said);
  form.onsubmit = async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    const path = `/teams/${encodeURIComponent(team)}/members/${encodeURIComponent(m.name)}/steer`;
    try {
      await call("POST", path, { text });
      input.value = "";
      said.textContent = "sent";
      refreshTeams();
    } catch (err) {
      said.textContent = err.message;
    }
  };
  return form;
}

async function loadTeams() {
  const { teams } = await call("GET", "/teams");
  const holder = document.getElementById("teams");
  document.getElementById("no-teams").hidden = teams.length > 0;
  const keep = [];
  for (const team of teams) {
    let box = document.getElementById("team-" + team.name);
    if (!box) {
      box = document.createElement("div");
      box.id = "team-" + team.name;
      const title = document.createElement("h3");
      box.append(title);
    }
    box.firstChild.textContent = `${team.name} (${team.mode})`;
    const members = [];
    for (const m of team.members) {
      const mbox = memberBox(team.name, m);
      const what = m.task_id ? ` ${m.task_id.slice(0, 10)}${m.subtask ? "/" + m.subtask : ""}` : "";
      mbox.querySelector(".doing").textContent =
        `${m.state}${m.busy ? " busy" + what : m.state === "ready" ? " idle" : ""}`;
      members.push(mbox);
      const path = `/teams/${encodeURIComponent(team.name)}/members/${encodeURIComponent(m.name)}/transcript`;
      const t = await call("GET", path);
      const pre = mbox.querySelector(".transcript");
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = t.text || "nothing yet";
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
    box.replaceChildren(box.firstChild, ...members);
    keep.push(box);
  }
  holder.replaceChildren(...keep);
}

function refreshTeams() {
  // One load at a time; events during one ask for one more after it.
  if (teamsLoading) { teamsAgain = true; return; }
  teamsLoading = loadTeams().catch(() => {}).finally(() => {
    teamsLoading = null;
    if (teamsAgain) { teamsAgain = false; setTimeout(refreshTeams, 200); }
  });
}

// Learning: proposed skills with Approve and Dismiss, and the learnings recall draws on.
async function loadLearning() {
  const [{ proposals }, { learnings }] = await Promise.all([
    call("GET", "/skills/proposed"),
    call("GET", "/learnings?limit=50"),
  ]);
  document.getElementById("no-proposals").hidden = proposals.length > 0;
  const items = proposals.map((p) => {
    const li = document.createElement("li");
    li.id = "proposal-" + p.name.replace(/[^A-Za-z0-9_-]/g, "_");
    li.className = "proposal";
    li.dataset.name = p.name;
    const name = document.createElement("strong");
    name.textContent = p.name;
    const what = document.createElement("span");
    what.textContent = " " + p.description + " ";
    li.append(name, what, decide(p.name, "approve", "Approve"), decide(p.name, "dismiss", "Dismiss"));
    return li;
  });
  document.getElementById("proposals").replaceChildren(...items);
  const body = document.querySelector("#learnings tbody");
  body.replaceChildren();
  for (const l of learnings) {
    const row = body.insertRow();
    cell(row, l.kind);
    cell(row, score(l.score), "score");
    cell(row, score(l.confidence));
    cell(row, l.uses, "uses");
    cell(row, l.last_used_at);
    cell(row, l.content, "content");
  }
}

function decide(name, action, label) {
  const button = document.createElement("button");
  button.className = action;
  button.textContent = label;
  button.onclick = async () => {
    const said = document.getElementById("proposal-said");
    try {
      const done = await call("POST", `/skills/proposed/${encodeURIComponent(name)}/${action}`);
      said.textContent = `${done.name} ${done.decision}: ${done.path}`;
    } catch (err) {
      said.textContent = err.message;
    }
    loadLearning().catch(() => {});
  };
  return button;
}

function refreshSoon() {
  // Events come in bursts; one reload per burst.
  if (refreshing) return;
  refreshing = setTimeout(() => {
    refreshing = null;
    loadTasks().catch(() => {});
    loadDetail().catch(() => {});
    loadActors().catch(() => {}); // states and heartbeats are not events of their own
    refreshTeams();
    loadLearning().catch(() => {}); // a task's end brings learnings, and mining proposals
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
    refreshTeams();
    if (window.views) views.reload(); // the flow, batches and costs (views.js)
  };
  events.onerror = () => {
    live.textContent = "reconnecting";
    live.className = "off";
    if (events.readyState === EventSource.CLOSED) setTimeout(follow, 2000);
  };
  events.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (window.views) views.onEvent(event);
    if (event.kind.startsWith("actor.")) loadActors().catch(() => {});
    if (/^(actor|team|exec)\./.test(event.kind)) refreshTeams();
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
refreshTeams();
loadLearning().catch(() => {});
follow();
