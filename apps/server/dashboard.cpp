#include "apps/server/dashboard.hpp"

namespace aeg::server {

namespace {

// The page is kept whole here so that the binary serves it with nothing beside it. Text from the
// server (model and instance names) reaches the page only through textContent, never as markup.
constexpr std::string_view page = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Aegaeon: live pool</title>
<style>
:root { --fg: #1d2330; --muted: #6b7280; --line: #e3e6ec; --bg: #f6f7f9; --card: #fff;
        --ok: #2f9e44; --bad: #d9480f; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: 18px; align-items: baseline; padding: 12px 20px;
         background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 18px; margin: 0 12px 0 0; }
.figure b { font-size: 18px; font-variant-numeric: tabular-nums; }
.figure span.unit { color: var(--muted); }
#state { padding: 2px 8px; border-radius: 10px; background: var(--line); }
#state.ok { background: #d3f9d8; color: var(--ok); }
#state.bad { background: #ffe8cc; color: var(--bad); }
#key-box[hidden] { display: none; }
main { padding: 8px 20px 24px; }
h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted);
     margin: 18px 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
        padding: 10px 14px; }
.card.down { opacity: .6; border-style: dashed; }
.card .name { font-weight: 600; word-break: break-all; }
.card .node { color: var(--muted); font-size: 12px; }
.card dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 12px; margin: 8px 0 0; }
.card dt { color: var(--muted); }
.card dd { margin: 0; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
          margin-right: 6px; vertical-align: -1px; }
table { border-collapse: collapse; background: var(--card); border: 1px solid var(--line);
        min-width: 60%; }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: right;
         font-variant-numeric: tabular-nums; }
th:first-child, td:first-child { text-align: left; }
th { font-weight: 600; color: var(--muted); font-size: 12px; }
#timeline { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
            padding: 10px 14px; }
.lane { display: grid; grid-template-columns: 180px 1fr; align-items: center; gap: 10px;
        margin: 4px 0; }
.lane .name { font-size: 12px; word-break: break-all; }
.lane svg { width: 100%; height: 26px; display: block; }
.axis { display: grid; grid-template-columns: 180px 1fr; gap: 10px; color: var(--muted);
        font-size: 11px; }
.axis div { display: flex; justify-content: space-between; }
.legend { margin-top: 6px; font-size: 12px; color: var(--muted); }
.legend > span { margin-right: 14px; }
.empty { color: var(--muted); }
</style>
</head>
<body data-updates="0">
<header>
  <h1>Aegaeon</h1>
  <span id="state">connecting</span>
  <span class="figure">up <b id="uptime">-</b></span>
  <span class="figure"><b id="queued-total">0</b> <span class="unit">queued</span></span>
  <span class="figure"><b id="running-total">0</b> <span class="unit">running</span></span>
  <span class="figure"><b id="finished-total">0</b> <span class="unit">finished</span></span>
  <span class="figure"><b id="tokens-total">0</b> <span class="unit">tokens</span></span>
  <span class="figure"><b id="tokens-per-second-total">0</b> <span class="unit">tokens/s</span></span>
  <label id="key-box" hidden>API key <input id="key" type="password" autocomplete="off"></label>
</header>
<main>
<h2>Devices</h2>
<div id="instances" class="cards"><p class="empty">waiting for the first answer</p></div>
<h2>Models</h2>
<table id="models">
  <thead><tr><th>model</th><th>queued</th><th>running</th><th>finished</th><th>tokens</th>
  <th>tokens/s</th><th>SLO attainment</th></tr></thead>
  <tbody></tbody>
</table>
<h2>Switches, last minute</h2>
<div id="timeline"></div>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const keyInput = $("key");
let key = new URLSearchParams(location.search).get("key") || "";
keyInput.value = key;
keyInput.addEventListener("change", () => { key = keyInput.value.trim(); });

// The SVG namespace, from the parser rather than written out.
const svgNS = (() => {
  const t = document.createElement("template");
  t.innerHTML = "<svg></svg>";
  return t.content.firstChild.namespaceURI;
})();

const palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                 "#ff9da7", "#9c755f", "#bab0ac"];
const colors = new Map();
function color(model) {
  if (!model) return "#dde1e7";
  if (!colors.has(model)) colors.set(model, palette[colors.size % palette.length]);
  return colors.get(model);
}

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}
function svg(tag, attrs, title) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (title) {
    const t = document.createElementNS(svgNS, "title");
    t.textContent = title;
    e.append(t);
  }
  return e;
}
function swatch(model) {
  const s = el("span", { class: "swatch" });
  s.style.background = color(model);
  return s;
}
function modelName(model) {
  return model ? el("span", {}, swatch(model), model) : el("span", { class: "empty" }, "none");
}
function count(n) { return Number(n).toLocaleString("en-US"); }
function rate(x) { return x >= 100 ? x.toFixed(0) : x.toFixed(1); }
function percent(x) { return x === null ? "-" : (100 * x).toFixed(1) + "%"; }
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; ++i; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}
function duration(s) {
  s = Math.floor(s);
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

function setState(text, cls) {
  $("state").textContent = text;
  $("state").className = cls;
}

function renderTotals(st) {
  const t = st.totals;
  $("uptime").textContent = duration(st.uptime_seconds);
  $("queued-total").textContent = count(t.queued);
  $("running-total").textContent = count(t.running);
  $("finished-total").textContent = count(t.finished);
  $("tokens-total").textContent = count(t.tokens_generated);
  $("tokens-per-second-total").textContent = rate(t.tokens_per_second);
}

function renderModels(st) {
  const rows = st.models.map((m) => el("tr", { "data-model": m.name },
    el("td", { class: "name" }, modelName(m.name)),
    el("td", { class: "queued" }, count(m.queued)),
    el("td", { class: "running" }, count(m.running)),
    el("td", { class: "finished" }, count(m.finished)),
    el("td", { class: "tokens" }, count(m.tokens_generated)),
    el("td", { class: "tokens-per-second" }, rate(m.tokens_per_second)),
    el("td", { class: "attainment" }, percent(m.slo_attainment))));
  $("models").tBodies[0].replaceChildren(...rows);
}

function renderInstances(st) {
  const cards = st.instances.map((i) => {
    const rows = !i.alive ? [] : [
      ["resident", "active", modelName(i.active)], ["prefetched", "staged", modelName(i.staged)],
      ["running", "running", count(i.running)], ["waiting", "waiting", count(i.waiting)],
      ["KV", "kv", bytes(i.kv_bytes_used)],
      ["switches", "switches", `${count(i.switches)} (${count(i.switches_last_minute)} in the last ` +
       (i.switch_history_seconds < 60 ? `${Math.round(i.switch_history_seconds)} s)` : "minute)")]];
    const dl = el("dl");
    for (const [label, cls, value] of rows) dl.append(el("dt", {}, label), el("dd", { class: cls }, value));
    return el("div", { class: i.alive ? "card" : "card down", "data-instance": i.name },
      el("div", { class: "name" }, i.name),
      el("div", { class: "node" }, i.node ? `node ${i.node}` : i.alive ? `device ${i.device}` : "not answering"),
      dl);
  });
  $("instances").replaceChildren(...(cards.length ? cards : [el("p", { class: "empty" }, "no instances")]));
}

// One lane per instance: who was resident when over the last minute, the start of each
// resident stretch lighter while its weights came in, a dot over switches to a prefetched model.
// Before the oldest switch an instance kept, the lane is blank.
function lane(inst, switches, horizon) {
  const W = 600, H = 26, x = (ago) => W * (1 - Math.max(0, Math.min(ago, horizon)) / horizon);
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
  const mine = switches.filter((s) => s.instance === inst.name);
  const known = inst.switch_history_seconds ?? horizon;
  if (known < horizon)
    g.append(svg("rect", { x: 0, y: 6, width: x(known), height: H - 12, fill: "#eef0f3" },
                 "older switches not kept"));
  const first = mine.length ? mine[0].from : inst.active;
  const stretches = [{ seconds_ago: known, to: first, scale_up_seconds: 0 }, ...mine];
  stretches.forEach((s, k) => {
    const end = k + 1 < stretches.length ? stretches[k + 1].seconds_ago : 0;
    const up = s.scale_up_seconds === null ? s.seconds_ago - end : Math.min(s.scale_up_seconds || 0, s.seconds_ago - end);
    const what = k === 0 ? s.to || "none"
      : `${s.from || "none"} to ${s.to}, ${s.seconds_ago.toFixed(1)} s ago; ` +
        (s.scale_up_seconds === null ? "weights still coming in" : `weights in after ${s.scale_up_seconds.toFixed(3)} s`) +
        (s.prefetched ? " (prefetched)" : "");
    const x0 = x(s.seconds_ago), x1 = x(end), xu = x(s.seconds_ago - up);
    g.append(svg("rect", { x: x0, y: 6, width: Math.max(0, x1 - x0), height: H - 12, fill: color(s.to) }, what));
    if (up > 0)
      g.append(svg("rect", { x: x0, y: 6, width: Math.max(0, xu - x0), height: H - 12, fill: "#fff", "fill-opacity": 0.5 }));
    if (s.prefetched) g.append(svg("circle", { cx: x0, cy: 3, r: 1.5, fill: "#1d2330", "fill-opacity": 0.6 }));
  });
  return el("div", { class: "lane", "data-instance": inst.name, "data-switches": String(mine.length) },
    el("div", { class: "name" }, inst.name), g);
}

function renderTimeline(st) {
  const horizon = st.switch_horizon_seconds || 60;
  const lanes = st.instances.map((i) => lane(i, st.switches, horizon));
  const axis = el("div", { class: "axis" }, el("span"),
    el("div", {}, el("span", {}, `${horizon} s ago`), el("span", {}, "now")));
  const legend = el("div", { class: "legend" },
    ...st.models.map((m) => el("span", {}, swatch(m.name), m.name)),
    el("span", {}, "lighter: weights coming in; dot: a prefetched model"));
  $("timeline").replaceChildren(...lanes, axis, legend);
}

function render(st) {
  st.models.forEach((m) => color(m.name)); // colours in the topology's order
  renderTotals(st);
  renderModels(st);
  renderInstances(st);
  renderTimeline(st);
  setState(st.status === "ok" ? "live" : st.status.replace("_", " "), st.status === "ok" ? "ok" : "bad");
  document.body.dataset.updates = String(Number(document.body.dataset.updates) + 1);
}

async function poll() {
  try {
    const r = await fetch("/status", { cache: "no-store",
                                       headers: key ? { Authorization: "Bearer " + key } : {} });
    if (r.status === 401) {
      $("key-box").hidden = false;
      setState("needs the API key: add ?key=KEY to the address or type it here", "bad");
    } else if (!r.ok) {
      setState(`status answered ${r.status}`, "bad");
    } else {
      render(await r.json());
    }
  } catch (e) {
    setState("server unreachable", "bad");
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
)html";

} // namespace

std::string_view dashboard_html() {
  return page;
}

} // namespace aeg::server
