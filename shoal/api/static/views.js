// The dashboard's message flow, batches and costs over time. Each view loads once from
// /api/v1, then follows the event stream (app.js hands every event to views.onEvent):
// flow.summary adds counts, batch.* events update the batches, usage.recorded adds a cost.
// Text goes in with textContent only; the charts are SVG elements made one by one.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f5fbf", "#2e8540", "#c0622d", "#7a3fb0", "#b8932a", "#2a8a8a", "#a8325e", "#5a6273"];

function svg(tag, attrs) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) element.setAttribute(name, String(value));
  return element;
}

function svgText(x, y, text, attrs) {
  const element = svg("text", { x, y, ...(attrs || {}) });
  element.textContent = text;
  return element;
}

function later(fn, ms) {
  // One run per burst of calls.
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
}

const usd = (v) => "$" + Number(v || 0).toFixed(4);

// --- the message flow --------------------------------------------------------------

const flow = { edges: new Map(), fresh: new Set(), loaded: false };
const flowKey = (e) => `${e.sender}\u0000${e.recipient}\u0000${e.kind}`;

async function loadFlow() {
  const data = await call("GET", "/flow?minutes=10");
  flow.edges = new Map(data.edges.map((e) => [flowKey(e), { ...e }]));
  flow.loaded = true;
  drawFlow();
}

function addFlow(summary) {
  flow.fresh = new Set();
  for (const e of summary.edges) {
    const key = flowKey(e);
    const known = flow.edges.get(key);
    if (known) {
      known.count += e.count;
      known.last_at = summary.at;
    } else {
      flow.edges.set(key, { ...e, last_at: summary.at });
    }
    flow.fresh.add(key);
  }
  drawFlowSoon();
}

function drawFlow() {
  const edges = [...flow.edges.values()].sort((a, b) => b.count - a.count);
  document.getElementById("no-flow").hidden = edges.length > 0;
  const body = document.querySelector("#flow-table tbody");
  body.replaceChildren();
  for (const e of edges.slice(0, 200)) {
    const row = body.insertRow();
    row.className = flow.fresh.has(flowKey(e)) ? "edge fresh" : "edge";
    row.dataset.sender = e.sender;
    row.dataset.recipient = e.recipient;
    row.dataset.kind = e.kind;
    cell(row, e.sender);
    cell(row, e.recipient === "*" ? "* (events)" : e.recipient);
    cell(row, e.kind, "kind");
    cell(row, e.count, "count");
  }
  drawFlowGraph(edges);
}
const drawFlowSoon = later(drawFlow, 250);

function flowNodes(edges) {
  // The busiest parties (at most 12), the orchestrator in the middle, the rest around it.
  const traffic = new Map();
  for (const e of edges) {
    for (const name of [e.sender, e.recipient]) traffic.set(name, (traffic.get(name) || 0) + e.count);
  }
  const names = [...traffic.keys()].sort((a, b) => traffic.get(b) - traffic.get(a)).slice(0, 12);
  const around = names.filter((n) => n !== "orchestrator").sort();
  const places = new Map();
  const [cx, cy, rx, ry] = [320, 170, 250, 125];
  around.forEach((name, i) => {
    const angle = (2 * Math.PI * i) / around.length - Math.PI / 2;
    places.set(name, [cx + rx * Math.cos(angle), cy + ry * Math.sin(angle)]);
  });
  if (names.includes("orchestrator")) places.set("orchestrator", [cx, cy]);
  return places;
}

function drawFlowGraph(edges) {
  const graph = document.getElementById("flow-graph");
  const places = flowNodes(edges);
  const pairs = new Map(); // sender -> recipient: the kinds between them
  for (const e of edges) {
    if (!places.has(e.sender) || !places.has(e.recipient) || e.sender === e.recipient) continue;
    const key = `${e.sender}\u0000${e.recipient}`;
    const pair = pairs.get(key) || { sender: e.sender, recipient: e.recipient, count: 0, kinds: [], fresh: false };
    pair.count += e.count;
    pair.kinds.push(`${e.kind} ×${e.count}`);
    pair.fresh = pair.fresh || flow.fresh.has(flowKey(e));
    pairs.set(key, pair);
  }
  const arrow = svg("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9,
    markerUnits: "userSpaceOnUse", orient: "auto",
  });
  arrow.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8a93a6" }));
  const defs = svg("defs");
  defs.append(arrow);
  const parts = [defs];
  for (const pair of pairs.values()) parts.push(flowArrow(pair, places));
  for (const [name, [x, y]] of places) {
    const node = svg("g", { class: "node" });
    node.dataset.name = name;
    node.append(svg("circle", { cx: x, cy: y, r: 7 }), svgText(x, y - 12, name === "*" ? "* (events)" : name, { "text-anchor": "middle" }));
    parts.push(node);
  }
  graph.replaceChildren(...parts);
}

