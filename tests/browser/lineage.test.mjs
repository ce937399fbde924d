// The Execution Lineage Explorer in Debian's chromium against a real `writ serve` filled by
// `writ demo`: the demo's sub-agent chain is drawn with the API's nodes and edges, each node
// coloured by its decision and execution; a node opened by click or by Enter shows its
// decision record (the log's) and links to its proof; searches by principal and time list
// the API's roots; without the operator credential the page says what it needs; the layout
// holds at 1024 px and the graph is reachable with Tab.
// Usage: node lineage.test.mjs [path/to/writ]
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as h from "./harness.mjs";

let srv, browser, page, op, chain;

before(async () => {
  srv = await h.startServer();
  srv.demo();
  op = srv.operator("lineage");
  browser = await h.launchBrowser({ width: 1440, height: 900 });
  page = browser.page;
  // The demo's sub-agent chain: the root whose lineage is deepest.
  const roots = (await srv.api("/v1/lineage?limit=1000", { token: op })).json.roots;
  let best = null;
  for (const r of roots) {
    const l = (await srv.api(`/v1/lineage/${r.root}`, { token: op })).json;
    if (!best || Math.max(...l.nodes.map((n) => n.depth)) > Math.max(...best.nodes.map((n) => n.depth))) best = l;
  }
  chain = best;
  assert.ok(Math.max(...chain.nodes.map((n) => n.depth)) >= 2, "the demo made a sub-agent chain");
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

const expectedClass = (n) => (n.revoked ? "revoked" : n.outcome);

test("without the operator credential the page says what it needs, and fetches nothing", async () => {
  await page.goto(`${srv.base}/console/lineage`);
  await page.waitForFunction(() => /operator credential/.test(document.getElementById("lineage-status").textContent));
  assert.equal(await page.$$eval("#graph .node", (n) => n.length), 0);
});

test("the demo's sub-agent chain is drawn with the API's nodes and edges", async () => {
  await h.signIn(page, op);
  await page.goto(`${srv.base}/console/lineage?id=${encodeURIComponent(chain.root)}`);
  await page.waitForFunction((n) => document.getElementById("graph").dataset.nodes === String(n), chain.nodes.length, { timeout: 15_000 });
  const ids = new Set(chain.nodes.map((n) => n.id));
  const want = chain.nodes.filter((n) => n.parent && ids.has(n.parent)).map((n) => `${n.parent}>${n.id}`).sort();
  const drawn = await page.$$eval("#graph .edge", (es) => es.map((e) => `${e.dataset.from}>${e.dataset.to}`).sort());
  assert.deepEqual(drawn, want);
  assert.ok(want.length >= 2, "a chain, not a lone node");
  const nodes = await page.$$eval("#graph .node", (gs) => gs.map((g) => ({ id: g.dataset.id, cls: g.getAttribute("class"), y: g.getBoundingClientRect().top })));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  for (const n of chain.nodes) {
    const g = byId.get(n.id);
    assert.ok(g, `node ${n.id} drawn`);
    assert.ok(g.cls.split(" ").includes(expectedClass(n)), `${n.id}: ${g.cls}`);
    assert.ok(g.cls.includes(`exec-${n.execution || "unreported"}`), `${n.id}: ${g.cls}`);
    if (n.parent && byId.has(n.parent)) assert.ok(byId.get(n.parent).y < g.y, "parents above children");
  }
  assert.match(await page.textContent("#lineage-status"), new RegExp(`${chain.nodes.length} decision`));
});

test("a node opens its decision record and links to its proof, by click and by Enter", async () => {
  const deepest = chain.nodes.reduce((a, b) => (b.depth > a.depth ? b : a));
  await page.click(`#graph .node[data-id="${deepest.id}"]`);
  await page.waitForFunction((id) => document.getElementById("node-detail").dataset.id === id && !/loading/.test(document.getElementById("node-record").textContent), deepest.id);
  const entry = (await srv.api(`/v1/log/entries?start=${deepest.log_index}&end=${deepest.log_index + 1}`)).json.entries[0].entry;
  assert.deepEqual(JSON.parse(await page.textContent("#node-record")), entry);
  assert.equal(await page.getAttribute("#proof-link", "href"), `/console/proof?q=${deepest.log_index}`);
  // Keyboard: focus the root's node and press Enter.
  await page.focus(`#graph .node[data-id="${chain.root}"]`);
  await page.keyboard.press("Enter");
  await page.waitForFunction((id) => document.getElementById("node-detail").dataset.id === id, chain.root);
  // The proof link verifies the node's entry in the proof viewer.
  await page.click("#proof-link");
  await page.waitForFunction(() => document.getElementById("proof-verdict")?.dataset.verdict === "verified", null, { timeout: 20_000 });
});

test("search by principal, time and id lists the API's roots", async () => {
  await page.goto(`${srv.base}/console/lineage`);
  await page.waitForFunction(() => Number(document.getElementById("roots").dataset.count || -1) >= 0);
  const principal = chain.nodes[0].subject;
  await page.fill("#lineage-q", principal);
  await page.click("#lineage-form button[type=submit]");
  const want = (await srv.api(`/v1/lineage?principal=${encodeURIComponent(principal)}&limit=50`, { token: op })).json.roots;
  await page.waitForFunction((n) => document.getElementById("roots").dataset.count === String(n) && /root\(s\)/.test(document.getElementById("lineage-status").textContent), want.length);
  const listed = await page.$$eval("#roots button[data-root]", (bs) => bs.map((b) => b.dataset.root));
  assert.deepEqual(listed, want.map((r) => r.root));
  // A time range: everything the demo did is in [its first decision, now + 1 h).
  const t0 = Math.min(...chain.nodes.map((n) => n.time));
  const t1 = Math.floor(Date.now() / 1000) + 3600;
  await page.fill("#lineage-q", `${t0}..${t1}`);
  await page.click("#lineage-form button[type=submit]");
  const inRange = (await srv.api(`/v1/lineage?since=${t0}&until=${t1}&limit=50`, { token: op })).json.roots;
  await page.waitForFunction((n) => document.getElementById("roots").dataset.count === String(n), inRange.length);
  // Opening one from the list draws it.
  const first = inRange[0].root;
  const firstNodes = (await srv.api(`/v1/lineage/${first}`, { token: op })).json.nodes.length;
  await page.click(`#roots button[data-root="${first}"]`);
  await page.waitForFunction(([id, n]) => new URL(location.href).searchParams.get("id") === id && document.getElementById("graph").dataset.nodes === String(n), [first, firstNodes]);
  // An id of a node deep in the chain opens the whole chain.
  const deepest = chain.nodes.reduce((a, b) => (b.depth > a.depth ? b : a));
  await page.fill("#lineage-q", deepest.id);
  await page.click("#lineage-form button[type=submit]");
  await page.waitForFunction((id) => new URL(location.href).searchParams.get("id") === id, deepest.id);
  await page.waitForFunction((n) => document.getElementById("graph").dataset.nodes === String(n), chain.nodes.length);
  assert.ok((await page.getAttribute(`#graph .node[data-id="${deepest.id}"]`, "class")).includes("focus"));
  // An unknown id says so.
  await page.fill("#lineage-q", "w-no-such-writ");
  await page.click("#lineage-form button[type=submit]");
  await page.waitForFunction(() => /no decision w-no-such-writ/.test(document.getElementById("lineage-status").textContent));
});

test("no console errors but the unknown id's 404; the layout holds at 1024 px; keyboard reachable", async () => {
  await page.goto(`${srv.base}/console/lineage?id=${encodeURIComponent(chain.root)}`);
  await page.waitForFunction((n) => document.getElementById("graph").dataset.nodes === String(n), chain.nodes.length);
  await page.click(`#graph .node[data-id="${chain.root}"]`);
  await page.waitForFunction(() => !/loading/.test(document.getElementById("node-record")?.textContent || "loading"));
  await h.screenshot(page, "lineage");
  await page.setViewportSize({ width: 1024, height: 800 });
  await h.assertLayout(page);
  await h.assertTabReaches(page, ["#lineage-q", "#lineage-form button[type=submit]", "#graph .node"]);
  await page.setViewportSize({ width: 1440, height: 900 });
  // The one 404 is the unknown id the search above asked for, which the page reported.
  const errors = browser.errors.filter((e) => !/w-no-such-writ|status of 404 \(Not Found\)$/.test(e) || !/lineage/.test(e));
  h.assertNoErrors(errors);
});
