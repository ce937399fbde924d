// writ console: what every view shares. Loaded by each page before its own script, as a
// classic script (the pages' Content Security Policy allows scripts from this origin only,
// never inline), it defines the global `Writ`:
//
// - the header: the five views' navigation (each view has its own URL), the operator
//   credential (kept in this tab's sessionStorage only: never in localStorage, a cookie or
//   a URL), and an error area that says what failed and why;
// - fetch helpers over the public HTTP API (JSON in, JSON out, the API's error bodies turned
//   into Errors that carry the status, reason code, message and error id);
// - an event-stream reader (the HTML Living Standard's server-sent events, read with fetch
//   so that it can send the operator credential and Last-Event-ID, and resume after a drop);
// - a small DOM builder that never parses strings as HTML, and formatting helpers;
// - the confirmation dialog of operator actions: what will happen, a typed reason, then
//   the action.
"use strict";

(function () {
  const VIEWS = [
    { id: "governance", title: "Governance Console" },
    { id: "demo", title: "Runtime Demo" },
    { id: "proof", title: "Proof Viewer" },
    { id: "health", title: "Health" },
    { id: "lineage", title: "Lineage Explorer" },
  ];
  const CREDENTIAL_KEY = "writ-operator";

  // ---- DOM ---------------------------------------------------------------------------

  /** Builds an element: `el("a", {href: "/x", class: "y", onclick: f}, "text", child)`. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  /** Replaces every child of `node`. */
  function fill(node, ...children) {
    node.replaceChildren();
    return append(node, children);
  }

  const $ = (id) => document.getElementById(id);

  // ---- Formatting ---------------------------------------------------------------------

  function fmtTime(unix) {
    if (unix === undefined || unix === null || unix === "") return "";
    return new Date(Number(unix) * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
  }

  function shortDigest(d) {
    if (!d) return "";
    const s = String(d);
    return s.startsWith("sha256:") ? s.slice(0, 19) + "…" : s.length > 20 ? s.slice(0, 18) + "…" : s;
  }

  /** A SPIFFE ID without its scheme and trust domain (`agent/billing-1`), for narrow cells. */
  function shortId(id) {
    return String(id || "").replace(/^spiffe:\/\/[^/]+\//, "");
  }

  function outcomeClass(outcome) {
    switch (outcome) {
      case "allow": case "approved": case "accepted": case "succeeded": case "released": return "allow";
      case "deny": case "rejected": case "refused": case "revoked": case "isolated": case "failed": return "deny";
      case "pending": case "expired": return "pending";
      default: return "info";
    }
  }

  function pill(text, cls) {
    return el("span", { class: "pill " + (cls || outcomeClass(text)) }, text);
  }

  const link = {
    governance: (q) => "/console/governance" + (q ? "?" + new URLSearchParams(q) : ""),
    proof: (index) => "/console/proof?index=" + encodeURIComponent(index),
    lineage: (id) => "/console/lineage?id=" + encodeURIComponent(id),
    demo: () => "/console/demo",
  };

  // ---- The operator credential (this tab's session only) -----------------------------

  const credential = {
    get() {
      try { return sessionStorage.getItem(CREDENTIAL_KEY) || ""; } catch { return ""; }
    },
    set(token) {
      const t = String(token || "").trim();
      try {
        if (t) sessionStorage.setItem(CREDENTIAL_KEY, t);
        else sessionStorage.removeItem(CREDENTIAL_KEY);
      } catch { /* storage refused: the credential is not kept */ }
      renderOperator();
      document.dispatchEvent(new CustomEvent("writ:credential", { detail: { present: Boolean(t) } }));
    },
    clear() { credential.set(""); },
    /** The credential's subject as it claims it (not verified here: the server verifies). */
    subject() {
      const t = credential.get();
      try {
        const payload = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
        return JSON.parse(atob(payload)).sub || "";
      } catch { return ""; }
    },
  };

  // ---- The API ------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body, path) {
      const code = body && body.error ? body.error : "";
      const msg = body && body.message ? body.message : "";
      super(`${path}: HTTP ${status}${code ? " " + code : ""}${msg ? ": " + msg : ""}${body && body.error_id ? " (error id " + body.error_id + ")" : ""}`);
      this.status = status;
      this.code = code;
      this.body = body;
      this.path = path;
    }
  }

  async function request(method, path, { body, auth = false, accept = "application/json" } = {}) {
    const headers = { Accept: accept };
    if (auth) {
      const t = credential.get();
      if (!t) throw new ApiError(401, { error: "identity.missing", message: "this needs the operator credential: paste it with “Operator credential” at the top right" }, path);
      headers.Authorization = "Bearer " + t;
    }
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let r;
    try {
      r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
    } catch (e) {
      throw new ApiError(0, { message: "the control plane did not answer (" + e.message + ")" }, path);
    }
    return r;
  }

  async function json(method, path, opts) {
    const r = await request(method, path, opts);
    const text = await r.text();
    let parsed = null;
    try { parsed = text ? JSON.parse(text) : null; } catch { parsed = { message: text.slice(0, 200) }; }
    if (!r.ok) throw new ApiError(r.status, parsed, path);
    return parsed;
  }

  const api = {
    get: (path, opts) => json("GET", path, opts),
    post: (path, body, opts) => json("POST", path, { ...(opts || {}), body: body === undefined ? {} : body }),
    put: (path, body, opts) => json("PUT", path, { ...(opts || {}), body }),
    del: (path, body, opts) => json("DELETE", path, { ...(opts || {}), body }),
    /** A plain-text answer (checkpoints, receipts, the log key). */
    async text(path, opts) {
      const r = await request("GET", path, { ...(opts || {}), accept: "text/plain" });
      const t = await r.text();
      if (!r.ok) {
        let parsed = null;
        try { parsed = JSON.parse(t); } catch { parsed = { message: t.slice(0, 200) }; }
        throw new ApiError(r.status, parsed, path);
      }
      return t;
    },
    /** The raw Response, for callers that need the status (a 404 that means "none"). */
    raw: (method, path, opts) => request(method, path, opts),
    ApiError,
  };

  // ---- Server-sent events, read with fetch ---------------------------------------------

  /**
   * Reads `url` as an event stream. `onEvent({type, data, id})` for each event;
   * `onState(state, detail)` with "connecting", "open", "retrying" or "closed". Reconnects
   * after a drop (with Last-Event-ID, so the server resumes), waiting `retry` ms (the
   * stream's own `retry:` wins), up to `maxRetries` times in a row. Returns `{ close() }`.
   */
  function stream(url, { onEvent, onState = () => {}, auth = false, lastEventId = "", retry = 1000, maxRetries = Infinity } = {}) {
    const controller = new AbortController();
    let closed = false;
    let failures = 0;
    let last = lastEventId;
    async function connect() {
      while (!closed) {
        onState("connecting");
        try {
          const headers = { Accept: "text/event-stream" };
          if (last !== "") headers["Last-Event-ID"] = last;
          if (auth) headers.Authorization = "Bearer " + credential.get();
          const r = await fetch(url, { headers, signal: controller.signal, cache: "no-store" });
          if (!r.ok) {
            let body = null;
            try { body = await r.json(); } catch { /* not JSON */ }
            const err = new ApiError(r.status, body, url);
            // A refusal that repeating cannot fix ends the stream.
            if (r.status === 400 || r.status === 401 || r.status === 403 || r.status === 404) {
              closed = true;
              onState("closed", err);
              return;
            }
            throw err;
          }
          onState("open");
          failures = 0;
          const reader = r.body.getReader();
          const decoder = new TextDecoder();
          let buffer = "";
          let event = { type: "message", data: [], id: null };
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, { stream: true });
            let nl;
            while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
              const line = buffer.slice(0, nl);
              buffer = buffer.slice(nl + (buffer.startsWith("\r\n", nl) ? 2 : 1));
              if (line === "") {
                if (event.id !== null) last = event.id;
                if (event.data.length) onEvent({ type: event.type, data: event.data.join("\n"), id: last });
                event = { type: "message", data: [], id: null };
                continue;
              }
              if (line.startsWith(":")) continue;
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              let value = colon < 0 ? "" : line.slice(colon + 1);
              if (value.startsWith(" ")) value = value.slice(1);
              if (field === "event") event.type = value;
              else if (field === "data") event.data.push(value);
              else if (field === "id" && !value.includes("\0")) event.id = value;
              else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
            }
          }
        } catch (e) {
          if (closed || e.name === "AbortError") break;
          failures += 1;
          if (failures > maxRetries) {
            closed = true;
            onState("closed", e);
            return;
          }
          onState("retrying", e);
        }
        if (closed) break;
        await new Promise((res) => setTimeout(res, Math.min(retry * Math.max(1, failures), 15000)));
      }
      onState("closed");
    }
    connect();
    return {
      close() { closed = true; controller.abort(); },
      get lastEventId() { return last; },
    };
  }

  // ---- Errors ---------------------------------------------------------------------------

  function showError(err, context) {
    const box = $("errors");
    const text = (context ? context + ": " : "") + (err && err.message ? err.message : String(err));
    if (!box) { console.warn(text); return; }
    // The same message twice is shown once.
    for (const e of box.querySelectorAll(".error .msg")) if (e.textContent === text) return;
    const item = el("div", { class: "error", role: "alert" },
      el("span", { class: "msg" }, text),
      el("button", { type: "button", onclick: () => item.remove(), "aria-label": "dismiss this error" }, "dismiss"));
    box.append(item);
    while (box.children.length > 5) box.firstChild.remove();
  }

  function clearErrors() { const box = $("errors"); if (box) box.replaceChildren(); }

  // ---- Dialogs ----------------------------------------------------------------------------

  /**
   * Asks an operator to confirm an action with a typed reason. `describe` is the text or
   * nodes that say exactly what will happen. `run(reason)` performs it (its error is shown
   * in the dialog, which stays open); resolves to its result, or null if cancelled.
   */
  function confirmAction({ title, describe, confirmLabel = "Confirm", danger = false, run, minReason = 3 }) {
    return new Promise((resolve) => {
      if (!credential.get()) {
        showError(new Error("operator actions need the operator credential: paste it with “Operator credential” at the top right"), title);
        resolve(null);
        return;
      }
      const reason = el("textarea", { id: "confirm-reason", "aria-required": "true", maxlength: "1000", placeholder: "why (recorded in the log with your identity)" });
      const problem = el("div", { class: "problem", role: "status", "aria-live": "polite" });
      const ok = el("button", { type: "submit", class: danger ? "danger" : "primary", id: "confirm-ok" }, confirmLabel);
      const cancel = el("button", { type: "button", id: "confirm-cancel" }, "Cancel");
      const form = el("form", { method: "dialog" },
        el("h2", {}, title),
        el("div", {}, describe),
        el("p", { class: "muted" }, "Acting as ", el("b", {}, credential.subject() || "(unknown subject)"), ". This is recorded in the log with your identity and the reason."),
        el("label", { for: "confirm-reason" }, "Reason (required)", reason),
        problem,
        el("div", { class: "actions" }, cancel, ok));
      const dialog = el("dialog", { "aria-label": title }, form);
      document.body.append(dialog);
      let result = null;
      const done = () => { dialog.close(); dialog.remove(); resolve(result); };
      cancel.addEventListener("click", done);
      dialog.addEventListener("cancel", (e) => { e.preventDefault(); done(); });
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const why = reason.value.trim();
        if (why.length < minReason) {
          problem.textContent = `Type a reason (at least ${minReason} characters).`;
          reason.focus();
          return;
        }
        ok.disabled = true;
        problem.textContent = "";
        try {
          result = await run(why);
          done();
        } catch (err) {
          problem.textContent = err.message || String(err);
          ok.disabled = false;
        }
      });
      dialog.showModal();
      reason.focus();
    });
  }

  function askCredential() {
    const input = el("textarea", { id: "credential-input", placeholder: "eyJ…", spellcheck: "false", autocomplete: "off" });
    const problem = el("div", { class: "problem", role: "status" });
    const save = el("button", { type: "submit", class: "primary", id: "credential-save" }, "Use for this tab");
    const cancel = el("button", { type: "button" }, "Cancel");
    const form = el("form", { method: "dialog" },
      el("h2", {}, "Operator credential"),
      el("p", { class: "muted" }, "Operator views and actions need it. It is kept in this tab's session storage only, and sent to this control plane only. `writ serve` prints one on first start; mint another with `writ identity issue --operator`."),
      el("label", { for: "credential-input" }, "Credential (a JWT)", input),
      problem,
      el("div", { class: "actions" }, cancel, save));
    const dialog = el("dialog", { "aria-label": "Operator credential" }, form);
    document.body.append(dialog);
    const done = () => { dialog.close(); dialog.remove(); };
    cancel.addEventListener("click", done);
    dialog.addEventListener("cancel", (e) => { e.preventDefault(); done(); });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const t = input.value.trim();
      if (t.split(".").length !== 3) { problem.textContent = "That is not a JWT (three dot-separated parts)."; return; }
      // Checked against an operator route before it is kept.
      const r = await fetch("/v1/quarantine", { headers: { Authorization: "Bearer " + t }, cache: "no-store" }).catch(() => null);
      if (!r || !r.ok) {
        let body = {};
        try { body = await r.json(); } catch { /* none */ }
        problem.textContent = `The control plane refused it${r ? " (HTTP " + r.status + ")" : ""}: ${body.message || body.error || "no answer"}`;
        return;
      }
      credential.set(t);
      done();
    });
    dialog.showModal();
    input.focus();
  }

  // ---- The header -------------------------------------------------------------------------

  function renderOperator() {
    const box = $("operator");
    if (!box) return;
    if (credential.get()) {
      fill(box,
        el("span", { class: "who", id: "operator-who", title: credential.subject() }, "operator ", el("b", {}, credential.subject() || "(credential)")),
        el("button", { type: "button", id: "operator-signout", onclick: () => credential.clear() }, "Forget credential"));
    } else {
      fill(box,
        el("span", { class: "who muted", id: "operator-who" }, "read-only"),
        el("button", { type: "button", id: "operator-signin", onclick: askCredential }, "Operator credential"));
    }
  }

  function shell() {
    const view = document.body.dataset.view || "";
    const top = el("header", { class: "top" },
      el("a", { class: "skip", href: "#main" }, "Skip to the content"),
      el("a", { class: "brand", href: "/console/governance" }, "writ"),
      el("nav", { "aria-label": "Views" },
        el("ul", {}, VIEWS.map((v) => el("li", {},
          el("a", { href: "/console/" + v.id, "aria-current": v.id === view ? "page" : undefined, dataset: { view: v.id } }, v.title))))),
      el("div", { class: "operator", id: "operator" }));
    document.body.prepend(top, el("div", { id: "errors", "aria-live": "polite" }));
    const main = $("main");
    if (main && !main.hasAttribute("tabindex")) main.setAttribute("tabindex", "-1");
    renderOperator();
    // Another tab of the same session cannot share sessionStorage; nothing to listen for.
    window.addEventListener("unhandledrejection", (e) => showError(e.reason, "unexpected"));
  }

  window.Writ = {
    VIEWS, el, fill, append, $, fmtTime, shortDigest, shortId, outcomeClass, pill, link,
    credential, api, stream, showError, clearErrors, confirmAction, askCredential,
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", shell);
  else shell();
})();