function flowArrow(pair, places) {
  // A slight curve, so the two directions between two parties are two arrows.
  const [x1, y1] = places.get(pair.sender);
  const [x2, y2] = places.get(pair.recipient);
  const [dx, dy] = [x2 - x1, y2 - y1];
  const length = Math.hypot(dx, dy) || 1;
  const [nx, ny] = [-dy / length, dx / length];
  const [mx, my] = [(x1 + x2) / 2 + nx * 18, (y1 + y2) / 2 + ny * 18];
  const shorten = (x, y, tx, ty) => {
    const d = Math.hypot(tx - x, ty - y) || 1;
    return [x + ((tx - x) * 10) / d, y + ((ty - y) * 10) / d];
  };
  const [sx, sy] = shorten(x1, y1, mx, my);
  const [ex, ey] = shorten(x2, y2, mx, my);
  const width = Math.min(6, 1 + Math.log2(pair.count));
  const path = svg("path", {
    d: `M ${sx} ${sy} Q ${mx} ${my} ${ex} ${ey}`,
    class: pair.fresh ? "arrow fresh" : "arrow",
    "stroke-width": width.toFixed(1),
    "marker-end": "url(#arrow)",
  });
  const title = svg("title");
  title.textContent = `${pair.sender} → ${pair.recipient}\n${pair.kinds.join("\n")}`;
  path.append(title);
  return path;
}

// --- batches -------------------------------------------------------------------------

const batches = { selected: null, started: new Set() };

async function loadBatches() {
  const { batches: list } = await call("GET", "/batches?limit=20");
  document.getElementById("no-batches").hidden = list.length > 0;
  if (!batches.selected && list.length) batches.selected = list[0].id;
  const body = document.querySelector("#batches tbody");
  body.replaceChildren();
  for (const b of list) {
    const row = body.insertRow();
    row.id = "batch-" + b.id;
    row.dataset.status = b.status;
    if (b.id === batches.selected) row.className = "selected";
    cell(row, b.id.slice(0, 10));
    cell(row, b.status, "status status-" + b.status);
    cell(row, `${b.finished}/${b.units}`, "done");
    cell(row, b.accepted);
    cell(row, b.not_accepted);
    cell(row, b.backend);
    cell(row, usd(b.cost_usd));
    cell(row, b.instruction);
    row.onclick = () => { batches.selected = b.id; loadBatches().catch(() => {}); loadUnits().catch(() => {}); };
  }
}

async function loadUnits() {
  if (!batches.selected) return;
  const b = await call("GET", "/batches/" + batches.selected);
  document.getElementById("batch-detail").hidden = false;
  document.getElementById("batch-title").textContent =
    `Batch ${b.id} (${b.status}): ${b.finished} of ${b.units} units done, ${b.accepted} accepted`;
  const body = document.querySelector("#batch-units tbody");
  body.replaceChildren();
  for (const u of b.units_detail) {
    const running = u.status === "pending" && b.status === "running" && batches.started.has(`${b.id} ${u.unit_id}`);
    const status = running ? "running" : u.status;
    const row = body.insertRow();
    row.id = "unit-" + u.unit_id;
    row.dataset.status = status;
    cell(row, u.name);
    cell(row, status, "status status-" + status);
    cell(row, u.attempts);
    cell(row, u.score === null ? "" : Number(u.score).toFixed(2), "score");
    cell(row, u.verify_passed === null ? "" : u.verify_passed ? "passed" : "failed");
    cell(row, u.tokens);
    cell(row, usd(u.cost_usd));
    cell(row, u.duration_s === null ? "" : `${Number(u.duration_s).toFixed(1)}s`);
    cell(row, u.error || u.summary || "", "unit-note");
  }
}

function unitStarted(p) {
  batches.started.add(`${p.batch_id} ${p.unit_id}`);
  if (!batches.selected) batches.selected = p.batch_id;
  const row = document.getElementById("unit-" + p.unit_id);
  if (p.batch_id === batches.selected && row && row.dataset.status === "pending") {
    row.dataset.status = "running";
    row.cells[1].textContent = "running";
    row.cells[1].className = "status status-running";
    row.cells[2].textContent = p.attempt;
  }
}

const loadBatchesSoon = later(() => { loadBatches().catch(() => {}); loadUnits().catch(() => {}); }, 200);

// --- costs over time -----------------------------------------------------------------

const STEPS = { minute: 60e3, hour: 3600e3, day: 86400e3 };
const LAST = { minute: 60, hour: 24, day: 30 };
const costs = { data: null };

function costChoice() {
  const form = document.getElementById("cost-form");
  return { bucket: form.bucket.value, by: form.by.value, metric: form.metric.value };
}

async function loadCosts() {
  const { bucket, by } = costChoice();
  costs.data = await call("GET", `/cost/series?bucket=${bucket}&by=${by}&last=${LAST[bucket]}`);
  drawCosts();
}

