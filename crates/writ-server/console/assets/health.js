// The Infrastructure Health Dashboard's figures, as pure functions: a parser of the
// Prometheus text exposition format (https://prometheus.io/docs/instrumenting/exposition_formats/,
// version 0.0.4, as `GET /metrics` answers it), sums and histogram quantiles the way PromQL's
// `sum`, `rate` and `histogram_quantile` compute them, and bounded time series built in the
// page from successive scrapes.

/** Parses the text format: `{samples: [{name, labels, value}], types: {family: type}}`.
 *  Malformed lines throw (the page shows the error rather than wrong figures). */
export function parsePrometheus(text) {
  const samples = [];
  const types = {};
  const lines = String(text).split("\n");
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n].trim();
    if (line === "") continue;
    if (line.startsWith("#")) {
      const m = /^#\s*TYPE\s+([a-zA-Z_:][a-zA-Z0-9_:]*)\s+(\w+)/.exec(line);
      if (m) types[m[1]] = m[2];
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+\S+)?$/.exec(line);
    if (!m) throw new Error(`metrics line ${n + 1} is not a sample: ${line.slice(0, 80)}`);
    const labels = m[2] ? parseLabels(m[2], n + 1) : {};
    const value = parseValue(m[3]);
    if (Number.isNaN(value) && m[3] !== "NaN") throw new Error(`metrics line ${n + 1}: ${m[3]} is not a number`);
    samples.push({ name: m[1], labels, value });
  }
  return { samples, types };
}

function parseValue(s) {
  if (s === "+Inf" || s === "Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (s === "NaN") return NaN;
  if (!/^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/.test(s)) return NaN;
  return Number(s);
}

function parseLabels(block, line) {
  const labels = {};
  let i = 1;
  const end = block.length - 1;
  while (i < end) {
    const name = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(block.slice(i));
    if (!name) throw new Error(`metrics line ${line}: bad label name`);
    i += name[0].length;
    if (block[i] !== "=" || block[i + 1] !== '"') throw new Error(`metrics line ${line}: expected ="`);
    i += 2;
    let v = "";
    for (;;) {
      if (i >= end) throw new Error(`metrics line ${line}: unterminated label value`);
      const c = block[i++];
      if (c === '"') break;
      if (c === "\\") {
        const e = block[i++];
        v += e === "n" ? "\n" : e;
      } else v += c;
    }
    labels[name[0]] = v;
    if (block[i] === ",") i++;
  }
  return labels;
}

const matches = (labels, filter) => Object.entries(filter || {}).every(([k, v]) => labels[k] === v);

/** The samples of `name` whose labels include `filter`. */
export function select(parsed, name, filter) {
  return parsed.samples.filter((s) => s.name === name && matches(s.labels, filter));
}

/** Whether the scrape has any sample of `name` (or of its `_bucket`/`_total` forms). */
export function has(parsed, name) {
  return parsed.samples.some((s) => s.name === name || s.name === name + "_total" || s.name === name + "_bucket");
}

/** Sum of the samples of `name` matching `filter` (PromQL `sum`); `null` if none. */
export function sum(parsed, name, filter) {
  const s = select(parsed, name, filter);
  return s.length ? s.reduce((a, x) => a + x.value, 0) : null;
}

/** Sums of `name` grouped by one label (PromQL `sum by (label)`). */
export function sumBy(parsed, name, label, filter) {
  const out = {};
  for (const s of select(parsed, name, filter)) {
    const k = s.labels[label] ?? "";
    out[k] = (out[k] || 0) + s.value;
  }
  return out;
}

/** The cumulative buckets of histogram `base` (summed over other labels), by bound. */
export function buckets(parsed, base, filter) {
  const by = new Map();
  for (const s of select(parsed, base + "_bucket", filter)) {
    const le = parseValue(s.labels.le);
    by.set(le, (by.get(le) || 0) + s.value);
  }
  return [...by.entries()].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count }));
}

/** The bucket increments between two scrapes (what PromQL's `rate` over the window sees);
 *  a counter reset (a restart) yields the current buckets. */
export function bucketDelta(before, after) {
  const prev = new Map((before || []).map((b) => [b.le, b.count]));
  const d = after.map((b) => ({ le: b.le, count: b.count - (prev.get(b.le) ?? 0) }));
  return d.some((b) => b.count < 0) ? after : d;
}

/** PromQL `histogram_quantile`: linear interpolation inside the bucket holding rank q·N;
 *  `null` with no observations; the highest finite bound if it falls in +Inf. */
