// The Governance Proof Viewer page (/console/proof): takes what the user pasted, fetches the
// entry, its tlog-proof receipt, the log key, the JWKS and consistency proofs from the public
// API, and runs proof.js's checks in the browser, showing each step and the verdict.
import * as P from "./proof.js";
// common.js (a classic script loaded before this module) defines window.Writ.
const W = window.Writ;
const api = (path, opts) => W.api.get(path, opts);
const operatorToken = () => W.credential.get();

const $ = (id) => document.getElementById(id);

const text = (path) => W.api.text(path);

async function entryAt(index) {
  const page = await api(`/v1/log/entries?start=${index}&end=${index + 1n}`);
  const e = page.entries && page.entries[0];
  if (!e) throw new Error(`the log has no entry ${index}`);
  return e;
}

// A decision or writ id → its log index: the lineage route when an operator credential is in
// this session, else a walk back through the public log (bounded).
async function indexOf(id, status) {
  if (operatorToken()) {
    try {
      const l = await api(`/v1/lineage/${encodeURIComponent(id)}`, { auth: true });
      const n = l.nodes.find((x) => x.id === id);
      if (n) return BigInt(n.log_index);
    } catch {}
  }
  const size = BigInt((await api("/readyz").catch(() => null))?.log?.size ?? 0) || (await logSize());
  const PAGE = 1000n;
  const MAX_SCAN = 50_000n;
  for (let end = size; end > 0n && size - end < MAX_SCAN; end -= PAGE) {
    const start = end > PAGE ? end - PAGE : 0n;
    status(`looking for ${id} in entries ${start}–${end - 1n}…`);
    const page = await api(`/v1/log/entries?start=${start}&end=${end}`);
    const hit = page.entries.find((e) => e.entry && e.entry.id === id && e.entry.kind === "decision");
    if (hit) return BigInt(hit.index);
  }
  throw new Error(`no decision ${id} in the newest ${MAX_SCAN} entries of the log (an operator credential looks it up directly)`);
}

async function logSize() {
  const cp = P.parseCheckpoint((await text("/v1/log/checkpoint")).split("\n\n")[0] + "\n");
  return cp.size;
}

function renderSteps(result) {
  const list = $("proof-steps");
  W.fill(
    list,
    result.steps.map((s) => {
      const cls = s.ok === true ? "ok" : s.ok === false ? "bad" : "na";
      return W.el("li", { class: `step ${cls}`, dataset: { step: s.step, ok: String(s.ok) } },
        W.el("span", { class: "mark", "aria-hidden": "true" }, s.ok === true ? "✓" : s.ok === false ? "✗" : "–"),
        W.el("div", {}, W.el("b", {}, s.title), W.el("div", { class: "detail" }, s.detail)));
    }),
  );
  const v = $("proof-verdict");
  v.dataset.verdict = result.ok ? "verified" : "failed";
  v.dataset.failed = result.failed || "";
  const failed = result.steps.find((s) => s.ok === false);
  v.className = "verdict " + (result.ok ? "allow" : "deny");
  v.textContent = result.ok
    ? `Verified: entry ${result.index} is in the log under a checkpoint signed by the pinned key${result.steps.some((s) => s.step === "binding" && s.ok) ? ", and the writ is genuine and bound to the recorded request" : ""}.`
    : `Verification FAILED at “${failed ? failed.title : "?"}”.`;
}

function showPin() {
  const pins = Object.keys(localStorage).filter((k) => k.startsWith("writ.console.vkey."));
  $("pin-current").textContent = pins.length ? pins.map((k) => localStorage.getItem(k)).join("\n") : "no log key pinned yet: the first verification pins the server's";
}

async function verify(input) {
  const status = (m) => ($("proof-status").textContent = m);
  W.fill($("proof-steps"));
  $("proof-entry").textContent = "";
  const v = $("proof-verdict");
  v.textContent = "verifying…";
  v.className = "verdict";
  v.dataset.verdict = "running";
  try {
    const what = P.classify(input);
    let receipt;
    let index;
    let writ = null;
    if (what.kind === "receipt") {
      receipt = what.receipt;
      try {
        index = P.parseReceipt(receipt).index;
      } catch {
        index = null;
      }
    } else if (what.kind === "index") {
      index = what.index;
    } else if (what.kind === "writ") {
      writ = what.writ;
      const claims = P.parseJws(writ).claims;
      index = claims.log && claims.log.index !== undefined ? BigInt(claims.log.index) : await indexOf(claims.jti, status);
    } else {
      index = await indexOf(what.id, status);
    }
    status("fetching the entry, its receipt and the log key…");
    const [entry, rtext, vkey, jwks] = await Promise.all([
      index === null ? Promise.resolve(null) : entryAt(index),
      receipt ? Promise.resolve(receipt) : text(`/v1/log/receipt/${index}`),
      text("/v1/log/key"),
      writ ? api("/.well-known/jwks.json") : Promise.resolve(null),
    ]);
    status("verifying in this browser (Web Crypto SHA-256 and Ed25519)…");
    const result = await P.verifyEvidence({
      receipt: rtext,
      entry: entry ? P.fromBase64(entry.entry_base64) : null,
      serverLeafHash: entry ? entry.leaf_hash : null,
      vkey,
      storage: localStorage,
      consistency: async (from, to) => (await api(`/v1/log/proof/consistency?from=${from}&to=${to}`)).proof.map(P.fromBase64),
      writ,
      jwks,
      expectId: what.kind === "id" ? what.id : null,
    });
    renderSteps(result);
    if (entry) $("proof-entry").textContent = JSON.stringify(entry.entry, null, 2);
    $("proof-receipt").textContent = rtext;
    status("");
  } catch (e) {
    v.className = "verdict deny";
    v.dataset.verdict = "error";
    v.textContent = `Could not verify: ${e.message}`;
    status("");
  }
  showPin();
}

$("proof-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = $("proof-input").value;
  const url = new URL(location.href);
  if (q.trim().length < 200) url.searchParams.set("q", q.trim());
  else url.searchParams.delete("q");
  history.replaceState(null, "", url);
  verify(q);
});

$("pin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const msg = $("pin-status");
  try {
    const k = await P.parseVkey($("pin-input").value);
    localStorage.setItem(`writ.console.vkey.${k.name}`, k.text);
    msg.textContent = `pinned ${k.text}`;
  } catch (e) {
    msg.textContent = `not a vkey: ${e.message}`;
  }
  showPin();
});

$("pin-forget").addEventListener("click", () => {
  for (const k of Object.keys(localStorage)) if (k.startsWith("writ.console.")) localStorage.removeItem(k);
  $("pin-status").textContent = "forgot the pinned keys and the checkpoints seen";
  showPin();
});

showPin();
const params = new URL(location.href).searchParams;
const q = params.get("q") || params.get("index") || params.get("id");
if (q) {
  $("proof-input").value = q;
  verify(q);
}
