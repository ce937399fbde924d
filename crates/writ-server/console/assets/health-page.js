// The Infrastructure Health Dashboard page (/console/health): polls `GET /metrics`, the
// nodes (`GET /v1/nodes`), the verification loop (`GET /v1/health`), readiness and the
// revocation feed's snapshot, and draws bounded time series with the vendored uPlot.
// What a node does not report (a 404, a metric missing) shows as "not reported by this
// node", never as an error.
import uPlot from "../vendor/uplot/uPlot.esm.js";
import * as H from "./health.js";
// common.js (a classic script loaded before this module) defines window.Writ.
const W = window.Writ;
const api = (path, opts) => W.api.get(path, opts);

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const MAX_POINTS = 300; // ten minutes at one scrape every two seconds
const NOT_REPORTED = "not reported by this node";

const fmtAge = (s) => (s === null || s === undefined ? "–" : s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`);
const fmtMs = (s) => (s === null || s === undefined ? "–" : `${(s * 1000).toFixed(s < 0.001 ? 3 : 2)} ms`);
const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
const palette = ["#2f7d32", "#c62828", "#ef6c00", "#1565c0", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#546e7a"];

// Each chart: a bounded series and its uPlot instance.
const charts = {};

function chart(id, title, columns, unit) {
  const el = $(id);
  const series = new H.Series(columns.slice(), MAX_POINTS);
  const opts = (cols) => ({
    title,
    width: Math.max(260, el.clientWidth - 8),
    height: 180,
    scales: { x: { time: true } },
    axes: [{}, { values: (u, vals) => vals.map((v) => (unit === "ms" ? `${+(v * 1000).toFixed(2)}` : `${+v.toFixed(2)}`)), label: unit }],
    series: [{}, ...cols.map((c, i) => ({ label: c || "(none)", stroke: palette[i % palette.length], width: 2, spanGaps: true }))],
  });
  return { el, series, plot: new uPlot(opts(series.columns), series.data(), el), opts };
}

function push(c, t, values) {
  let grew = false;
  for (const k of Object.keys(values)) grew = c.series.ensure(k) || grew;
  c.series.push(t, values);
  if (grew) {
    c.plot.destroy();
    c.plot = new uPlot(c.opts(c.series.columns), c.series.data(), c.el);
  } else {
    c.plot.setData(c.series.data());
  }
  c.el.dataset.points = String(c.series.length);
}

function resize() {
  for (const c of Object.values(charts)) c.plot.setSize({ width: Math.max(260, c.el.clientWidth - 8), height: 180 });
}

// The routes this node serves, from its OpenAPI document: a route it does not have (a
// node of an older version) is "not reported", without a request that would fail.
let served = null;
async function optional(path) {
  if (served === null) served = api("/v1/openapi.json").then((d) => new Set(Object.keys(d.paths || {})));
  if (!(await served).has(path)) return null;
  try {
    return await api(path);
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

function card(id, value, note, state) {
  const el = $(id);
  el.querySelector(".value").textContent = value;
  el.querySelector(".note").textContent = note || "";
  el.dataset.state = state || "";
}

async function nodes() {
  const body = $("nodes-body");
  try {
    const n = await api("/v1/nodes");
    const now = Date.now() / 1000;
    W.fill(
      body,
      n.nodes.map((x) =>
        W.el("tr", { dataset: { node: x.id } },
          W.el("td", {}, x.id, x.self ? [" ", W.el("span", { class: "pill info" }, "this node")] : null),
          W.el("td", {}, x.address || "–"),
          W.el("td", {}, W.el("code", { title: x.bundle_digest || "" }, `${x.bundle_version || "none"} ${(x.bundle_digest || "").slice(0, 19)}`)),
          W.el("td", { class: "num" }, num(x.log_size)),
          W.el("td", {}, `${fmtAge(now - x.last_seen)} ago`),
          W.el("td", {}, now - x.last_seen > 60 && !x.self ? W.pill("stale", "deny") : W.pill("up", "allow")))),
    );
    $("nodes").dataset.count = String(n.nodes.length);
  } catch (e) {
    W.fill(body, W.el("tr", {}, W.el("td", { colspan: 6 }, e.status === 404 ? NOT_REPORTED : e.message)));
  }
}

let prev = null;
let prevAt = 0;

async function tick() {
  const at = Date.now() / 1000;
  let cur;
  try {
    const r = await fetch("/metrics");
    if (!r.ok) throw new Error(`/metrics: HTTP ${r.status}`);
    cur = H.parsePrometheus(await r.text());
    $("health-error").textContent = "";
  } catch (e) {
    $("health-error").textContent = `metrics: ${e.message}`;
    return;
  }
  const f = H.figures(prev, cur, at - prevAt);
  prev = cur;
  prevAt = at;
  const [ready, health, snap] = await Promise.all([
    W.api.raw("GET", "/readyz").then((r) => r.json()).catch(() => null),
    optional("/v1/health").catch(() => null),
    optional("/v1/feed/snapshot").catch(() => null),
  ]);

  card("c-ready", ready && ready.ready ? "ready" : "not ready", ready && !ready.ready ? ready.message : ready?.log?.origin || "", ready && ready.ready ? "ok" : "bad");
  card("c-log", num(f.logSize), `checkpoint at ${num(f.checkpointSize)} (${num(f.logSize - f.checkpointSize)} entries not yet in a checkpoint)`, "ok");
  if (health && health.log) {
    card("c-cpage", fmtAge(health.log.checkpoint_age_seconds), `signed at ${new Date(health.log.checkpoint_time * 1000).toISOString().slice(11, 19)} UTC`, "ok");
  } else card("c-cpage", "–", NOT_REPORTED, "na");
  card("c-dps", f.decisionsPerSecond === null ? "–" : f.decisionsPerSecond.toFixed(2), `${num(f.decided)} decisions since start`, "ok");
  card("c-bundle", f.bundle ? `${f.bundle.name} ${f.bundle.version}` : "none", f.bundle ? f.bundle.digest : "no active bundle", f.bundle ? "ok" : "bad");
  const v = health && health.verification;
  if (v) {
    card("c-verify", v.state, `${num(v.verified_size)} entries verified, ${num(v.runs)} runs${v.problems && v.problems.length ? `; ${v.problems.map((p) => p.check + ": " + p.detail).join("; ")}` : ""}`, v.state === "ok" ? "ok" : v.state === "failed" ? "bad" : "na");
  } else if (f.verification) {
    card("c-verify", f.verification.ok === 1 ? "ok" : "failed", `${num(f.verification.verifiedSize)} entries verified`, f.verification.ok === 1 ? "ok" : "bad");
  } else card("c-verify", "–", NOT_REPORTED, "na");
  if (snap && snap.snapshot) {
    const p = H.jwsPayload(snap.snapshot);
    const lag = f.logSize === null ? null : Math.max(0, f.logSize - p.size);
    card("c-feed", `${num(lag)} entries`, `snapshot at log size ${num(p.size)}, signed ${fmtAge(at - p.iat)} ago`, "ok");
  } else card("c-feed", "–", NOT_REPORTED, "na");
  card("c-shadow", f.shadow ? `${num(f.shadow.disagreements)} / ${num(f.shadow.evaluated)}` : "–", f.shadow ? "disagreements / shadow evaluations" : NOT_REPORTED, f.shadow ? "ok" : "na");

  const t = Math.floor(at);
  push(charts.rate, t, { "decisions/s": f.decisionsPerSecond });
  push(charts.deny, t, Object.keys(f.denyRate).length ? f.denyRate : {});
  push(charts.latency, t, { p50: f.latency.p50, p90: f.latency.p90, p99: f.latency.p99 });
  push(charts.batch, t, { mean: f.batch.mean, p99: f.batch.p99 });
  push(charts.size, t, { entries: f.logSize, checkpoint: f.checkpointSize });
  $("health").dataset.scrapes = String(Number($("health").dataset.scrapes || 0) + 1);
}

charts.rate = chart("ch-rate", "Decisions per second", ["decisions/s"], "/s");
charts.deny = chart("ch-deny", "Denies per second by reason", [], "/s");
charts.latency = chart("ch-latency", "Decision latency (p50, p90, p99 per interval)", ["p50", "p90", "p99"], "ms");
charts.batch = chart("ch-batch", "Group-commit batch size (entries)", ["mean", "p99"], "entries");
charts.size = chart("ch-size", "Log size and checkpoint size", ["entries", "checkpoint"], "entries");
window.addEventListener("resize", resize);

async function loop() {
  await Promise.all([tick(), nodes()]);
  setTimeout(loop, document.hidden ? POLL_MS * 5 : POLL_MS);
}
loop();
