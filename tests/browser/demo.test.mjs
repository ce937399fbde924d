// The Runtime Governance Demo in Debian's chromium against a real `writ serve`: an operator
// runs the built-in scenario from the page, which narrates each step as the server decides
// it, with links into the other views; what it narrates is what the log holds.
// Usage: node demo.test.mjs [path/to/writ]
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as h from "./harness.mjs";

let srv, browser, page, op;

before(async () => {
  srv = await h.startServer();
  srv.demo();
  op = srv.operator("presenter");
  browser = await h.launchBrowser({ width: 1440, height: 900 });
  page = browser.page;
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

test("the page asks for the operator credential before it runs anything", async () => {
  await page.goto(srv.base + "/console/demo");
  const size = (await srv.api("/v1/stats")).json.size;
  await page.click("#run");
  await page.waitForSelector("dialog[open] #credential-input");
  // A workload's credential is refused as an operator's.
  await page.fill("#credential-input", srv.workload("agent/billing-1", "billing"));
  await page.click("#credential-save");
  await page.waitForFunction(() => /refused/.test(document.querySelector("dialog[open] .problem").textContent));
  await page.keyboard.press("Escape");
  assert.equal((await srv.api("/v1/stats")).json.size, size, "nothing ran");
  browser.errors.length = 0; // the refused credential's 403, asked for by this test
});

test("an operator runs the scenario; the page narrates every step as the log records it", async () => {
  await h.signIn(page, op);
  const before = (await srv.api("/v1/stats")).json;
  await page.click("#run");
  await page.waitForSelector("li.step", { timeout: 15_000 });
  await page.waitForFunction(() => document.body.dataset.demo === "succeeded" || document.body.dataset.demo === "failed", null, { timeout: 90_000 });
  assert.equal(await page.evaluate(() => document.body.dataset.demo), "succeeded", await page.textContent("#summary"));
  assert.match(await page.textContent("#summary-verdict"), /Every one of the \d+ steps went as expected/);
  assert.equal(await page.$$eval("li.step.unexpected", (l) => l.length), 0);

  // The narration is the run's, as the API has it.
  const id = new URL(page.url()).searchParams.get("run");
  const run = (await srv.api(`/v1/demo/runs/${id}`, { token: op })).json;
  assert.equal(run.status, "succeeded");
  assert.equal(run.operator, "spiffe://demo.example/operator/presenter");
  const steps = run.events.filter((e) => e.type === "step");
  assert.equal(await page.$$eval("li.step", (l) => l.length), steps.length);
  const sections = run.events.filter((e) => e.type === "section").map((e) => e.title);
  assert.deepEqual(await page.$$eval("#narration h3", (l) => l.map((x) => x.textContent)), sections);

  // Every recorded decision it narrates is in the log, with the outcome and reason shown.
  const decided = steps.filter((s) => s.kind === "decision" && typeof s.log_index === "number");
  assert.ok(decided.length >= 20, `${decided.length} recorded decisions`);
  const after = (await srv.api("/v1/stats")).json;
  assert.ok(after.decisions - before.decisions >= decided.length);
  for (const s of [decided[0], decided[Math.floor(decided.length / 2)], decided[decided.length - 1]]) {
    const e = (await srv.api(`/v1/log/entries?start=${s.log_index}&end=${s.log_index + 1}`)).json.entries[0].entry;
    assert.equal(e.id, s.id);
    assert.equal(e.decision.outcome, s.outcome);
    const li = `li.step[data-n="${s.n}"]`;
    assert.equal(await page.getAttribute(li, "data-outcome"), s.outcome);
    if (s.reason) assert.match(await page.textContent(li), new RegExp(s.reason.replace(".", "\\.")));
    assert.ok(await page.$(`${li} a[href="/console/proof?index=${s.log_index}"]`), "a link to its proof");
    assert.ok(await page.$(`${li} a[href="/console/lineage?id=${encodeURIComponent(s.id)}"]`), "a link to its lineage");
  }
  // The hour-dependent steps say they were evaluated, not recorded.
  const evaluated = await page.$$eval('li.step[data-kind="evaluated"]', (l) => l.map((x) => x.textContent));
  assert.equal(evaluated.length, 4);
  assert.ok(evaluated.every((t) => /not recorded/.test(t)));
  // The quarantine step names the operator and the reason.
  assert.match(await page.textContent('li.step[data-kind="operator"]'), /operator\/demo/);
  // The error banner of the first test (no credential then) is not part of the picture.
  await page.evaluate(() => { window.Writ.clearErrors(); window.scrollTo(0, 0); });
  await h.screenshot(page, "demo");

  // A decision link opens the Governance Console on that decision.
  const spawn = decided.find((s) => s.action === "spawn" && s.outcome === "allow");
  await page.click(`li.step[data-n="${spawn.n}"] a[href^="/console/governance"]`);
  await page.waitForURL(/\/console\/governance\?writ=/);
  await page.waitForSelector(`#decisions tbody tr[data-index="${spawn.log_index}"]`, { timeout: 10_000 });
  await page.goBack();
});

test("a second start while one runs follows the running one", async () => {
  const a = await srv.api("/v1/demo/runs", { method: "POST", token: op });
  assert.equal(a.status, 202);
  const b = await srv.api("/v1/demo/runs", { method: "POST", token: op });
  assert.equal(b.status, 409);
  assert.match(b.json.message, new RegExp(a.json.id));
  for (let i = 0; i < 120; i++) {
    if ((await srv.api(`/v1/demo/runs/${a.json.id}`, { token: op })).json.status !== "running") break;
    await new Promise((r) => setTimeout(r, 500));
  }
});

test("1024 px: nothing overflows, the controls are reachable with Tab", async () => {
  await page.goto(srv.base + "/console/demo");
  await page.setViewportSize({ width: 1024, height: 768 });
  await h.assertLayout(page);
  await h.assertTabReaches(page, ['nav a[data-view="governance"]', "#operator-signout", "#run"]);
  await page.setViewportSize({ width: 1440, height: 900 });
});

test("no console errors", () => {
  h.assertNoErrors(browser.errors);
});
