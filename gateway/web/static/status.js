// The status page: every second, /v1/models/status (state, engine, device, replicas, running and
// waiting sequences, restarts, last error) and /v1/metrics (time to first token); the charts keep
// the last five minutes: output tokens/s and waiting sequences per model, time to first token.
"use strict";

const WINDOW_S = 300;
const COLOURS = ["#2f6fdf", "#d9480f", "#2b8a3e", "#9c36b5", "#e67700", "#0b7285"];
const $ = (id) => document.getElementById(id);
const history = { tps: {}, ttft: {}, queue: {} }; // chart -> model -> [[time, value]]
let previous = null; // the last poll's counters, for rates
let keys;

function push(chart, model, time, value) {
  const series = (history[chart][model] = history[chart][model] || []);
  series.push([time, value]);
  while (series.length && series[0][0] < time - WINDOW_S) series.shift();
}

function colour(model) {
  const names = Object.keys(history.tps).sort();
  return COLOURS[Math.max(0, names.indexOf(model)) % COLOURS.length];
}

function draw(chart, now) {
  const canvas = $(chart);
  const context = canvas.getContext("2d");
  const width = canvas.width;
  const height = canvas.height;
  context.clearRect(0, 0, width, height);
  const all = Object.values(history[chart]).flat();
  // the last five minutes, or as far back as the page has watched
  const since = Math.max(now - WINDOW_S, Math.min(now - 10, ...all.map((point) => point[0])));
  const top = Math.max(2, Math.ceil(Math.max(...all.map((point) => point[1] || 0)) * 1.1));
  context.strokeStyle = "#ddd";
  context.fillStyle = "#666";
  context.font = "11px sans-serif";
  for (const fraction of [0, 0.5, 1]) {
    const y = height - 14 - fraction * (height - 24);
    context.beginPath();
    context.moveTo(36, y);
    context.lineTo(width, y);
    context.stroke();
    context.fillText(String(Math.round(top * fraction * 10) / 10), 2, y + 4);
  }
  const span = now - since;
  context.fillText(span >= 120 ? "-" + Math.round(span / 60) + " min" : "-" + Math.round(span) + " s", 36, height - 2);
  context.fillText("now", width - 24, height - 2);
  for (const [model, series] of Object.entries(history[chart])) {
    context.strokeStyle = colour(model);
    context.lineWidth = 2;
    context.beginPath();
    let started = false;
    for (const [time, value] of series) {
      if (value == null) {
        started = false;
        continue;
      }
      const x = 36 + ((time - since) / span) * (width - 36);
      const y = height - 14 - (value / top) * (height - 24);
      if (started) context.lineTo(x, y);
      else context.moveTo(x, y);
      started = true;
      context.fillStyle = colour(model);
      context.fillRect(x - 1.5, y - 1.5, 3, 3); // a lone point shows too
    }
    context.stroke();
  }
}

function ttftSums(metrics) {
  const sums = {};
  for (const sample of metrics.enginehouse_time_to_first_token_seconds || []) {
    const model = sample.labels.model;
    sums[model] = sums[model] || { sum: 0, count: 0 };
    if (sample.name.endsWith("_sum")) sums[model].sum = sample.value;
    if (sample.name.endsWith("_count")) sums[model].count = sample.value;
  }
  return sums;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  return td;
}

function table(models) {
  const rows = models.map((m) => {
    const row = document.createElement("tr");
    row.dataset.model = m.id;
    const replicas = m.replicas.map((r) => "pid " + r.pid + ", up " + Math.round(r.uptime_s) + " s").join("; ");
    for (const value of [m.id, m.state, m.engine, m.device, replicas || "0", m.running, m.waiting, m.tokens_generated, m.restarts, m.last_error]) {
      row.appendChild(cell(value));
    }
    row.firstChild.style.borderLeft = "4px solid " + colour(m.id);
    return row;
  });
  $("models").tBodies[0].replaceChildren(...rows);
}

function caption(id, values, unit) {
  const shown = values.filter((v) => v != null);
  $(id).textContent = shown.length ? "now " + shown.reduce((a, b) => a + b, 0).toFixed(1) + unit : "";
  $(id).dataset.value = shown.length ? String(shown.reduce((a, b) => a + b, 0)) : "";
}

async function poll() {
  let status;
  let metrics;
  try {
    [status, metrics] = await Promise.all([apiGet("/v1/models/status"), apiGet("/v1/metrics")]);
  } catch (error) {
    if (error.status === 401 || error.status === 403) keys.needed(error.message + " Enter the key above.");
    else showNotice(error.message);
    return;
  }
  showNotice("");
  const now = performance.now() / 1000;
  const sums = ttftSums(metrics);
  const models = status.data;
  const tps = [];
  const ttfts = [];
  const queues = [];
  for (const m of models) {
    let rate = null;
    let ttft = null;
    if (previous && previous.models[m.id]) {
      const seconds = now - previous.time;
      rate = Math.max(0, (m.tokens_generated - previous.models[m.id].tokens) / seconds);
      const before = previous.models[m.id].ttft;
      const after = sums[m.id];
      if (before && after && after.count > before.count) {
        ttft = ((after.sum - before.sum) / (after.count - before.count)) * 1000;
      }
    }
    if (previous) {
      push("tps", m.id, now, rate);
      push("ttft", m.id, now, ttft);
      push("queue", m.id, now, m.waiting);
    }
    tps.push(rate);
    ttfts.push(ttft);
    queues.push(m.waiting);
  }
  previous = {
    time: now,
    models: Object.fromEntries(models.map((m) => [m.id, { tokens: m.tokens_generated, ttft: sums[m.id] }])),
  };
  caption("tps-now", tps, " tokens/s");
  caption("queue-now", queues, "");
  const measured = ttfts.filter((v) => v != null);
  $("ttft-now").textContent = measured.length ? "now " + Math.round(Math.max(...measured)) + " ms" : "";
  for (const chart of ["tps", "ttft", "queue"]) draw(chart, now);
  table(models);
  $("legend").replaceChildren(
    ...models.map((m) => {
      const item = document.createElement("span");
      item.textContent = m.id;
      item.style.color = colour(m.id);
      return item;
    })
  );
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

function main() {
  keys = keyBar(poll);
  poll();
  setInterval(poll, 1000);
}

document.addEventListener("DOMContentLoaded", main);
