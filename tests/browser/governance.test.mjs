// The Governance Console in Debian's chromium against a real `writ serve` filled by `writ demo`:
// the view shows the API's own numbers, the stream filters and searches, operator actions
// need a typed reason and a confirmation and take effect, the bundles show their text and
// diff, the layout holds at 1024 px and every control is reachable with Tab.
// Usage: node governance.test.mjs [path/to/writ]
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as h from "./harness.mjs";

let srv, browser, page, op;

before(async () => {
  srv = await h.startServer();
  srv.demo();
  op = srv.operator("browser");
  browser = await h.launchBrowser({ width: 1440, height: 900 });
  page = browser.page;
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

/** The rows the stream table shows, as the page marks them. */
const rows = () => page.$$eval("#decisions tbody tr", (trs) => trs.map((tr) => ({
  index: Number(tr.dataset.index), kind: tr.dataset.kind, outcome: tr.dataset.outcome,
  principal: tr.children[3].title, action: tr.children[4].textContent, reason: tr.children[6].textContent,
})));

/** The entries the page holds (from the first it says it holds), from the API. */
async function newest() {
  const size = (await srv.api("/v1/stats")).json.size;
  const start = await page.evaluate(() => { const m = /from #(\d+)/.exec(document.querySelector("#shown").textContent); return m ? Number(m[1]) : 0; });
  return (await srv.api(`/v1/log/entries?start=${start}&end=${Math.min(size, start + 1000)}`)).json.entries;
}

/** Waits until the page has drawn what it was just told (two animation frames). */
const settle = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

test("/ opens the view, whose totals and rows are the API's", async () => {
  await page.goto(srv.base + "/");
  assert.equal(new URL(page.url()).pathname, "/console/governance");
  const stats = (await srv.api("/v1/stats")).json;
  await page.waitForFunction((n) => document.querySelectorAll("#decisions tbody tr").length >= Math.min(n, 200), stats.size);
  await page.waitForSelector("#total-decisions");
  for (const [id, key] of [["total-decisions", "decisions"], ["total-allow", "allow"], ["total-deny", "deny"], ["total-pending", "pending"], ["total-size", "size"]]) {
    assert.equal(await page.textContent(`#${id} b`), String(stats[key]), id);
  }
  // Each row is the entry the API holds at its index.
  const entries = new Map((await newest()).map((e) => [e.index, e.entry]));
  const shown = await rows();
  assert.equal(shown[0].index, stats.size - 1, "the newest entry first");
  for (const r of shown) {
    const e = entries.get(r.index);
    assert.ok(e, `row ${r.index} is in the log`);
    assert.equal(r.kind, e.kind, `row ${r.index}`);
    if (e.kind === "decision") assert.equal(r.outcome, e.decision.outcome, `row ${r.index}`);
  }
  assert.match(await page.textContent("#stream-state"), /live/);
  // A decision made now arrives on the open stream.
  const agent = srv.workload("agent/billing-live", "billing");
  const d = (await srv.api("/v1/authorize", { method: "POST", body: { credentials: { workload: agent }, action: "read", resource: "fs:/zones/billing", arguments: { path: "/zones/billing/faq.md" } } })).json;
  assert.equal(d.outcome, "allow");
  await page.waitForSelector(`#decisions tbody tr[data-index="${d.log_index}"]`, { timeout: 10_000 });
  await page.waitForFunction((n) => document.querySelector("#total-decisions b").textContent === String(n), stats.decisions + 1, { timeout: 10_000 });
});

test("filters by outcome, reason, principal, action and time, and search by writ id", async () => {
  const held = await newest();
  const decisions = held.filter((e) => e.entry.kind === "decision");
  const count = (pred) => decisions.filter((e) => pred(e.entry)).length;

  await page.selectOption("#f-outcome", "deny");
  await settle();
  let shown = await rows();
  assert.equal(shown.length, count((e) => e.decision.outcome === "deny"));
  assert.ok(shown.length > 0 && shown.every((r) => r.outcome === "deny"));

  await page.selectOption("#f-reason", "quarantined");
  await settle();
  shown = await rows();
  assert.equal(shown.length, count((e) => e.decision.outcome === "deny" && e.decision.reasons[0] === "quarantined"));
  assert.ok(shown.length > 0 && shown.every((r) => r.reason === "quarantined"));
  assert.match(new URL(page.url()).search, /outcome=deny/, "the filters are in the URL");

  await page.click("#f-clear");
  await page.fill("#f-principal", "rogue-");
  await settle();
  shown = await rows();
  assert.ok(shown.length >= 4 && shown.every((r) => r.principal.includes("rogue-")), JSON.stringify(shown.slice(0, 3)));

  await page.click("#f-clear");
  await page.selectOption("#f-action", "spawn");
  await settle();
  shown = await rows();
  assert.equal(shown.length, count((e) => e.request && e.request.action === "spawn"));

  await page.click("#f-clear");
  await page.fill("#f-since", "2999-01-01T00:00:00");
  await settle();
  assert.equal((await rows()).length, 0, "nothing after the year 2999");
  await page.click("#f-clear");

  // Search by writ id: the allowed write of the demo.
  const write = decisions.find((e) => e.entry.request && e.entry.request.action === "write" && e.entry.decision.outcome === "allow");
  await page.fill("#f-writ", write.entry.id);
  await page.press("#f-writ", "Enter");
  await settle();
  shown = await rows();
  // The decision, and what names it: its outcome report, its revocation by the freeze.
  assert.ok(shown.some((r) => r.index === write.index), JSON.stringify(shown));
  const related = held.filter((e) => e.entry.id === write.entry.id || e.entry.jti === write.entry.id || (e.entry.request && e.entry.request.parent === write.entry.id));
  assert.deepEqual(shown.map((r) => r.index).sort((a, b) => a - b), related.map((e) => e.index));
  await page.click(`#decisions tbody tr[data-index="${write.index}"]`);
  await page.waitForSelector("#detail-lineage");
  assert.match(await page.textContent("#detail"), new RegExp(write.entry.id));
  assert.equal(await page.getAttribute("#detail-proof", "href"), `/console/proof?index=${write.index}`);
  await page.click("#f-clear");
  await settle();
});

test("operator actions need a typed reason and a confirmation, take effect and are in the log as the operator's", async () => {
  await h.signIn(page, op);
  await page.waitForSelector("#isolate-subject");
  // A payment the starter bundle sends to an operator (1,000 to 9,999, at any hour).
  const agent = srv.workload("agent/billing-7", "billing");
  const asked = (await srv.api("/v1/authorize", { method: "POST", body: { credentials: { workload: agent }, action: "payment", resource: "payments:stripe", arguments: { amount: 4321, currency: "EUR" } } })).json;
  assert.equal(asked.outcome, "pending", JSON.stringify(asked));
  const card = `#approvals [data-approval="${asked.id}"]`;
  await page.waitForSelector(card, { timeout: 10_000 });
  assert.match(await page.textContent(card), /4321/, "the request in full");
  assert.match(await page.textContent(card), /payments:stripe/);

  // Without a reason nothing happens; cancelled, nothing happens.
  await page.click(`${card} [data-approve]`);
  await page.waitForSelector("dialog[open] #confirm-reason");
  assert.match(await page.textContent("dialog[open]"), /spiffe:\/\/demo.example\/operator\/browser/, "says who acts");
  await page.click("#confirm-ok");
  assert.match(await page.textContent("dialog[open] .problem"), /reason/);
  await page.click("#confirm-cancel");
  assert.equal((await srv.api(`/v1/approvals/${asked.id}`, { token: agent })).json.status, "pending");

  await page.click(`${card} [data-approve]`);
  await page.fill("#confirm-reason", "invoice 4321 checked with finance");
  await page.click("#confirm-ok");
  await page.waitForSelector(card, { state: "detached", timeout: 10_000 });
  const collected = (await srv.api(`/v1/approvals/${asked.id}`, { token: agent })).json;
  assert.equal(collected.status, "approved", JSON.stringify(collected));
  assert.equal(collected.resolution.reason, "invoice 4321 checked with finance");
  assert.equal(collected.resolution.operator, "spiffe://demo.example/operator/browser");
  assert.equal(collected.writ.split(".").length, 3);
  // The approval is in the stream, as the operator's.
  const approvalRow = `#decisions tbody tr[data-index="${collected.resolution.log_index}"]`;
  await page.waitForSelector(approvalRow, { timeout: 10_000 });
  assert.match(await page.textContent(approvalRow), /approved.*operator\/browser/s);

  // Isolate an identity.
  const suspect = "spiffe://demo.example/agent/suspect-1";
  await page.fill("#isolate-subject", suspect);
  await page.click("#isolate");
  await page.fill("#confirm-reason", "exfiltration attempt seen by the SOC");
  await page.click("#confirm-ok");
  await page.waitForSelector(`#quarantined tr[data-subject="${suspect}"]`, { timeout: 10_000 });
  const q = (await srv.api("/v1/quarantine", { token: op })).json.quarantined.find((x) => x.subject === suspect);
  assert.ok(q, "isolated");
  assert.equal(q.isolated.operator, "spiffe://demo.example/operator/browser");
  assert.equal(q.isolated.reason, "exfiltration attempt seen by the SOC");
  assert.match(await page.textContent(`#quarantined tr[data-subject="${suspect}"]`), /exfiltration attempt.*operator\/browser/s);
  await page.waitForSelector(`#decisions tbody tr[data-index="${q.isolated.log_index}"]`, { timeout: 10_000 });
  // Its requests are now denied as quarantined.
  const cred = srv.workload("agent/suspect-1", "billing");
  const denied = (await srv.api("/v1/authorize", { method: "POST", body: { credentials: { workload: cred }, action: "read", resource: "fs:/zones/billing", arguments: {} } })).json;
  assert.equal(denied.reasons[0], "quarantined");
});

test("the active bundle with its policy text highlighted, the shadow bundle set and cleared, and a diff between versions", async () => {
  const ready = (await srv.api("/readyz")).json;
  await page.waitForSelector("#active-digest");
  assert.equal(await page.textContent("#active-digest"), ready.bundle.digest);
  assert.match(await page.textContent("#active-bundle"), new RegExp(ready.bundle.version));
  // The demo rolled back to the starter bundle as its operator.
  assert.match(await page.textContent("#active-bundle"), /operator\/demo/);
  await page.click("#bundles details.policy summary");
  assert.ok(await page.$$eval("#bundles details.policy code .hljs-keyword", (k) => k.some((x) => x.textContent === "permit")), "Cedar keywords are highlighted");
  assert.match(await page.textContent("#shadow-bundle"), /No shadow bundle/);
  const bundles = (await srv.api("/v1/bundles", { token: op })).json.bundles;
  assert.equal(await page.$$eval("#bundle-history tbody tr", (r) => r.length), bundles.length);
  // The demo's write freeze against the starter bundle: the added forbid.
  const freeze = bundles.find((b) => /freeze/.test(b.version));
  await page.selectOption("#diff-from", ready.bundle.digest);
  await page.selectOption("#diff-to", freeze.digest);
  await page.click("#diff-show");
  await page.waitForSelector("#diff .add");
  const added = await page.$$eval("#diff .add", (l) => l.map((x) => x.textContent).join("\n"));
  assert.match(added, /\+ forbid \(principal, action == Writ::Action::"write", resource\);/);
  // The freeze set as the shadow bundle through the API: the panel names it with the
  // server's counts, and the history marks it; cleared again, the panel says so.
  const set = await srv.api("/v1/policy/shadow", { method: "PUT", token: op, body: { digest: freeze.digest, reason: "browser test" } });
  assert.equal(set.status, 200, JSON.stringify(set.json));
  await page.waitForFunction((d) => (document.querySelector("#shadow-bundle")?.textContent || "").includes(d), freeze.digest, { timeout: 15_000 });
  const status = (await srv.api("/v1/policy/shadow", { token: op })).json;
  assert.equal(status.bundle.digest, freeze.digest);
  assert.match(await page.textContent("#shadow-bundle"), /operator\/browser/);
  assert.match(await page.textContent("#shadow-bundle"), /disagreements with the active bundle/);
  const cleared = await srv.api("/v1/policy/shadow", { method: "DELETE", token: op, body: { reason: "browser test done" } });
  assert.equal(cleared.status, 200, JSON.stringify(cleared.json));
  await page.waitForFunction(() => /No shadow bundle/.test(document.querySelector("#shadow-bundle")?.textContent || ""), null, { timeout: 15_000 });
});

test("1024 px: nothing overflows, every control is on screen and reachable with Tab", async () => {
  // A pending approval, so that its buttons are on the page.
  const agent = srv.workload("agent/billing-8", "billing");
  const asked = (await srv.api("/v1/authorize", { method: "POST", body: { credentials: { workload: agent }, action: "payment", resource: "payments:stripe", arguments: { amount: 1234, currency: "EUR" } } })).json;
  assert.equal(asked.outcome, "pending");
  await page.waitForSelector(`[data-approve="${asked.id}"]`, { timeout: 10_000 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await h.screenshot(page, "governance");
  for (const width of [1440, 1024]) {
    await page.setViewportSize({ width, height: 800 });
    await page.waitForTimeout(200);
    await h.assertLayout(page);
  }
  await h.screenshot(page, "governance-1024", { fullPage: true });
  await h.assertTabReaches(page, [
    'nav a[data-view="demo"]', "#operator-signout", "#f-principal", "#f-writ",
    '#decisions tbody tr[tabindex="0"]', `[data-approve="${asked.id}"]`, `[data-reject="${asked.id}"]`, "#isolate-subject", "#revoke-jti",
  ], 200);
  // Arrow keys move along the rows; Enter opens one.
  await page.focus('#decisions tbody tr[tabindex="0"]');
  const first = await page.evaluate(() => document.activeElement.dataset.index);
  await page.keyboard.press("ArrowDown");
  const second = await page.evaluate(() => document.activeElement.dataset.index);
  assert.ok(Number(second) < Number(first), `${first} then ${second}`);
  await page.keyboard.press("Enter");
  await page.waitForFunction((i) => document.querySelector("#detail").textContent.includes(`log index${i}`), second);
  await page.setViewportSize({ width: 1440, height: 900 });
});

test("no console errors", () => {
  h.assertNoErrors(browser.errors);
});
