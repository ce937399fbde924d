// The console in a real browser: Debian's chromium, driven by playwright-core, against a
// live `writ serve` that `writ demo` has filled. Checks that decisions stream in, that the
// proof viewer verifies an entry's inclusion and the checkpoint signature in the browser,
// that the operator views load with an operator credential, that an entry's lineage
// shows, and (inside the starter bundle's payment window) that an operator approves a
// pending payment from the console. Usage: node console.test.mjs path/to/writ
import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, sign } from "node:crypto";

// A C2SP signed note made by Node's own Ed25519, with a key whose base64 holds a "+", for
// the console's verifier to check independently of writ's signer.
function nodeSignedNote() {
  for (;;) {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
    const keyB64 = Buffer.concat([Buffer.from([1]), raw]).toString("base64");
    if (!keyB64.includes("+")) continue;
    const name = "example.com/node-log";
    const id = createHash("sha256").update(Buffer.concat([Buffer.from(name + "\n"), Buffer.from([1]), raw])).digest().subarray(0, 4);
    const text = `${name}\n7\n${Buffer.alloc(32, 7).toString("base64")}\n`;
    const sig = sign(null, Buffer.from(text), privateKey);
    const note = `${text}\n\u2014 ${name} ${Buffer.concat([id, sig]).toString("base64")}\n`;
    return { note, vkey: `${name}+${id.toString("hex")}+${keyB64}`, text };
  }
}

