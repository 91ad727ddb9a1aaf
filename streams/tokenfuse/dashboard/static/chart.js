/* Small SVG charts drawn in the page (no chart library): time series with limit lines, and
   horizontal bars. Text goes in as text nodes only. */
"use strict";

const Charts = {};
Charts.COLORS = ["#2f6fed", "#ff8a3d", "#2e9e5b", "#9b59b6", "#d64541", "#16a2b8"];
Charts.NS = "http://www.w3.org/2000/svg";

Charts.svg = function (tag, attrs, text) {
  const node = document.createElementNS(Charts.NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
};

Charts.niceMax = function (value) {
  if (value <= 0) return 1;
  const magnitude = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
};

Charts.timeLabel = function (ms, span) {
  const d = new Date(ms);
  if (span <= 2 * 86400e3) return d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  return d.toLocaleDateString([], {month: "short", day: "numeric"});
};

/* spec: {series: {name: [[t, v], ...]}, start, end, lines: [{label, value}], format(v), step: bool,
          forecast: {p10, p50, p90: [[t, v], [t, v]]} or null}
   step draws per-bucket values as steps (a rate); otherwise points are joined (a cumulative total).
   forecast draws the breach forecast: the p10-p90 band as a shaded wedge, the p50 as a dashed line. */
Charts.line = function (container, spec) {
  const W = 900, H = 280, L = 70, R = 16, T = 12, B = 28;
  const names = Object.keys(spec.series);
  const values = names.flatMap((n) => spec.series[n].map((p) => p[1]));
  const lineValues = (spec.lines || []).map((l) => l.value);
  const yMax = Charts.niceMax(Math.max(0, ...values, ...lineValues) * 1.05);
  const x = (t) => L + (W - L - R) * (Math.min(Math.max(t, spec.start), spec.end) - spec.start) / Math.max(1, spec.end - spec.start);
  const y = (v) => T + (H - T - B) * (1 - v / yMax);
  const svg = Charts.svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "spend over time",
                                 "data-points": String(values.length)});
  for (let i = 0; i <= 4; i++) {
    const v = yMax * i / 4;
    svg.append(Charts.svg("line", {class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v)}));
    svg.append(Charts.svg("text", {x: L - 6, y: y(v) + 4, "text-anchor": "end"}, spec.format(v)));
  }
  const span = spec.end - spec.start;
  for (let i = 0; i <= 6; i++) {
    const t = spec.start + span * i / 6;
    svg.append(Charts.svg("text", {x: x(t), y: H - 8, "text-anchor": "middle"}, Charts.timeLabel(t, span)));
  }
  svg.append(Charts.svg("line", {class: "axis", x1: L, x2: W - R, y1: y(0), y2: y(0)}));
  const now = Date.now();
  if (now > spec.start && now < spec.end) {
    svg.append(Charts.svg("line", {class: "now", x1: x(now), x2: x(now), y1: T, y2: H - B}));
  }
  names.forEach((name, i) => {
    const color = Charts.COLORS[i % Charts.COLORS.length];
    const points = spec.series[name];
    if (!points.length) return;
    const d = spec.step ? Charts.stepPath(points, spec.grain, x, y) : Charts.joinedPath(points, x, y);
    const area = spec.step ? d + "Z" : `${d}L${x(points[points.length - 1][0])},${y(0)}L${x(points[0][0])},${y(0)}Z`;
    svg.append(Charts.svg("path", {class: "area", fill: color, d: area}));
    svg.append(Charts.svg("path", {class: "series", stroke: color, d: d, "data-series": name}));
  });
  if (spec.forecast) Charts.forecast(svg, spec.forecast, x, y);
  for (const line of spec.lines || []) {
    svg.append(Charts.svg("line", {class: "limit", x1: L, x2: W - R, y1: y(line.value), y2: y(line.value)}));
    svg.append(Charts.svg("text", {class: "limit-label", x: W - R - 4, y: y(line.value) - 5, "text-anchor": "end"},
                          `${line.label}: ${spec.format(line.value)}`));
  }
  const legend = TF.el("div", {class: "legend"}, names.map((name, i) => {
    const swatch = TF.el("i");
    swatch.style.background = Charts.COLORS[i % Charts.COLORS.length];
    return TF.el("span", {}, swatch, name);
  }));
  if (!names.length) svg.append(Charts.svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, "no spend in this period"));
  container.replaceChildren(svg, legend);
};

Charts.joinedPath = function (points, x, y) {
  return points.map(([t, v], j) => `${j ? "L" : "M"}${x(t)},${y(v)}`).join("");
};

/* Per-bucket values as steps, down to zero where buckets are missing (nothing spent). */
Charts.stepPath = function (points, grain, x, y) {
  let d = "";
  points.forEach(([t, v], j) => {
    const joined = j > 0 && points[j - 1][0] + grain === t;
    d += joined ? `L${x(t)},${y(v)}` : `${j ? "L" : "M"}${x(t)},${y(0)}L${x(t)},${y(v)}`;
    d += `H${x(t + grain)}`;
    const next = points[j + 1];
    if (!next || next[0] !== t + grain) d += `V${y(0)}`;
  });
  return d;
};

/* rows: [{label, value, href}] drawn as horizontal bars, biggest first. */
Charts.bars = function (container, rows, format) {
  const W = 900, rowH = 24, L = 220, R = 90;
  const H = Math.max(1, rows.length) * rowH + 8;
  const max = Math.max(1, ...rows.map((r) => r.value));
  const svg = Charts.svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "top spenders",
                                 "data-points": String(rows.length)});
  rows.forEach((row, i) => {
    const top = 4 + i * rowH;
    const width = Math.max(1, (W - L - R) * row.value / max);
    const label = Charts.svg("text", {x: L - 8, y: top + 15, "text-anchor": "end"}, row.label.length > 34 ? row.label.slice(0, 33) + "…" : row.label);
    const link = Charts.svg("a", {href: row.href});
    link.append(label);
    svg.append(link, Charts.svg("rect", {class: "hbar", x: L, y: top + 3, width: width, height: rowH - 8, rx: 2}),
               Charts.svg("text", {x: L + width + 6, y: top + 15}, format(row.value)));
  });
  container.replaceChildren(svg);
};

Charts.forecast = function (svg, band, x, y) {
  const [origin, early] = band.p10, late = band.p90[1], mid = band.p50[1];
  const wedge = `M${x(origin[0])},${y(origin[1])}L${x(early[0])},${y(early[1])}L${x(late[0])},${y(late[1])}Z`;
  svg.append(Charts.svg("path", {class: "forecast-band", d: wedge}));
  svg.append(Charts.svg("path", {class: "forecast-p50", d: `M${x(origin[0])},${y(origin[1])}L${x(mid[0])},${y(mid[1])}`}));
  svg.append(Charts.svg("text", {class: "forecast-label", x: x(mid[0]) - 4, y: y(mid[1]) + 14, "text-anchor": "end"},
                        "forecast (p10–p90)"));
};