export function quantile(q, cumulative) {
  if (!cumulative.length) return null;
  const total = cumulative[cumulative.length - 1].count;
  if (!(total > 0)) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of cumulative) {
    if (b.count >= rank) {
      if (b.le === Infinity) return prevLe;
      if (b.count === prevCount) return b.le;
      return prevLe + ((b.le - prevLe) * (rank - prevCount)) / (b.count - prevCount);
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

/** Per-second increase of a counter between two scrapes `dt` seconds apart (0 after a reset). */
export function rate(before, after, dt) {
  if (before === null || after === null || !(dt > 0)) return null;
  return after >= before ? (after - before) / dt : after / dt;
}

/** Everything the dashboard draws from two successive scrapes (`prev` may be null). */
export function figures(prev, cur, dt) {
  const decided = sum(cur, "writ_decisions_total");
  const byOutcome = sumBy(cur, "writ_decisions_total", "outcome");
  const denyByReason = sumBy(cur, "writ_decisions_total", "reason", { outcome: "deny" });
  const lat = buckets(cur, "writ_decision_duration_seconds");
  const batch = buckets(cur, "writ_log_commit_batch_entries");
  const out = {
    decided,
    byOutcome,
    denyByReason,
    logSize: sum(cur, "writ_log_entries"),
    checkpointSize: sum(cur, "writ_log_checkpoint_size"),
    failedCommits: sum(cur, "writ_log_failed_commits"),
    bundle: (select(cur, "writ_active_bundle")[0] || {}).labels || null,
    verification: has(cur, "writ_verification_ok")
      ? { ok: sum(cur, "writ_verification_ok"), verifiedSize: sum(cur, "writ_verification_verified_size"), lastRun: sum(cur, "writ_verification_last_run_timestamp_seconds"), runs: sumBy(cur, "writ_verification_runs_total", "result") }
      : null,
    shadow: has(cur, "writ_shadow_evaluations") ? { evaluated: sum(cur, "writ_shadow_evaluations_total"), disagreements: sum(cur, "writ_shadow_disagreements_total") } : null,
    decisionsPerSecond: null,
    denyRate: {},
    latency: { p50: null, p90: null, p99: null },
    batch: { mean: null, p50: null, p99: null },
  };
  const window = (b0, b1) => (prev ? bucketDelta(b0, b1) : b1);
  const l = window(prev && buckets(prev, "writ_decision_duration_seconds"), lat);
  out.latency = { p50: quantile(0.5, l), p90: quantile(0.9, l), p99: quantile(0.99, l) };
  const bw = window(prev && buckets(prev, "writ_log_commit_batch_entries"), batch);
  const bc = sum(cur, "writ_log_commit_batch_entries_count");
  const bs = sum(cur, "writ_log_commit_batch_entries_sum");
  if (prev) {
    out.decisionsPerSecond = rate(sum(prev, "writ_decisions_total") ?? 0, decided ?? 0, dt);
    const before = sumBy(prev, "writ_decisions_total", "reason", { outcome: "deny" });
    for (const [reason, n] of Object.entries(denyByReason)) out.denyRate[reason] = rate(before[reason] ?? 0, n, dt);
    const c0 = sum(prev, "writ_log_commit_batch_entries_count") ?? 0;
    const s0 = sum(prev, "writ_log_commit_batch_entries_sum") ?? 0;
    out.batch.mean = bc !== null && bc > c0 ? (bs - s0) / (bc - c0) : null;
  } else {
    out.batch.mean = bc ? bs / bc : null;
  }
  out.batch.p50 = quantile(0.5, bw);
  out.batch.p99 = quantile(0.99, bw);
  return out;
}

/** A bounded time series: at most `max` points, the oldest dropped first. `columns` are
 *  the series names; `data()` is uPlot's `[xs, ys…]` layout. */
export class Series {
  constructor(columns, max = 300) {
    this.columns = columns;
    this.max = max;
    this.t = [];
    this.v = columns.map(() => []);
  }
  push(t, values) {
    this.t.push(t);
    this.columns.forEach((c, i) => this.v[i].push(values[c] ?? null));
    if (this.t.length > this.max) {
      this.t.shift();
      this.v.forEach((a) => a.shift());
    }
  }
  /** Adds a column (a deny reason first seen), null in the points before. */
  ensure(column) {
    if (this.columns.includes(column)) return false;
    this.columns.push(column);
    this.v.push(this.t.map(() => null));
    return true;
  }
  get length() {
    return this.t.length;
  }
  data() {
    return [this.t.slice(), ...this.v.map((a) => a.slice())];
  }
}

/** The payload of a compact JWS, unverified (the feed snapshot's size and time). */
export function jwsPayload(compact) {
  const p = String(compact).split(".")[1] || "";
  const std = p.replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(std + "=".repeat((4 - (std.length % 4)) % 4)), (c) => c.charCodeAt(0))));
}
