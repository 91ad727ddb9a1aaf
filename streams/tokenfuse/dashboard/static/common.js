/* Shared helpers of the dashboard's pages: DOM building (text only, never HTML from data),
   number and time formatting, the page's one live stream, range pickers. */
"use strict";

const TF = {};

TF.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

TF.fill = function (parent, nodes) { parent.replaceChildren(...nodes); };

TF.show = function (id, visible) { document.getElementById(id).hidden = !visible; };

TF.usd = function (micro) {
  const usd = Number(micro) / 1e6;
  if (usd === 0) return "$0";
  if (Math.abs(usd) < 0.01) return "$" + usd.toFixed(4);
  return "$" + usd.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
};

TF.count = function (n) {
  n = Number(n);
  if (Math.abs(n) >= 1e9) return (n / 1e9).toFixed(2) + "B";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return n.toLocaleString("en-US");
};

/* An amount of a budget metric: cost in dollars, everything else counted. */
TF.amount = function (metric, value) {
  if (value === null || value === undefined) return "–";
  if (metric === "cost_micro_usd") return TF.usd(value);
  const unit = {events: " calls"}[metric] || " tok";
  return TF.count(value) + unit;
};

TF.metricName = {cost_micro_usd: "cost", total_tokens: "total tokens", input_tokens: "input tokens",
                 output_tokens: "output tokens", events: "calls"};

TF.time = function (ms) {
  if (ms === null || ms === undefined) return "–";
  const d = new Date(Number(ms));
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"})
               : d.toLocaleString([], {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"});
};

TF.relative = function (ms) {
  if (ms === null || ms === undefined) return "until released";
  const s = Math.round((Number(ms) - Date.now()) / 1000);
  const abs = Math.abs(s);
  const text = abs < 90 ? abs + "s" : abs < 5400 ? Math.round(abs / 60) + "m" : abs < 172800 ? Math.round(abs / 3600) + "h"
             : Math.round(abs / 86400) + "d";
  return s >= 0 ? "in " + text : text + " ago";
};

TF.scopeLink = function (scope) {
  return TF.el("a", {href: "/scope?key=" + encodeURIComponent(scope), "data-scope-link": scope, text: scope});
};

TF.bar = function (percent) {
  const p = Number(percent || 0);
  const level = p >= 100 ? "over" : p >= 80 ? "warn" : "ok";
  const fill = TF.el("i");
  fill.style.width = Math.min(p, 100) + "%";
  return TF.el("div", {class: "bar " + level, title: p.toFixed(1) + "% used"}, fill,
               TF.el("span", {class: "pct", text: p.toFixed(1) + "%"}));
};

TF.banner = function (text) {
  const banner = document.getElementById("banner");
  if (!banner) return;
  banner.textContent = text || "";
  banner.hidden = !text;
};

TF.getJSON = async function (url) {
  const response = await fetch(url, {headers: {Accept: "application/json"}});
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
};

/* The page's one live stream: `handlers` by event name get the parsed JSON. Reconnects by itself
   (EventSource does); the header shows whether it is live. */
TF.stream = function (url, handlers) {
  const conn = document.getElementById("conn");
  const source = new EventSource(url);
  source.onopen = () => { conn.textContent = "live"; conn.className = "conn live"; };
  source.onerror = () => { conn.textContent = "reconnecting"; conn.className = "conn down"; };
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => {
      conn.textContent = "live"; conn.className = "conn live";
      handle(JSON.parse(event.data));
    });
  }
  return source;
};

TF.RANGES = ["1h", "6h", "24h", "7d", "30d"];

/* Range buttons plus a custom from/to; onChange({range, from, to}). */
TF.rangePicker = function (container, choices, current, onChange) {
  const buttons = choices.map((name) => {
    const b = TF.el("button", {type: "button", "data-range": name, class: name === current ? "on" : "", text: name});
    b.addEventListener("click", () => {
      buttons.forEach((x) => x.classList.toggle("on", x === b));
      onChange({range: name});
    });
    return b;
  });
  const from = TF.el("input", {type: "datetime-local", "aria-label": "from"});
  const to = TF.el("input", {type: "datetime-local", "aria-label": "to"});
  const apply = TF.el("button", {type: "button", text: "apply"});
  apply.addEventListener("click", () => {
    if (!from.value) return;
    buttons.forEach((x) => x.classList.remove("on"));
    onChange({range: "custom", from: new Date(from.value).toISOString(),
              to: to.value ? new Date(to.value).toISOString() : undefined});
  });
  TF.fill(container, [...buttons, TF.el("span", {class: "muted", text: " or "}), from, to, apply]);
};

/* A page drawn from one API call with pickers (Top spenders, History): `state` is the query,
   `render(data)` draws the answer; a metric or range change reloads. Returns the reload. */
TF.pickerPage = function (api, state, render) {
  const load = async () => {
    let data;
    try {
      data = await TF.getJSON(api + "?" + TF.query(state));
    } catch (e) { TF.banner(e.message); return; }
    TF.banner("");
    render(data);
  };
  const metric = document.getElementById("metric");
  TF.fill(metric, Object.entries(TF.metricName).map(([value, name]) => TF.el("option", {value: value, text: name})));
  metric.value = state.metric;
  metric.addEventListener("change", () => { state.metric = metric.value; load(); });
  TF.rangePicker(document.getElementById("range"), TF.RANGES, state.range, (choice) => {
    Object.assign(state, {range: choice.range, from: choice.from, to: choice.to});
    load();
  });
  load();
  return load;
};

TF.query = function (params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  return q.toString();
};

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === page));
});
