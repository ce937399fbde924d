// The browser tests' shared harness: a real `writ serve` on a free loopback port with a
// data directory of its own, `writ demo` run against it, Debian's chromium driven by
// playwright-core, every console error and uncaught exception collected, screenshots saved
// to target/browser-artifacts/<name>.png, and the layout and keyboard checks every view
// must pass.
//
// Usage in a test file (node's own test runner):
//   const h = await startServer(writ);   // { base, dir, writ, operator(), demo(), stop() }
//   const b = await launchBrowser();     // { context, page, errors, newPage(), close() }
//   ...; await screenshot(b.page, "governance"); await b.close(); await h.stop();
import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository's root. */
export const root = resolve(here, "..", "..");
/** Where screenshots go (CI keeps them as artifacts). */
export const artifacts = join(root, "target", "browser-artifacts");

/** The writ binary: the first argument, $WRIT, or the release build. */
export function writBinary() {
  return resolve(process.argv[2] || process.env.WRIT || join(root, "target", "release", "writ"));
}

/**
 * Starts `writ serve` on 127.0.0.1 with a port the system picks and a fresh data directory;
 * resolves once it prints its URL.
 */
export async function startServer(writ = writBinary()) {
  const dir = mkdtempSync(join(tmpdir(), "writ-browser-"));
  const server = spawn(writ, ["--data-dir", dir, "serve", "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  server.stderr.on("data", (d) => { stderr = (stderr + d).slice(-4000); });
  const base = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error("writ serve printed no URL within 30 s: " + stderr)), 30_000);
    server.stdout.on("data", (d) => {
      const m = String(d).match(/http:\/\/127\.0\.0\.1:\d+/);
      if (m) { clearTimeout(timer); res(m[0]); }
    });
    server.on("exit", (code) => { clearTimeout(timer); rej(new Error(`writ serve exited (${code}): ${stderr}`)); });
  });
  const run = (args, opts = {}) => execFileSync(writ, ["--data-dir", dir, ...args], { encoding: "utf8", maxBuffer: 16 << 20, ...opts });
  return {
    base, dir, writ, server,
    run,
    /** Runs `writ demo` against the server; its narration. */
    demo: () => run(["demo", "--url", base]),
    /** A fresh operator credential for `spiffe://<trust domain>/operator/<name>`. */
    operator: (name = "browser") => run(["identity", "issue", "--operator", "--spiffe-id", `spiffe://demo.example/operator/${name}`, "--ttl", "1800"]).trim(),
    /** A workload credential of the development issuer. */
    workload: (path, zone) => run(["identity", "issue", "--spiffe-id", `spiffe://demo.example/${path}`, "--zone", zone, "--ttl", "1800"]).trim(),
    /** JSON from the API, optionally as an operator. */
    async api(path, { token, method = "GET", body } = {}) {
      const headers = {};
      if (token) headers.Authorization = "Bearer " + token;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await r.text();
      let json = null;
      try { json = JSON.parse(text); } catch { json = text; }
      return { status: r.status, json, headers: r.headers };
    },
    async stop() {
      if (server.exitCode === null) {
        server.kill("SIGTERM");
        await new Promise((res) => { const t = setTimeout(() => { server.kill("SIGKILL"); res(); }, 5000); server.on("exit", () => { clearTimeout(t); res(); }); });
      }
      rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    },
  };
}

/**
 * Launches Debian's chromium (or $CHROMIUM) headless with a profile of its own, at
 * 1440x900 unless told otherwise. `errors` collects console errors, uncaught exceptions
 * and failed requests of every page opened through it.
 */
