// The Governance Proof Viewer in Debian's chromium against a real `writ serve` filled by
// `writ demo`: a real log index, receipt, writ id and writ verify in the browser, and each
// tampering (the entry, the checkpoint's signature, its root, a proof hash, the pinned key,
// the consistency proof, the writ's signature, the entry the writ names, the request
// binding) fails at its own step while the later steps are not reached. Tampered answers
// are made by intercepting the page's requests: the server itself is never changed. The
// layout holds at 1024 px and every control is reachable with Tab.
// Usage: node proof.test.mjs [path/to/writ]
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, sign, createHash } from "node:crypto";
import * as h from "./harness.mjs";

let srv, browser, page, writ, decision;

before(async () => {
  srv = await h.startServer();
  srv.demo();
  browser = await h.launchBrowser({ width: 1440, height: 900 });
  page = browser.page;
  // A real writ: an allowed read by a workload of the development issuer.
  const agent = srv.workload("agent/billing-proof", "billing");
  decision = (await srv.api("/v1/authorize", { method: "POST", body: { credentials: { workload: agent }, action: "read", resource: "fs:/zones/billing", arguments: { path: "/zones/billing/faq.md" } } })).json;
  assert.equal(decision.outcome, "allow", JSON.stringify(decision));
  writ = decision.writ;
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

const STEPS = ["receipt", "log-key", "checkpoint", "entry", "inclusion", "consistency"];

/** Verifies `input` in the page; the verdict and the steps as the page marks them. */
async function verify(input) {
  await page.fill("#proof-input", input);
  await page.click("#proof-go");
  await page.waitForFunction(() => !["running", "idle"].includes(document.getElementById("proof-verdict").dataset.verdict), null, { timeout: 20_000 });
  return page.evaluate(() => ({
    verdict: document.getElementById("proof-verdict").dataset.verdict,
    failed: document.getElementById("proof-verdict").dataset.failed,
    text: document.getElementById("proof-verdict").textContent,
    steps: [...document.querySelectorAll("#proof-steps li")].map((li) => ({ step: li.dataset.step, ok: li.dataset.ok, detail: li.querySelector(".detail").textContent })),
  }));
}

function assertVerified(r, withWrit) {
  assert.equal(r.verdict, "verified", JSON.stringify(r));
  const ok = r.steps.filter((s) => s.ok === "true").map((s) => s.step);
  assert.deepEqual(ok, withWrit ? [...STEPS, "writ-signature", "writ-entry", "binding"] : STEPS, JSON.stringify(r.steps));
}

function assertFailsAt(r, step) {
  assert.equal(r.verdict, "failed", JSON.stringify(r));
  assert.equal(r.failed, step, JSON.stringify(r.steps));
  const i = r.steps.findIndex((s) => s.step === step);
  assert.ok(r.steps.slice(0, i).every((s) => s.ok === "true"), `the steps before ${step} passed: ${JSON.stringify(r.steps)}`);
  assert.ok(r.steps.slice(i + 1).every((s) => s.ok !== "true"), `no step after ${step} passed: ${JSON.stringify(r.steps)}`);
}

/** Runs `fn` with the page's answers to `pattern` rewritten by `rewrite(text) → text`. */
async function tampered(pattern, rewrite, fn) {
  const handler = async (route) => {
    const res = await route.fetch();
    await route.fulfill({ response: res, body: rewrite(await res.text()) });
  };
  await page.route(pattern, handler);
  try {
    return await fn();
  } finally {
    await page.unroute(pattern, handler);
  }
}

const flip = (s, at) => s.slice(0, at) + (s[at] === "A" ? "B" : "A") + s.slice(at + 1);

test("a log index from the URL verifies; the page shows the API's entry and receipt", async () => {
  await page.goto(`${srv.base}/console/proof?index=${decision.log_index}`);
  await page.waitForFunction(() => document.getElementById("proof-verdict").dataset.verdict === "verified", null, { timeout: 20_000 });
  const entry = (await srv.api(`/v1/log/entries?start=${decision.log_index}&end=${decision.log_index + 1}`)).json.entries[0];
  assert.deepEqual(JSON.parse(await page.textContent("#proof-entry")), entry.entry);
  assert.match(await page.textContent("#proof-receipt"), new RegExp(`^c2sp.org/tlog-proof@v1\nindex ${decision.log_index}\n`));
  const key = (await srv.api("/v1/log/key")).json.trim();
  assert.match(await page.textContent("#pin-current"), new RegExp(key.replace(/[+]/g, "\\+")));
  const steps = await page.$$eval("#proof-steps li", (lis) => lis.map((l) => [l.dataset.step, l.dataset.ok]));
  assert.deepEqual(steps.filter(([, ok]) => ok === "true").map(([s]) => s), STEPS);
  assert.match(await page.textContent('#proof-steps li[data-step="log-key"]'), /first use: pinned/);
});

test("a real writ, its id and a receipt pasted in verify", async () => {
  assertVerified(await verify(writ), true);
  assertVerified(await verify(decision.id), false);
  const receipt = (await srv.api(`/v1/log/receipt/${decision.log_index}`)).json;
  assertVerified(await verify(receipt), false);
  // Consistency with the checkpoints this browser saw: a newer checkpoint after more decisions.
  srv.demo();
  const size = (await srv.api("/readyz")).json.log.size;
  const r = await verify(String(size - 1));
  assertVerified(r, false);
  assert.match(r.steps.find((s) => s.step === "consistency").detail, /consistent with \d+ checkpoint/);
});

test("a tampered entry, signature, root, proof, key or consistency proof fails at its step", async () => {
  const i = decision.log_index;
  // The entry's bytes changed (and the leaf hash the server gives kept).
  assertFailsAt(await tampered("**/v1/log/entries?*", (t) => {
    const j = JSON.parse(t);
    const bytes = Buffer.from(j.entries[0].entry_base64, "base64").toString().replace('"allow"', '"deny"');
    j.entries[0].entry_base64 = Buffer.from(bytes).toString("base64");
    return JSON.stringify(j);
  }, () => verify(String(i))), "entry");
  // The entry's bytes and its leaf hash changed together: the proof no longer leads to the root.
  assertFailsAt(await tampered("**/v1/log/entries?*", (t) => {
    const j = JSON.parse(t);
    const bytes = Buffer.from(Buffer.from(j.entries[0].entry_base64, "base64").toString().replace('"allow"', '"deny"'));
    j.entries[0].entry_base64 = bytes.toString("base64");
    j.entries[0].leaf_hash = createHash("sha256").update(Buffer.concat([Buffer.from([0]), bytes])).digest("base64");
    return JSON.stringify(j);
  }, () => verify(String(i))), "inclusion");
  // The checkpoint's signature changed.
  assertFailsAt(await tampered("**/v1/log/receipt/*", (t) => flip(t, t.lastIndexOf(" ") + 12), () => verify(String(i))), "checkpoint");
  // The checkpoint's root changed.
  assertFailsAt(await tampered("**/v1/log/receipt/*", (t) => {
    const [head, cp] = t.split("\n\n");
    const lines = cp.split("\n");
    lines[2] = flip(lines[2], 3);
    return head + "\n\n" + lines.join("\n");
  }, () => verify(String(i))), "checkpoint");
  // A proof hash changed.
  assertFailsAt(await tampered("**/v1/log/receipt/*", (t) => {
    const lines = t.split("\n");
    lines[2] = flip(lines[2], 5);
    return lines.join("\n");
  }, () => verify(String(i))), "inclusion");
  // The server publishes another log key than the one pinned.
  assertFailsAt(await tampered("**/v1/log/key", () => "example.invalid/other+d4de1c1b+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea\n", () => verify(String(i))), "log-key");
  // A newer checkpoint whose consistency proof with the ones seen does not hold.
  srv.demo();
  const size = (await srv.api("/readyz")).json.log.size;
  assertFailsAt(await tampered("**/v1/log/proof/consistency?*", (t) => {
    const j = JSON.parse(t);
    j.proof = j.proof.map((p) => flip(p, 0));
    return JSON.stringify(j);
  }, () => verify(String(size - 1))), "consistency");
  // Untouched, the same verifies.
  assertVerified(await verify(String(size - 1)), false);
});

test("a tampered writ signature, a writ for another entry and a broken binding fail at their steps", async () => {
  const [hd, pl, sig] = writ.split(".");
  const s = Buffer.from(sig, "base64url");
  s[10] ^= 1;
  assertFailsAt(await verify(`${hd}.${pl}.${s.toString("base64url")}`), "writ-signature");

  // A key of our own served as the JWKS: writs it signs pass the signature step, so the
  // later steps are what must catch them.
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const x = publicKey.export({ format: "jwk" }).x;
  const jwks = JSON.stringify({ keys: [{ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig", kid: "test-kid", x }] });
  const forge = (claims) => {
    const h64 = Buffer.from(JSON.stringify({ alg: "EdDSA", typ: "JWT", kid: "test-kid" })).toString("base64url");
    const p64 = Buffer.from(JSON.stringify(claims)).toString("base64url");
    return `${h64}.${p64}.${sign(null, Buffer.from(`${h64}.${p64}`), privateKey).toString("base64url")}`;
  };
  const claims = JSON.parse(Buffer.from(pl, "base64url"));
  await tampered("**/.well-known/jwks.json", () => jwks, async () => {
    // The genuine claims re-signed: verifies through to the binding.
    assertVerified(await verify(forge(claims)), true);
    // Another request than the one recorded.
    assertFailsAt(await verify(forge({ ...claims, req: "sha256:" + "0".repeat(64) })), "binding");
    // A writ that names another entry of the log.
    assertFailsAt(await verify(forge({ ...claims, log: { ...claims.log, index: claims.log.index - 1 } })), "writ-entry");
    // Another subject than the one recorded.
    assertFailsAt(await verify(forge({ ...claims, sub: "spiffe://demo.example/agent/mallory" })), "writ-entry");
  });
});

test("garbage is refused with a message, not an exception", async () => {
  const r = await verify("<script>alert(1)</script>");
  assert.equal(r.verdict, "error");
  assert.match(r.text, /paste a writ/);
  const bad = await verify("c2sp.org/tlog-proof@v1\nindex 01\n\nx\n");
  assert.equal(bad.verdict, "failed");
  assert.equal(bad.failed, "receipt");
});

test("pinning a pasted key: a different server key then fails at the key step", async () => {
  await page.click("#pin-forget");
  await page.fill("#pin-input", "example.invalid/writ/docs-vector+35caba53+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea");
  await page.click("#pin-save");
  assert.match(await page.textContent("#pin-status"), /pinned/);
  await page.fill("#pin-input", "not a key");
  await page.click("#pin-save");
  assert.match(await page.textContent("#pin-status"), /not a vkey/);
  // The pasted key is another log's: this log's checkpoint has no signature by it... but
  // its origin differs, so the server's key is pinned on first use under its own origin.
  const r = await verify(String(decision.log_index));
  assert.equal(r.verdict, "verified");
  // Pin another key under this log's origin: the server's key no longer matches.
  const origin = (await srv.api("/v1/log/key")).json.split("+")[0];
  await page.evaluate((o) => localStorage.setItem(`writ.console.vkey.${o}`, `${o}+00000000+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea`), origin);
  assertFailsAt(await verify(String(decision.log_index)), "log-key");
  await page.click("#pin-forget");
});

test("no console errors; the layout holds at 1024 px; every control is reachable with Tab", async () => {
  await page.goto(`${srv.base}/console/proof?index=${decision.log_index}`);
  await page.waitForFunction(() => document.getElementById("proof-verdict").dataset.verdict === "verified", null, { timeout: 20_000 });
  await h.screenshot(page, "proof");
  await page.setViewportSize({ width: 1024, height: 800 });
  await h.assertLayout(page);
  await h.assertTabReaches(page, ["#proof-input", "#proof-go", "#pin-input", "#pin-save", "#pin-forget"]);
  // Enter in the form verifies from the keyboard alone.
  await page.focus("#proof-go");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.getElementById("proof-verdict").dataset.verdict === "verified", null, { timeout: 20_000 });
  await page.setViewportSize({ width: 1440, height: 900 });
  h.assertNoErrors(browser.errors);
});