const writ = process.argv[2] || "target/release/writ";
const dir = mkdtempSync(join(tmpdir(), "writ-console-"));
const profile = mkdtempSync(join(tmpdir(), "writ-chromium-"));
const server = spawn(writ, ["--data-dir", dir, "serve", "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "ignore"] });
let browser;
const deadline = setTimeout(async () => { console.error("timed out"); await cleanup(); process.exit(1); }, 120_000);

// Chromium is closed (and has stopped writing its profile) before the directories go; the
// removal retries what a late write may still leave behind.
async function cleanup() {
  server.kill("SIGKILL");
  if (browser) await browser.close().catch(() => {});
  const gone = { recursive: true, force: true, maxRetries: 10, retryDelay: 100 };
  rmSync(dir, gone);
  rmSync(profile, gone);
}

try {
  const base = await new Promise((resolve, reject) => {
    server.stdout.on("data", (d) => { const m = String(d).match(/http:\/\/[0-9.:]+/); if (m) resolve(m[0]); });
    server.on("exit", () => reject(new Error("the server exited")));
  });
  execFileSync(writ, ["--data-dir", dir, "demo", "--url", base], { stdio: "ignore" });
  const operator = execFileSync(writ, ["--data-dir", dir, "identity", "issue", "--operator", "--spiffe-id", "spiffe://demo.example/operator/browser", "--ttl", "600"]).toString().trim();

  // A fresh profile directory for this run (playwright passes it as --user-data-dir).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  });
  const page = browser.pages()[0] || (await browser.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/");

  // Decisions stream in.
  await page.waitForFunction(() => document.querySelectorAll("#entries tr").length >= 20, null, { timeout: 15_000 });
  assert.match(await page.textContent("#bundle"), /writ-starter/);
  assert.match(await page.textContent("#health"), /ready/);
  const kinds = await page.$$eval("#entries tr td:nth-child(3)", (tds) => tds.map((t) => t.textContent));
  assert.ok(kinds.includes("decision") && kinds.includes("quarantine") && kinds.includes("activation"), kinds.join(","));
  const denies = await page.$$eval("#entries .pill.deny", (p) => p.length);
  const allows = await page.$$eval("#entries .pill.allow", (p) => p.length);
  assert.ok(denies > 0 && allows > 0, `allows ${allows}, denies ${denies}`);

  // New decisions arrive while the page is open.
  const before = await page.$$eval("#entries tr", (r) => r.length);
  execFileSync(writ, ["--data-dir", dir, "demo", "--url", base], { stdio: "ignore" });
  await page.waitForFunction((n) => document.querySelectorAll("#entries tr").length > n, before, { timeout: 15_000 });

  // The proof viewer verifies inclusion and the checkpoint signature in the browser.
  await page.click("#entries tr:nth-child(3)");
  await page.waitForSelector("#proofOut[data-verified]", { timeout: 15_000 });
  assert.equal(await page.getAttribute("#proofOut", "data-verified"), "true", await page.textContent("#proofOut"));
  assert.match(await page.textContent("#proofOut"), /included in the signed log/);
  assert.match(await page.textContent("#proofOut"), /signed by the log key/, "Ed25519 checked by WebCrypto");
  // The in-browser note verifier against an independent signer (Node's crypto), with a key
  // whose base64 contains "+"; a changed body fails.
  const { note, vkey, text } = nodeSignedNote();
  assert.equal(await page.evaluate(([n, k]) => verifyNote(n, k), [note, vkey]), true);
  const forged = note.replace(text, text.replace("\n7\n", "\n8\n"));
  assert.equal(await page.evaluate(([n, k]) => verifyNote(n, k), [forged, vkey]), false);
  // A made-up index fails closed.
  await page.fill("#proofIndex", "999999");
  await page.click("#proofBtn");
  await page.waitForFunction(() => document.querySelector("#proofOut").dataset.verified === "false");

  // Operator views, and the lineage of a sub-agent chain.
  await page.fill("#token", operator);
  await page.click("#saveToken");
  await page.waitForFunction(() => /quarantined \(\d+\)/.test(document.querySelector("#admin").textContent), null, { timeout: 10_000 });
  assert.match(await page.textContent("#admin"), /rogue-/);
  const spawnRow = await page.$$eval("#entries tr", (rows) => rows.find((r) => r.children[5].textContent === "spawn" && r.children[3].textContent === "allow")?.dataset.index);
  assert.ok(spawnRow, "a spawn decision is shown");
  await page.click(`#entries tr[data-index="${spawnRow}"]`);
  await page.click("#lineageBtn");
  await page.waitForSelector("#lineage pre", { timeout: 10_000 });
  assert.match(await page.textContent("#lineage"), /spawn/);

  // Human approval from the console: a payment the starter bundle sends to an operator
  // (1,000 to 9,999, at any hour) is listed; the operator approves it with a click; the
  // agent then collects its writ.
  const agent = execFileSync(writ, ["--data-dir", dir, "identity", "issue", "--spiffe-id", "spiffe://demo.example/agent/billing-7", "--zone", "billing", "--ttl", "600"]).toString().trim();
  const asked = await (await fetch(base + "/v1/authorize", { method: "POST", body: JSON.stringify({ credentials: { workload: agent }, action: "payment", resource: "payments:stripe", arguments: { amount: 4321, currency: "EUR" } }) })).json();
  assert.equal(asked.outcome, "pending", JSON.stringify(asked));
  await page.click("#saveToken");
  const button = `#approvals button[data-approve="${asked.id}"]`;
  await page.waitForSelector(button, { timeout: 10_000 });
  assert.match(await page.textContent("#approvals"), /4321/);
  await page.click(button);
  await page.waitForFunction((id) => !document.querySelector(`#approvals button[data-approve="${id}"]`), asked.id, { timeout: 10_000 });
  const collected = await (await fetch(`${base}/v1/approvals/${asked.id}`, { headers: { Authorization: "Bearer " + agent } })).json();
  assert.equal(collected.status, "approved", JSON.stringify(collected));
  assert.equal(collected.resolution.reason, "approved from the console");
  assert.ok(typeof collected.writ === "string" && collected.writ.split(".").length === 3);

  assert.deepEqual(errors, [], "no script errors");
  console.log(`console browser test: ok (${await page.$$eval("#entries tr", (r) => r.length)} rows, proof verified in chromium)`);
  clearTimeout(deadline);
  await cleanup();
} catch (e) {
  console.error("console browser test FAILED:", e);
  clearTimeout(deadline);
  await cleanup();
  process.exit(1);
}