export async function launchBrowser({ width = 1440, height = 900 } = {}) {
  const profile = mkdtempSync(join(tmpdir(), "writ-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width, height },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--font-render-hinting=none"],
  });
  const errors = [];
  const watch = (page) => {
    page.on("pageerror", (e) => errors.push(`${page.url()}: uncaught ${e}`));
    page.on("console", (m) => { if (m.type() === "error") errors.push(`${page.url()}: console error ${m.text()}`); });
    page.on("response", (r) => { if (r.status() >= 400) errors.push(`${page.url()}: HTTP ${r.status()} from ${r.request().method()} ${r.url()}`); });
    page.on("requestfailed", (r) => {
      // A stream the page closes on navigation is aborted by design.
      if (!/ERR_ABORTED/.test(r.failure()?.errorText || "")) errors.push(`${page.url()}: request failed ${r.url()} ${r.failure()?.errorText}`);
    });
    return page;
  };
  context.on("page", watch);
  const page = watch(context.pages()[0] || (await context.newPage()));
  return {
    context, page, errors,
    newPage: async () => context.newPage(),
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    },
  };
}

/** Saves a screenshot of the page to target/browser-artifacts/<name>.png; its path. */
export async function screenshot(page, name, { fullPage = false } = {}) {
  mkdirSync(artifacts, { recursive: true });
  const path = join(artifacts, `${name}.png`);
  await page.screenshot({ path, fullPage });
  return path;
}

/** Puts the operator credential into the page's session (as the header's dialog does). */
export async function signIn(page, token) {
  await page.click("#operator-signin");
  await page.fill("#credential-input", token);
  await page.click("#credential-save");
  await page.waitForSelector("#operator-signout");
}

/**
 * The layout at the page's current width: the document does not scroll sideways, and no
 * visible interactive control lies outside the viewport horizontally. Returns what it saw.
 */
export async function assertLayout(page) {
  const seen = await page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const overflow = document.documentElement.scrollWidth - width;
    const outside = [];
    for (const e of document.querySelectorAll("a[href], button, input, select, textarea, [tabindex]")) {
      const r = e.getBoundingClientRect();
      const style = getComputedStyle(e);
      if (r.width === 0 || r.height === 0 || style.visibility === "hidden") continue;
      // The skip link sits off-screen until it has the focus (then it is on screen).
      if (e.classList.contains("skip")) continue;
      // Clipped by a scrolling ancestor is still outside what the user sees.
      if (r.left < -1 || r.right > width + 1) outside.push(`${e.tagName.toLowerCase()}#${e.id}.${e.className} [${Math.round(r.left)}, ${Math.round(r.right)}] "${(e.textContent || e.value || "").trim().slice(0, 30)}"`);
      if (e.id !== "main") {
        let p = e.parentElement;
        while (p && p !== document.body) {
          const ps = getComputedStyle(p);
          if (/(auto|scroll|hidden)/.test(ps.overflowX)) {
            const pr = p.getBoundingClientRect();
            if (r.right > pr.right + 1 || r.left < pr.left - 1) {
              outside.push(`${e.tagName.toLowerCase()}#${e.id} clipped by ${p.tagName.toLowerCase()}.${p.className}`);
              break;
            }
          }
          p = p.parentElement;
        }
      }
    }
    return { width, overflow, outside };
  });
  assert.ok(seen.overflow <= 1, `the page scrolls sideways by ${seen.overflow}px at ${seen.width}px`);
  assert.deepEqual(seen.outside, [], `controls outside the viewport at ${seen.width}px`);
  return seen;
}

/**
 * Presses Tab up to `max` times from the top of the page and returns the ids (or text) of
 * what took the focus, in order; asserts each selector in `expected` was reached.
 */
export async function assertTabReaches(page, expected, max = 80) {
  await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
  await page.focus("body").catch(() => {});
  const reached = new Set();
  const order = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    const hit = await page.evaluate((sels) => {
      const a = document.activeElement;
      if (!a || a === document.body) return { id: "", matches: [] };
      return { id: a.id || a.textContent.trim().slice(0, 20), matches: sels.filter((s) => a.matches(s)) };
    }, expected);
    order.push(hit.id);
    for (const m of hit.matches) reached.add(m);
    if (reached.size === expected.length) break;
  }
  const missing = expected.filter((s) => !reached.has(s));
  assert.deepEqual(missing, [], `not reached with Tab: ${missing.join(", ")} (focus went: ${order.join(" → ")})`);
  return order;
}

/** No console errors, uncaught exceptions or failed requests were collected. */
export function assertNoErrors(errors) {
  assert.deepEqual(errors, [], "console errors");
}
