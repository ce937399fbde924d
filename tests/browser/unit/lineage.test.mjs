// The lineage explorer's model (console/assets/lineage.js) with the vendored dagre: a chain
// and a fan-out lay out top to bottom with one edge per parent, classes follow decision and
// execution, malformed answers are refused, searches parse. Run: node --test tests/browser/unit/
import { test } from "node:test";
import assert from "node:assert/strict";
import * as dagre from "../../../crates/writ-server/console/vendor/dagre/dagre.esm.js";
import * as L from "../../../crates/writ-server/console/assets/lineage.js";

const node = (id, parent, over = {}) => ({ id, parent, subject: "spiffe://demo.example/agent/" + id, action: "read", outcome: "allow", reason: null, depth: 0, time: 1, log_index: 1, revoked: false, execution: null, ...over });

test("a sub-agent chain with a fan-out lays out parents above children", () => {
  const lin = { root: "r", focus: "c", truncated: false, nodes: [node("r", null), node("a", "r"), node("b", "r", { outcome: "deny", reason: "policy.denied" }), node("c", "a", { revoked: true, execution: "succeeded" })] };
  const out = L.layout(dagre, lin);
  assert.equal(out.nodes.length, 4);
  assert.deepEqual(out.edges.map((e) => `${e.from}>${e.to}`).sort(), ["a>c", "r>a", "r>b"]);
  const y = Object.fromEntries(out.nodes.map((n) => [n.id, n.y]));
  assert.ok(y.r < y.a && y.a < y.c && y.r < y.b);
  const by = Object.fromEntries(out.nodes.map((n) => [n.id, n]));
  assert.equal(by.b.decision, "deny");
  assert.equal(by.c.decision, "revoked");
  assert.equal(by.c.exec, "succeeded");
  assert.equal(by.r.exec, "unreported");
  for (const n of out.nodes) assert.ok(n.x >= 0 && n.y >= 0 && n.x + n.w <= out.width + 1 && n.y + n.h <= out.height + 1);
  for (const e of out.edges) assert.ok(e.points.length >= 2);
});

test("a parent outside the view draws no edge; repeated or missing ids are refused", () => {
  assert.equal(L.graphOf({ nodes: [node("x", "gone")] }).edges.length, 0);
  assert.throws(() => L.graphOf({ nodes: [node("x", null), node("x", null)] }), /repeated/);
  assert.throws(() => L.graphOf({ nodes: [{ parent: null }] }), /missing/);
  assert.throws(() => L.graphOf({}), /nodes/);
});

test("searches: id, principal, time ranges", () => {
  assert.deepEqual(L.parseSearch("w-abc"), { kind: "id", id: "w-abc" });
  assert.deepEqual(L.parseSearch("spiffe://demo.example/agent/a"), { kind: "principal", principal: "spiffe://demo.example/agent/a" });
  assert.deepEqual(L.parseSearch("2026-01-01..2026-01-02"), { kind: "time", since: 1767225600, until: 1767312000 });
  assert.deepEqual(L.parseSearch("2026-01-01T10:00"), { kind: "time", since: 1767261600, until: null });
  assert.deepEqual(L.parseSearch(""), { kind: "recent" });
  assert.throws(() => L.parseSearch("<img src=x>"));
  assert.equal(L.rootsQuery({ kind: "principal", principal: "spiffe://d/a b" }), "principal=spiffe%3A%2F%2Fd%2Fa+b&limit=50");
  assert.equal(L.rootsQuery({ kind: "time", since: 5, until: null }, 10), "since=5&limit=10");
  assert.equal(L.shortSubject("spiffe://demo.example/agent/x"), "agent/x");
});
