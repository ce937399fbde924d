// The health dashboard's figures (console/assets/health.js): the Prometheus text parser on
// real `writ serve` output shapes and hostile lines, PromQL-equivalent sums, rates and
// histogram quantiles, and the bounded series. Run: node --test tests/browser/unit/
import { test } from "node:test";
import assert from "node:assert/strict";
import * as H from "../../../crates/writ-server/console/assets/health.js";

const scrape = (decisions, denies, lat, batch) => `# HELP writ_decisions Authorization decisions by outcome and primary reason code.
# TYPE writ_decisions counter
writ_decisions_total{outcome="allow",reason=""} ${decisions}
writ_decisions_total{outcome="deny",reason="policy.denied"} ${denies}
writ_decisions_total{outcome="deny",reason="quarantined"} 2
# TYPE writ_decision_duration_seconds histogram
writ_decision_duration_seconds_sum 0.5
writ_decision_duration_seconds_count ${lat[2]}
writ_decision_duration_seconds_bucket{le="0.001"} ${lat[0]}
writ_decision_duration_seconds_bucket{le="0.01"} ${lat[1]}
writ_decision_duration_seconds_bucket{le="+Inf"} ${lat[2]}
# TYPE writ_log_entries gauge
writ_log_entries 120
writ_log_checkpoint_size 118
# TYPE writ_log_commit_batch_entries histogram
writ_log_commit_batch_entries_sum ${batch[1]}
writ_log_commit_batch_entries_count ${batch[0]}
writ_log_commit_batch_entries_bucket{le="1.0"} ${batch[0] - 1}
writ_log_commit_batch_entries_bucket{le="+Inf"} ${batch[0]}
writ_active_bundle{name="writ-starter",version="1.4.0",digest="sha256:ab\\"c"} 1
writ_http_requests_total{route="/v1/authorize",status="200"} 3 1700000000000
# EOF
`;

test("the text format parses: labels with escapes, timestamps, +Inf, types", () => {
  const p = H.parsePrometheus(scrape(10, 4, [5, 9, 10], [6, 20]));
  assert.equal(p.types.writ_decisions, "counter");
  assert.equal(H.sum(p, "writ_decisions_total"), 16);
  assert.deepEqual(H.sumBy(p, "writ_decisions_total", "reason", { outcome: "deny" }), { "policy.denied": 4, quarantined: 2 });
  assert.equal(H.select(p, "writ_active_bundle")[0].labels.digest, 'sha256:ab"c');
  assert.equal(H.sum(p, "writ_http_requests_total"), 3);
  assert.equal(H.buckets(p, "writ_decision_duration_seconds").at(-1).le, Infinity);
  assert.equal(H.sum(p, "writ_verification_ok"), null);
  assert.equal(H.has(p, "writ_verification_ok"), false);
});

test("hostile metrics text is refused, not misread", () => {
  assert.throws(() => H.parsePrometheus("writ_x{a=\"1} 2\n"), /unterminated|bad|not a sample/);
  assert.throws(() => H.parsePrometheus("writ_x 12abc\n"), /not a number/);
  assert.throws(() => H.parsePrometheus("{} 1\n"), /not a sample/);
  assert.throws(() => H.parsePrometheus("writ_x{a=1} 1\n"), /expected/);
});

test("histogram_quantile interpolates as Prometheus does", () => {
  const b = [{ le: 0.001, count: 50 }, { le: 0.01, count: 90 }, { le: Infinity, count: 100 }];
  assert.equal(H.quantile(0.5, b), 0.001);
  assert.ok(Math.abs(H.quantile(0.7, b) - 0.0055) < 1e-12);
  assert.equal(H.quantile(0.99, b), 0.01);
  assert.equal(H.quantile(0.5, [{ le: 1, count: 0 }, { le: Infinity, count: 0 }]), null);
  assert.equal(H.quantile(0.25, [{ le: 2, count: 4 }, { le: Infinity, count: 4 }]), 0.5);
});

test("figures between two scrapes: rates, windowed percentiles, batch sizes, absent loops", () => {
  const a = H.parsePrometheus(scrape(10, 4, [5, 9, 10], [6, 20]));
  const b = H.parsePrometheus(scrape(30, 14, [5, 39, 40], [16, 60]));
  const f = H.figures(a, b, 10);
  assert.equal(f.decisionsPerSecond, 3);
  assert.deepEqual(f.denyRate, { "policy.denied": 1, quarantined: 0 });
  // In the window every one of 30 decisions fell in (0.001, 0.01].
  assert.ok(f.latency.p50 > 0.001 && f.latency.p50 <= 0.01, String(f.latency.p50));
  assert.equal(f.batch.mean, 4);
  assert.equal(f.logSize, 120);
  assert.equal(f.bundle.version, "1.4.0");
  assert.equal(f.verification, null);
  assert.equal(f.shadow, null);
  // A restart (counters went down) is not a negative rate.
  const c = H.parsePrometheus(scrape(2, 1, [1, 1, 1], [1, 1]));
  assert.ok(H.figures(b, c, 10).decisionsPerSecond >= 0);
  // The verification loop and shadow metrics, when the node reports them.
  const v = H.parsePrometheus(scrape(1, 1, [1, 1, 1], [1, 1]) + 'writ_verification_ok 1\nwrit_verification_verified_size 118\nwrit_verification_runs_total{result="ok"} 3\nwrit_shadow_evaluations_total 5\nwrit_shadow_disagreements_total{active="allow",shadow="deny"} 2\n');
  const g = H.figures(null, v, 0);
  assert.deepEqual(g.verification.runs, { ok: 3 });
  assert.equal(g.shadow.disagreements, 2);
});

test("series stay bounded and grow columns", () => {
  const s = new H.Series(["a"], 3);
  for (let i = 0; i < 10; i++) s.push(i, { a: i });
  assert.equal(s.length, 3);
  assert.deepEqual(s.data(), [[7, 8, 9], [7, 8, 9]]);
  assert.equal(s.ensure("b"), true);
  s.push(10, { a: 10, b: 1 });
  assert.deepEqual(s.data()[2], [null, null, 1]);
});
