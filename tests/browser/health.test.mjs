// The Infrastructure Health Dashboard in Debian's chromium against a real `writ serve`
// filled by `writ demo`: the cards and the node table show what the API says (readiness,
// `GET /v1/nodes`, `/metrics`), the charts draw from live scrapes and move when decisions
// are made, what the node does not report says so (never an error), the layout holds at
// 1024 px and every control is reachable with Tab.
// Usage: node health.test.mjs [path/to/writ]
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as h from "./harness.mjs";

let srv, browser, page;

before(async () => {
  srv = await h.startServer();
  srv.demo();
  browser = await h.launchBrowser({ width: 1440, height: 900 });
  page = browser.page;
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

const card = (id) => page.evaluate((i) => {
  const c = document.getElementById(i);
  return { value: c.querySelector(".value").textContent, note: c.querySelector(".note").textContent, state: c.dataset.state };
}, id);

/** A sample's value from the server's own /metrics. */
async function metric(name) {
  const text = (await srv.api("/metrics")).json;
  const line = text.split("\n").find((l) => l.startsWith(name + " ") || l.startsWith(name + "{"));
  return line === undefined ? null : Number(line.split(" ").at(-1));
}

test("the cards and the node table are the API's", async () => {
  await page.goto(`${srv.base}/console/health`);
  await page.waitForFunction(() => Number(document.getElementById("health").dataset.scrapes || 0) >= 2, null, { timeout: 20_000 });
  const ready = (await srv.api("/readyz")).json;
  assert.equal((await card("c-ready")).value, "ready");
  const log = await card("c-log");
  assert.equal(log.value, Number(ready.log.size).toLocaleString("en"));
  assert.equal(Number(log.value.replace(/,/g, "")), await metric("writ_log_entries"));
  const bundle = await card("c-bundle");
  assert.equal(bundle.value, `${ready.bundle.name} ${ready.bundle.version}`);
  assert.equal(bundle.note, ready.bundle.digest);

  const nodes = (await srv.api("/v1/nodes")).json.nodes;
  await page.waitForFunction((n) => document.getElementById("nodes").dataset.count === String(n), nodes.length);
  const rows = await page.$$eval("#nodes-body tr", (trs) => trs.map((tr) => ({ id: tr.dataset.node, cells: [...tr.children].map((td) => td.textContent) })));
  assert.equal(rows.length, nodes.length);
  assert.equal(rows[0].id, nodes[0].id);
  assert.ok(nodes[0].self);
  assert.match(rows[0].cells[0], /this node/);
  assert.equal(rows[0].cells[1], nodes[0].address);
  assert.match(rows[0].cells[2], new RegExp(nodes[0].bundle_digest.slice(0, 19)));
  assert.equal(nodes[0].bundle_digest, ready.bundle.digest, "the node runs the active bundle");
});

test("what this node does not report says so; what it reports is shown", async () => {
  const doc = (await srv.api("/v1/openapi.json")).json;
  const verify = await card("c-verify");
  if (doc.paths["/v1/health"]) {
    const v = (await srv.api("/v1/health")).json.verification;
    assert.equal(verify.value, v.state);
  } else {
    assert.equal(verify.value, "–");
    assert.equal(verify.note, "not reported by this node");
  }
  const shadow = await card("c-shadow");
  if ((await metric("writ_shadow_evaluations_total")) === null) assert.equal(shadow.note, "not reported by this node");
  // The revocation feed: the snapshot's size against the log's.
  const feed = await card("c-feed");
  assert.match(feed.value, /^\d[\d,]* entries$/);
  assert.match(feed.note, /snapshot at log size/);
});

test("the charts draw from live metrics and move with new decisions", async () => {
  for (const id of ["ch-rate", "ch-deny", "ch-latency", "ch-batch", "ch-size"]) {
    await page.waitForSelector(`#${id} canvas`);
    await page.waitForFunction((i) => Number(document.getElementById(i).dataset.points || 0) >= 2, id);
  }
  // Decisions while the page watches: the rate goes above zero, denies appear by reason.
  const agent = srv.workload("agent/billing-health", "billing");
  const deadline = Date.now() + 20_000;
  let seen = 0;
  while (Date.now() < deadline) {
    for (let i = 0; i < 10; i++) {
      await srv.api("/v1/authorize", { method: "POST", body: { credentials: { workload: agent }, action: "read", resource: "fs:/zones/billing", arguments: { path: "/zones/billing/faq.md" } } });
      await srv.api("/v1/authorize", { method: "POST", body: { credentials: { workload: agent }, action: "delete", resource: "fs:/zones/hr", arguments: { path: "/zones/hr/x" } } });
    }
    seen = Number((await card("c-dps")).value);
    if (seen > 0) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  assert.ok(seen > 0, `decisions per second ${seen}`);
  // The deny chart grew a series per reason seen; the latency chart has values.
  await page.waitForFunction(() => document.querySelectorAll("#ch-deny .u-legend .u-series").length >= 2, null, { timeout: 10_000 });
  const total = (await card("c-dps")).note;
  assert.match(total, /decisions since start/);
  const decided = (await srv.api("/metrics")).json.split("\n").filter((l) => l.startsWith("writ_decisions_total")).reduce((a, l) => a + Number(l.split(" ").at(-1)), 0);
  assert.ok(Number(total.split(" ")[0].replace(/,/g, "")) <= decided);
  // Bounded: the series keep at most 300 points.
  const points = await page.$$eval(".chart", (cs) => cs.map((c) => Number(c.dataset.points)));
  assert.ok(points.every((p) => p >= 2 && p <= 300), points.join(","));
});

test("no console errors; the layout holds at 1024 px; keyboard reachable", async () => {
  await h.screenshot(page, "health");
  await page.setViewportSize({ width: 1024, height: 800 });
  await page.waitForTimeout(300);
  await h.assertLayout(page);
  await h.assertTabReaches(page, ['a[href="/console/health"]', 'a[href="/console/lineage"]']);
  await page.setViewportSize({ width: 1440, height: 900 });
  h.assertNoErrors(browser.errors);
});