function addCost(p) {
  // One more usage_events row, as the series would count it.
  const data = costs.data;
  if (!data) return;
  const step = STEPS[data.bucket];
  const start = new Date(Math.floor((p.at * 1000) / step) * step).toISOString().replace(".000Z", "Z");
  const slots = Date.parse(data.since) + LAST[data.bucket] * step;
  if (Date.parse(start) >= slots) { loadCostsSoon(); return; } // a new bucket: read again
  const key = data.by === "model" ? p.model || "?" : p.role;
  let point = data.points.find((q) => Date.parse(q.t) === Date.parse(start) && q.key === key);
  if (!point) {
    point = { t: start, key, calls: 0, tokens: 0, cost_usd: 0 };
    data.points.push(point);
    if (!data.keys.includes(key)) data.keys.push(key);
  }
  point.calls += p.calls;
  point.tokens += p.prompt_tokens + p.completion_tokens;
  point.cost_usd += p.cost_usd;
  data.total_usd += p.cost_usd;
  data.total_tokens += p.prompt_tokens + p.completion_tokens;
  drawCostsSoon();
}

function drawCosts() {
  const data = costs.data;
  const { metric } = costChoice();
  const value = (p) => (metric === "tokens" ? p.tokens : p.cost_usd);
  const step = STEPS[data.bucket];
  const slots = LAST[data.bucket];
  const first = Date.parse(data.since);
  const stacks = new Map(); // slot -> [point...]
  for (const p of data.points) {
    const slot = Math.round((Date.parse(p.t) - first) / step);
    if (slot >= 0 && slot < slots) stacks.set(slot, [...(stacks.get(slot) || []), p]);
  }
  const top = Math.max(0, ...[...stacks.values()].map((ps) => ps.reduce((s, p) => s + value(p), 0)));
  const [left, right, upper, lower] = [60, 630, 10, 190];
  const width = (right - left) / slots;
  const y = (v) => lower - (top ? ((lower - upper) * v) / top : 0);
  const parts = [];
  const digits = top >= 10 ? 0 : top >= 1 ? 2 : top >= 0.01 ? 3 : 4;
  for (let i = 0; i <= 4; i += 1) {
    const v = (top * i) / 4;
    const label = metric === "tokens" ? String(Math.round(v)) : "$" + v.toFixed(digits);
    parts.push(svg("line", { x1: left, x2: right, y1: y(v), y2: y(v), class: "grid" }));
    parts.push(svgText(left - 4, y(v) + 4, label, { "text-anchor": "end", class: "axis" }));
  }
  const colour = (key) => COLOURS[Math.max(0, data.keys.indexOf(key)) % COLOURS.length];
  for (const [slot, points] of stacks) {
    let base = 0;
    for (const p of points.sort((a, b) => data.keys.indexOf(a.key) - data.keys.indexOf(b.key))) {
      const v = value(p);
      const rect = svg("rect", {
        x: (left + slot * width + 1).toFixed(1), width: Math.max(1, width - 2).toFixed(1),
        y: y(base + v).toFixed(1), height: Math.max(v > 0 ? 1 : 0, y(base) - y(base + v)).toFixed(1),
        fill: colour(p.key), class: "bar",
      });
      rect.dataset.key = p.key;
      rect.dataset.t = p.t;
      const title = svg("title");
      title.textContent = `${p.t} ${p.key}: ${usd(p.cost_usd)}, ${p.tokens} tokens, ${p.calls} calls`;
      rect.append(title);
      parts.push(rect);
      base += v;
    }
  }
  for (const i of [0, Math.floor(slots / 2), slots - 1]) {
    const when = new Date(first + i * step);
    const label = data.bucket === "day" ? when.toISOString().slice(5, 10) : when.toISOString().slice(11, 16);
    parts.push(svgText(left + (i + 0.5) * width, lower + 16, label, { "text-anchor": "middle", class: "axis" }));
  }
  document.getElementById("cost-chart").replaceChildren(...parts);
  const legend = data.keys.map((key) => {
    const item = document.createElement("span");
    item.className = "key";
    const swatch = svg("svg", { width: 10, height: 10 });
    swatch.append(svg("rect", { width: 10, height: 10, fill: colour(key) }));
    const name = document.createElement("span");
    name.textContent = " " + key;
    item.append(swatch, name);
    return item;
  });
  document.getElementById("cost-legend").replaceChildren(...legend);
  const span = `the last ${slots} ${data.bucket}s (UTC)`;
  document.getElementById("cost-total").textContent =
    `${usd(data.total_usd)} and ${data.total_tokens} tokens over ${span}`;
}
const drawCostsSoon = later(drawCosts, 250);
const loadCostsSoon = later(() => loadCosts().catch(() => {}), 250);

document.getElementById("cost-form").onchange = () => loadCosts().catch(() => {});

// --- what app.js calls -------------------------------------------------------------------

const views = {
  reload() {
    loadFlow().catch(() => {});
    loadBatches().then(loadUnits).catch(() => {});
    loadCosts().catch(() => {});
  },
  onEvent(event) {
    if (event.kind === "flow.summary") addFlow(event.payload);
    else if (event.kind === "batch.unit.started") unitStarted(event.payload);
    else if (event.kind === "batch.progress") {
      if (!batches.selected) batches.selected = event.payload.batch_id;
      loadBatchesSoon();
    } else if (event.kind === "usage.recorded") addCost(event.payload);
  },
};
window.views = views;
views.reload();
