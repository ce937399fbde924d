// docs/grafana/writ.json uses only metrics writ exports: every `writ_*` name in a panel's
// query, less the `_total`/`_bucket`/`_sum`/`_count` suffixes the exposition adds, is
// registered in crates/writ-server/src/metrics.rs or is one of the metrics the verification
// loop and the shadow bundle are specified to export (docs/operations.md). A renamed metric
// fails here rather than as an empty Grafana panel. Run: node --test tests/browser/unit/
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const dash = JSON.parse(readFileSync(join(root, "docs/grafana/writ.json"), "utf8"));
const src = readdirSync(join(root, "crates/writ-server/src"))
  .filter((f) => f.endsWith(".rs"))
  .map((f) => readFileSync(join(root, "crates/writ-server/src", f), "utf8"))
  .join("\n");
// Exported by the verification loop and the shadow bundle (their own branches' metrics.rs).
const SPECIFIED = ["writ_verification_ok", "writ_verification_runs", "writ_verification_last_run_timestamp_seconds", "writ_verification_duration_seconds", "writ_verification_verified_size", "writ_shadow_evaluations", "writ_shadow_disagreements"];

const exprs = (panels) => panels.flatMap((p) => [...(p.targets || []).map((t) => t.expr), ...exprs(p.panels || [])]);

test("every metric the Grafana dashboard queries exists", () => {
  const all = exprs(dash.panels);
  assert.ok(all.length >= 20, `${all.length} queries`);
  const names = new Set(all.flatMap((e) => e.match(/\bwrit_[a-z0-9_]+/g) || []));
  assert.ok(names.size >= 15);
  for (const n of names) {
    const base = n.replace(/_(total|bucket|sum|count)$/, "");
    const registered = src.includes(`"${base}"`) || src.includes(`"${n}"`);
    assert.ok(registered || SPECIFIED.includes(base), `${n} (${base}) is neither in metrics.rs nor specified`);
  }
});

test("the dashboard is importable: a datasource input, unique panel ids, panels on the grid", () => {
  assert.equal(dash.__inputs[0].type, "datasource");
  const ids = dash.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length);
  for (const p of dash.panels) {
    assert.ok(p.gridPos.x + p.gridPos.w <= 24, p.title);
    if (p.type !== "row") assert.ok(p.targets.length > 0, p.title);
  }
});
