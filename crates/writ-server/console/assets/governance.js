// The Governance Console (SPEC.md §4, view 1): the live decision stream with filters and
// search, the true totals, pending approvals, the active and shadow bundles with their
// policy text and history, quarantine and revocations, and the operator actions on them.
// Reads the public API only: /v1/log/stream (server-sent events), /v1/log/entries,
// /v1/stats, and, with the operator credential, /v1/approvals, /v1/bundles,
// /v1/policy/bundles/{digest}, /v1/policy/shadow, /v1/quarantine, /v1/revocations,
// /v1/lineage/{id}.
"use strict";

(function () {
  const W = window.Writ;
  const { el, fill, $ } = W;

  /** Entries the page holds at most (the newest; older ones on demand, up to this many). */
  const MAX_HELD = 2000;
  /** Rows drawn at most (the newest that match the filters). */
  const MAX_ROWS = 250;

  // index -> entry, and the indices in ascending order.
  const held = new Map();
  let order = [];
  // Entries looked up by id outside the window: kept apart, at most 20.
  const pinned = new Map();
  let logSize = 0;
  let selected = null;
  let focusIndex = null;

  // ---- Entries ------------------------------------------------------------------------

  /** What a row shows of an entry. */
  function summarize(index, e) {
    const s = { index, kind: e.kind, time: e.time, outcome: "", principal: "", action: "", resource: "", reason: "", id: "", operator: "" };
    switch (e.kind) {
      case "decision": {
        s.outcome = e.decision ? e.decision.outcome : "";
        s.reason = (e.decision && e.decision.reasons && e.decision.reasons[0]) || "";
        const identity = e.facts && e.facts.identity;
        s.principal = identity && identity.ok ? identity.ok.subject : "(no verified identity)";
        if (e.request) { s.action = e.request.action; s.resource = e.request.resource; }
        s.id = e.id;
        break;
      }
      case "approval":
        s.outcome = e.approved ? "approved" : "rejected"; s.action = "approval"; s.resource = e.id; s.id = e.id;
        s.principal = e.operator || "(local CLI)"; s.operator = s.principal; s.reason = e.reason; break;
      case "activation": case "upload":
        s.outcome = e.accepted ? "accepted" : "refused"; s.action = e.kind; s.resource = `${e.name} ${e.version}`;
        s.principal = e.operator || "(local CLI)"; s.operator = s.principal; s.reason = e.refusal || ""; break;
      case "quarantine":
        s.outcome = e.isolated ? "isolated" : "released"; s.action = "quarantine"; s.resource = e.subject;
        s.principal = e.operator || "(local CLI)"; s.operator = s.principal; s.reason = e.reason; break;
      case "revocation":
        s.outcome = "revoked"; s.action = "revocation"; s.resource = e.jti; s.id = e.jti;
        s.principal = e.operator || "(local CLI)"; s.operator = s.principal; s.reason = e.reason; break;
      case "reevaluation":
        s.outcome = "reevaluated"; s.action = "reevaluation"; s.resource = `${e.revoked} of ${e.reevaluated} revoked`;
        s.principal = e.operator || "(local CLI)"; s.operator = s.principal; break;
      case "outcome":
        s.outcome = e.status; s.action = "outcome"; s.resource = e.jti; s.id = e.jti; s.principal = e.reporter; s.reason = e.detail; break;
      case "key_rotation":
        s.outcome = "rotated"; s.action = "key rotation"; s.resource = e.kid; s.principal = e.operator || "(local CLI)"; s.operator = s.principal; break;
      case "anonymous_attempts":
        s.outcome = "deny"; s.action = "(anonymous)"; s.resource = Object.entries(e.reasons || {}).map(([k, v]) => `${v}× ${k}`).join(", ");
        s.reason = Object.keys(e.reasons || {})[0] || ""; s.principal = "(no verified identity)"; break;
      default:
        s.outcome = e.kind || "?";
    }
    return s;
  }

  function add(index, entry) {
    if (held.has(index)) return;
    held.set(index, summarize(index, entry));
    held.get(index).entry = entry;
    if (order.length === 0 || index > order[order.length - 1]) order.push(index);
    else { order.push(index); order.sort((a, b) => a - b); }
    while (order.length > MAX_HELD) held.delete(order.shift());
  }

  // ---- Filters ------------------------------------------------------------------------

  const form = $("filters");
  const fields = ["principal", "action", "outcome", "reason", "since", "until", "writ"];

  function filters() {
    const f = {};
    for (const k of fields) f[k] = form.elements[k].value.trim();
    return f;
  }

  function utc(value) {
    if (!value) return null;
    const t = Date.parse(value.length === 16 ? value + ":00Z" : value + "Z");
    return Number.isNaN(t) ? null : t / 1000;
  }

  function matches(s, f) {
    if (f.writ && s.id !== f.writ && !(s.entry && s.entry.request && s.entry.request.parent === f.writ)) return false;
    if (f.principal && !s.principal.toLowerCase().includes(f.principal.toLowerCase())) return false;
    if (f.action && s.action !== f.action) return false;
    if (f.outcome) {
      const decision = s.kind === "decision" || s.kind === "anonymous_attempts";
      if (f.outcome === "operator" ? decision : !decision || s.outcome !== f.outcome) return false;
    }
    if (f.reason && s.reason !== f.reason) return false;
    const since = utc(f.since), until = utc(f.until);
    if (since !== null && s.time < since) return false;
    if (until !== null && s.time > until) return false;
    return true;
  }

  function syncUrl() {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filters())) if (v) q.set(k, v);
    history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : ""));
  }

  function readUrl() {
    const q = new URLSearchParams(location.search);
    for (const k of fields) {
      const v = q.get(k);
      if (v === null) continue;
      const input = form.elements[k];
      if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === v)) input.append(el("option", { value: v }, v));
      input.value = v;
    }
  }

  /** Keeps each select's options to the values seen (and the one chosen). */
  function refreshOptions(select, values) {
    const current = select.value;
    const have = new Set([...select.options].map((o) => o.value));
    for (const v of [...values].sort()) if (v && !have.has(v)) select.append(el("option", { value: v }, v));
    select.value = current;
  }

  // ---- Rendering ------------------------------------------------------------------------

  let drawQueued = false;
  function draw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; drawNow(); });
  }

  function drawNow() {
    const f = filters();
    const rows = [];
    let count = 0;
    const all = [...pinned.values(), ...order.map((i) => held.get(i))].sort((a, b) => b.index - a.index);
    const seen = new Set();
    for (const s of all) {
      if (seen.has(s.index)) continue;
      seen.add(s.index);
      if (!matches(s, f)) continue;
      count += 1;
      if (rows.length < MAX_ROWS) rows.push(s);
    }
    const actions = new Set(), reasons = new Set(), principals = new Set();
    for (const i of order) {
      const s = held.get(i);
      if (s.action) actions.add(s.action);
      if (s.reason && (s.kind === "decision" || s.kind === "anonymous_attempts")) reasons.add(s.reason);
      if (s.principal && !s.principal.startsWith("(")) principals.add(s.principal);
    }
    refreshOptions(form.elements.action, actions);
    refreshOptions(form.elements.reason, reasons);
    const list = $("principals");
    if (list.children.length !== principals.size) fill(list, [...principals].sort().slice(0, 200).map((p) => el("option", { value: p })));

    const body = $("decisions").tBodies[0];
    if (focusIndex === null || !rows.some((r) => r.index === focusIndex)) focusIndex = rows.length ? rows[0].index : null;
    const hadFocus = body.contains(document.activeElement);
    fill(body, rows.map((s) => {
      const tr = el("tr", {
        class: "selectable" + (selected === s.index ? " selected" : ""),
        tabindex: s.index === focusIndex ? "0" : "-1",
        "aria-selected": selected === s.index ? "true" : "false",
        dataset: { index: s.index, kind: s.kind, outcome: s.outcome },
      },
        el("td", {}, s.index),
        el("td", {}, W.fmtTime(s.time).slice(0, 19).replace(/^\d{4}-/, "")),
        el("td", {}, W.pill(s.outcome)),
        el("td", { title: s.principal }, W.shortId(s.principal)),
        el("td", { title: s.action }, s.action),
        el("td", { title: s.resource }, s.resource),
        el("td", { title: s.reason }, s.reason));
      return tr;
    }));
    if (hadFocus && focusIndex !== null) body.querySelector(`tr[data-index="${focusIndex}"]`)?.focus();
    const filtered = Object.values(f).some(Boolean);
    $("shown").textContent = `${filtered ? count + " match" + (count === 1 ? "" : "es") + " the filters, " : ""}showing ${rows.length}` +
      ` · the page holds the ${order.length} newest of the log's ${logSize} entries` +
      (order.length && order[0] > 0 ? ` (from #${order[0]})` : "");
    $("older").disabled = order.length >= MAX_HELD || (order.length > 0 && order[0] === 0);
    if (f.writ && count === 0) lookUp(f.writ);
  }

  // Keyboard: one row is in the Tab order; arrows move between rows, Enter opens one.
  $("decisions").tBodies[0].addEventListener("keydown", (e) => {
    const tr = e.target.closest("tr");
    if (!tr) return;
    let next = null;
    if (e.key === "ArrowDown") next = tr.nextElementSibling;
    else if (e.key === "ArrowUp") next = tr.previousElementSibling;
    else if (e.key === "Home") next = tr.parentElement.firstElementChild;
    else if (e.key === "End") next = tr.parentElement.lastElementChild;
    else if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(Number(tr.dataset.index)); return; }
    if (next) {
      e.preventDefault();
      tr.tabIndex = -1; next.tabIndex = 0; next.focus();
      focusIndex = Number(next.dataset.index);
    }
  });
  $("decisions").tBodies[0].addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (tr) { focusIndex = Number(tr.dataset.index); select(focusIndex); }
  });

  function select(index) {
    selected = index;
    const s = held.get(index) || pinned.get(index);
    draw();
    if (!s) return;
    const e = s.entry;
    const links = [el("a", { href: W.link.proof(index), id: "detail-proof" }, "Verify its inclusion (proof viewer)")];
    if (s.kind === "decision") links.push(el("a", { href: W.link.lineage(s.id), id: "detail-lineage" }, "Its lineage"));
    const kv = [["log index", index], ["kind", s.kind], ["time", W.fmtTime(s.time)], ["outcome", s.outcome]];
    if (s.kind === "decision") {
      kv.push(["decision id", s.id], ["principal", s.principal], ["action", s.action], ["resource", s.resource]);
      if (e.decision) {
        kv.push(["reasons", (e.decision.reasons || []).join(", ") || "—"], ["policies", (e.decision.policies || []).join(", ") || "—"], ["detail", e.decision.detail || "—"]);
      }
      if (e.request && e.request.parent) kv.push(["parent", e.request.parent]);
      if (e.bundle) kv.push(["bundle", e.bundle]);
    } else {
      if (s.operator) kv.push(["by", s.operator]);
      if (s.resource) kv.push(["subject", s.resource]);
      if (s.reason) kv.push(["reason", s.reason]);
    }
    fill($("detail"),
      el("dl", { class: "kv" }, kv.map(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])),
      el("div", { class: "row" }, links),
      el("details", {}, el("summary", {}, "The entry as recorded"), el("pre", { class: "wrap" }, JSON.stringify(e, null, 2))));
    $("detail").classList.remove("muted");
  }

  // ---- Search by id outside the window -------------------------------------------------

  const lookedUp = new Set();
  async function lookUp(id) {
    if (lookedUp.has(id)) return;
    lookedUp.add(id);
    if (!W.credential.get()) {
      $("shown").textContent += ` · ${id} is not among the entries held; with the operator credential the page looks it up in the whole log`;
      lookedUp.delete(id);
      return;
    }
    try {
      const l = await W.api.get("/v1/lineage/" + encodeURIComponent(id), { auth: true });
      const node = l.nodes.find((n) => n.id === id);
      if (!node) return;
      const page = await W.api.get(`/v1/log/entries?start=${node.log_index}&end=${node.log_index + 1}`);
      for (const item of page.entries) {
        const s = summarize(item.index, item.entry);
        s.entry = item.entry;
        pinned.set(item.index, s);
        while (pinned.size > 20) pinned.delete(pinned.keys().next().value);
      }
      draw();
      select(node.log_index);
    } catch (e) {
      if (e.status === 404) $("shown").textContent += ` · the log holds no decision ${id}`;
      else W.showError(e, "looking up " + id);
    }
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); syncUrl(); draw(); });
  form.addEventListener("input", () => { syncUrl(); draw(); });
  form.addEventListener("reset", () => setTimeout(() => { syncUrl(); draw(); }, 0));

  $("older").addEventListener("click", async () => {
    const first = order.length ? order[0] : logSize;
    const start = Math.max(0, first - 500);
    if (start === first) return;
    try {
      const page = await W.api.get(`/v1/log/entries?start=${start}&end=${first}`);
      for (const item of page.entries) if (order.length < MAX_HELD) add(item.index, item.entry);
      draw();
    } catch (e) { W.showError(e, "loading older entries"); }
  });

  // ---- The live stream ------------------------------------------------------------------

  function connect() {
    W.stream("/v1/log/stream", {
      onEvent(ev) {
        try {
          const data = JSON.parse(ev.data);
          if (ev.type === "entry") { add(data.index, data.entry); logSize = Math.max(logSize, data.index + 1); draw(); }
          else if (ev.type === "size") { logSize = Math.max(logSize, data.size); draw(); }
          else if (ev.type === "error") W.showError(new Error(data.message), "the log stream");
        } catch (e) { W.showError(e, "a log stream event"); }
      },
      onState(state, err) {
        $("stream-state").textContent = state === "open" ? "live" : state;
        $("stream-state").className = state === "open" ? "allow" : "pending";
        if (err && state === "closed") W.showError(err, "the log stream");
      },
    });
  }

  // ---- Totals ------------------------------------------------------------------------------

  let lastStats = "";
  async function totals() {
    try {
      const s = await W.api.get("/v1/stats");
      const text = JSON.stringify(s);
      if (text === lastStats) return;
      lastStats = text;
      logSize = Math.max(logSize, s.size);
      const total = (label, value, cls, id) => el("div", { class: "total", id }, el("b", { class: cls }, value), el("span", {}, label));
      fill($("totals"),
        total("decisions", s.decisions, "", "total-decisions"),
        total("allowed", s.allow, "allow", "total-allow"),
        total("denied", s.deny, "deny", "total-deny"),
        total("sent for approval", s.pending, "pending", "total-pending"),
        total("approved", s.approved, "allow", "total-approved"),
        total("rejected", s.rejected, "deny", "total-rejected"),
        total("anonymous denies (summarised)", s.anonymous_denied, "deny", "total-anonymous"),
        total("log entries", s.size, "", "total-size"));
      $("totals-asof").textContent = `the whole log, ${s.size} entries`;
      const rows = [];
      for (const [outcome, byReason] of Object.entries(s.by_reason)) {
        for (const [reason, n] of Object.entries(byReason)) rows.push([outcome, reason, n]);
      }
      rows.sort((a, b) => b[2] - a[2]);
      fill($("reasons").tBodies[0], rows.map(([o, r, n]) => el("tr", {}, el("td", {}, W.pill(o)), el("td", { title: r }, r || "—"), el("td", {}, n))));
      refreshOptions(form.elements.reason, rows.filter(([, r]) => r).map(([, r]) => r));
      draw();
    } catch (e) { W.showError(e, "totals"); }
  }

  // ---- Operator panels ------------------------------------------------------------------

  function needsCredential(box) {
    fill(box, el("p", { class: "needs" }, "Needs the operator credential. ",
      el("button", { type: "button", class: "link", onclick: W.askCredential }, "Paste it")));
  }

  const last = {};
  /** Draws a panel only when its data changed, so a refresh never moves the focus. */
  function changed(key, data) {
    const text = JSON.stringify(data);
    if (last[key] === text) return false;
    last[key] = text;
    return true;
  }

  async function refreshOperator() {
    if (!W.credential.get()) {
      for (const id of ["approvals", "bundles", "quarantine", "revocations"]) { needsCredential($(id)); last[id] = null; }
      for (const id of ["approvals-count", "quarantine-count", "revocations-count"]) $(id).textContent = "";
      return;
    }
    await Promise.all([approvals(), bundles(), quarantine(), revocations()]);
  }

  async function act(path, body, what) {
    const answer = await W.api.post(path, body, { auth: true });
    await refreshOperator();
    totals();
    return answer;
  }

  async function approvals() {
    try {
      const a = await W.api.get("/v1/approvals", { auth: true });
      if (!changed("approvals", a)) return;
      $("approvals-count").textContent = `${a.approvals.length} waiting`;
      if (!a.approvals.length) { fill($("approvals"), el("p", { class: "muted" }, "Nothing waits for an operator.")); return; }
      fill($("approvals"), a.approvals.map((x) => {
        const request = el("div", {},
          el("dl", { class: "kv" },
            el("dt", {}, "principal"), el("dd", {}, x.subject),
            el("dt", {}, "action"), el("dd", {}, x.action),
            el("dt", {}, "resource"), el("dd", {}, x.resource),
            el("dt", {}, "asked"), el("dd", {}, W.fmtTime(x.requested)),
            el("dt", {}, "deadline"), el("dd", {}, W.fmtTime(x.deadline)),
            el("dt", {}, "policies"), el("dd", {}, (x.policies || []).join(", ") || "—"),
            el("dt", {}, "request digest"), el("dd", { class: "mono" }, x.digest || "—"),
            x.parent ? [el("dt", {}, "parent"), el("dd", {}, x.parent)] : null),
          el("div", { class: "muted" }, "arguments"),
          el("pre", { class: "wrap" }, JSON.stringify(x.arguments, null, 2)),
          x.detail ? el("p", { class: "muted" }, x.detail) : null);
        const decide = (approve) => W.confirmAction({
          title: `${approve ? "Approve" : "Reject"} ${x.action} on ${x.resource}`,
          describe: [el("p", {}, approve
            ? `A writ will be issued to ${x.subject} for exactly this request, usable until ${W.fmtTime(x.deadline)}:`
            : `${x.subject} will be refused this request:`), el("pre", { class: "wrap" }, JSON.stringify(x.arguments, null, 2))],
          confirmLabel: approve ? "Approve" : "Reject",
          danger: !approve,
          run: (reason) => act(`/v1/approvals/${encodeURIComponent(x.id)}/${approve ? "approve" : "reject"}`, { reason }),
        });
        return el("div", { class: "card", dataset: { approval: x.id } },
          el("div", { class: "row" }, W.pill("pending"), el("b", {}, `${x.action} · ${x.resource}`), el("span", { class: "spacer" }),
            el("a", { href: W.link.governance({ writ: x.id }) }, "in the stream")),
          request,
          el("div", { class: "row" },
            el("button", { type: "button", class: "primary", dataset: { approve: x.id }, onclick: () => decide(true) }, "Approve…"),
            el("button", { type: "button", class: "danger", dataset: { reject: x.id }, onclick: () => decide(false) }, "Reject…")));
      }));
    } catch (e) { W.showError(e, "approvals"); }
  }

  let shadowRoute = null;
  async function hasShadowRoute() {
    if (shadowRoute === null) {
      try {
        const doc = await W.api.get("/v1/openapi.json");
        shadowRoute = Boolean(doc.paths && doc.paths["/v1/policy/shadow"]);
      } catch { shadowRoute = false; }
    }
    return shadowRoute;
  }

  const details = new Map();
  async function detail(digest) {
    if (!details.has(digest)) details.set(digest, await W.api.get("/v1/policy/bundles/" + encodeURIComponent(digest), { auth: true }));
    return details.get(digest);
  }

  function highlighted(text, language) {
    const code = el("code", { class: "hljs language-" + language });
    if (window.hljs && window.hljs.getLanguage(language)) {
      // highlight.js escapes the text it returns.
      code.innerHTML = window.hljs.highlight(text, { language }).value;
    } else {
      code.textContent = text;
    }
    return el("pre", {}, code);
  }

  async function bundles() {
    try {
      const [list, shadow] = await Promise.all([
        W.api.get("/v1/bundles", { auth: true }),
        hasShadowRoute().then((has) => (has ? W.api.get("/v1/policy/shadow", { auth: true }) : null)),
      ]);
      if (!changed("bundles", [list, shadow])) return;
      const all = list.bundles.slice().sort((a, b) => (a.first_seen - b.first_seen) || a.version.localeCompare(b.version));
      const active = all.find((b) => b.active);
      const shadowBundle = shadow && shadow.bundle ? shadow.bundle : null;
      const out = [];
      if (active) {
        const d = await detail(active.digest);
        const last = d.activations[d.activations.length - 1];
        out.push(el("h3", {}, "Active ", el("span", { class: "badge active" }, "active")),
          el("dl", { class: "kv", id: "active-bundle" },
            el("dt", {}, "bundle"), el("dd", {}, `${active.name} ${active.version}`),
            el("dt", {}, "digest"), el("dd", { class: "mono", id: "active-digest" }, active.digest),
            el("dt", {}, "signer"), el("dd", {}, active.signer || "—"),
            el("dt", {}, "activated"), el("dd", {}, W.fmtTime(active.last_activated), " by ", active.last_activated_by || "the local CLI (no operator)",
              last ? [" · ", el("a", { href: W.link.proof(last.log_index) }, `entry #${last.log_index}`)] : null)),
          el("details", { class: "policy" }, el("summary", {}, "Policy text (policies.cedar)"), highlighted(d.parts.policies, "cedar")));
      } else {
        out.push(el("p", { class: "deny" }, "No active bundle: every request is denied (policy.no_active_bundle)."));
      }
      out.push(el("h3", {}, "Shadow ", el("span", { class: "badge shadow" }, "shadow")));
      if (shadowBundle) {
        out.push(el("dl", { class: "kv", id: "shadow-bundle" },
          el("dt", {}, "bundle"), el("dd", {}, `${shadowBundle.name} ${shadowBundle.version}`),
          el("dt", {}, "digest"), el("dd", { class: "mono" }, shadowBundle.digest),
          el("dt", {}, "set"), el("dd", {}, W.fmtTime(shadowBundle.set_at), " by ", shadowBundle.set_by || "the local CLI"),
          el("dt", {}, "evaluated"), el("dd", {}, `${shadow.evaluated} requests, ${shadow.disagreements} disagreements with the active bundle (since the server started)`)));
        try {
          const sd = await detail(shadowBundle.digest);
          out.push(el("details", { class: "policy" }, el("summary", {}, "Shadow policy text"), highlighted(sd.parts.policies, "cedar")));
        } catch (e) { W.showError(e, "the shadow bundle"); }
      } else {
        out.push(el("p", { class: "muted", id: "shadow-bundle" }, "No shadow bundle."));
      }
      out.push(el("h3", {}, "History"),
        el("table", { id: "bundle-history" },
          el("colgroup", {}, el("col"), el("col", { class: "c-time" }), el("col", { class: "c-time" })),
          el("thead", {}, el("tr", {}, el("th", {}, "version"), el("th", {}, "first seen"), el("th", {}, "last activated"))),
          el("tbody", {}, all.slice().reverse().map((b) => el("tr", {},
            el("td", { title: `${b.name} ${b.version} ${b.digest} signed by ${b.signer || "?"}` }, `${b.version} `,
              b.active ? el("span", { class: "badge active" }, "active") : null,
              shadowBundle && shadowBundle.digest === b.digest ? el("span", { class: "badge shadow" }, "shadow") : null),
            el("td", {}, W.fmtTime(b.first_seen).slice(0, 16)),
            el("td", { title: b.last_activated_by || "" }, b.last_activated ? W.fmtTime(b.last_activated).slice(0, 16) : "never"))))));
      if (all.length >= 2) {
        const option = (b) => el("option", { value: b.digest }, `${b.version} (${b.digest.slice(7, 15)})`);
        const from = el("select", { id: "diff-from", "aria-label": "compare from" }, all.map(option));
        const to = el("select", { id: "diff-to", "aria-label": "compare to" }, all.map(option));
        const activeAt = all.findIndex((b) => b.active);
        to.value = (active || all[all.length - 1]).digest;
        from.value = all[activeAt > 0 ? activeAt - 1 : all.length - 2].digest;
        if (from.value === to.value) from.value = all[0].digest;
        const out2 = el("div", { class: "diff", id: "diff", "aria-live": "polite" });
        const show = async () => {
          try {
            const [a, b] = await Promise.all([detail(from.value), detail(to.value)]);
            fill(out2, renderDiff(a, b));
          } catch (e) { W.showError(e, "the diff"); }
        };
        out.push(el("h3", {}, "Compare versions"),
          el("div", { class: "row" }, from, el("span", { class: "muted" }, "→"), to,
            el("button", { type: "button", id: "diff-show", onclick: show }, "Show the diff")),
          out2);
      }
      fill($("bundles"), out);
    } catch (e) { W.showError(e, "bundles"); }
  }

  function renderDiff(a, b) {
    if (!window.Diff) return el("p", { class: "deny" }, "the diff library did not load");
    const parts = [];
    for (const file of ["policies", "manifest", "schema", "entities"]) {
      const x = a.parts[file] || "", y = b.parts[file] || "";
      if (x === y) continue;
      const name = { policies: "policies.cedar", manifest: "manifest.json", schema: "schema.cedarschema", entities: "entities.json" }[file];
      const lines = [];
      for (const change of window.Diff.diffLines(x, y)) {
        const cls = change.added ? "add" : change.removed ? "del" : "ctx";
        const mark = change.added ? "+ " : change.removed ? "- " : "  ";
        let text = change.value.replace(/\n$/, "").split("\n");
        if (cls === "ctx" && text.length > 6) text = [...text.slice(0, 2), `… ${text.length - 4} unchanged lines …`, ...text.slice(-2)];
        for (const t of text) lines.push(el("span", { class: cls }, mark + t));
      }
      parts.push(el("div", { class: "muted" }, `${name}: ${a.version} → ${b.version}`), el("pre", {}, lines));
    }
    return parts.length ? parts : [el("p", { class: "muted" }, "The two bundles' files are identical.")];
  }

  async function quarantine() {
    try {
      const q = await W.api.get("/v1/quarantine", { auth: true });
      if (!changed("quarantine", q)) return;
      $("quarantine-count").textContent = `${q.quarantined.length} isolated`;
      const subject = el("input", { id: "isolate-subject", placeholder: "spiffe://…", "aria-label": "identity to isolate", autocomplete: "off" });
      const isolate = () => {
        const sub = subject.value.trim();
        if (!sub.startsWith("spiffe://")) { W.showError(new Error("an identity is a SPIFFE ID (spiffe://…)"), "isolate"); subject.focus(); return; }
        W.confirmAction({
          title: "Isolate " + sub,
          describe: el("p", {}, `Every request of ${sub} will be denied (quarantined), and every writ below its writs stops verifying, until an operator releases it.`),
          confirmLabel: "Isolate", danger: true,
          run: (reason) => act("/v1/quarantine/isolate", { subject: sub, reason }),
        });
      };
      fill($("quarantine"),
        el("form", { class: "row", id: "isolate-form", onsubmit: (e) => { e.preventDefault(); isolate(); } }, subject,
          el("button", { type: "submit", class: "danger", id: "isolate" }, "Isolate…")),
        q.quarantined.length ? el("table", { id: "quarantined" },
          el("colgroup", {}, el("col"), el("col", { class: "c-time" }), el("col", { class: "c-button" })),
          el("thead", {}, el("tr", {}, el("th", {}, "identity · reason · by"), el("th", {}, "since"), el("th", {}, ""))),
          el("tbody", {}, q.quarantined.map((x) => el("tr", { dataset: { subject: x.subject } },
            el("td", { class: "wrap" }, el("b", {}, x.subject), el("br"), el("span", { class: "muted" }, `${x.isolated.reason} · by ${x.isolated.operator || "the local CLI"}`)),
            el("td", {}, el("a", { href: W.link.proof(x.isolated.log_index) }, W.fmtTime(x.isolated.time).slice(0, 16))),
            el("td", {}, el("button", {
              type: "button", dataset: { release: x.subject },
              onclick: () => W.confirmAction({
                title: "Release " + x.subject,
                describe: el("p", {}, `${x.subject} will be decided by policy again.`),
                confirmLabel: "Release",
                run: (reason) => act("/v1/quarantine/release", { subject: x.subject, reason }),
              }),
            }, "Release…"))))))
          : el("p", { class: "muted" }, "No identity is isolated."));
    } catch (e) { W.showError(e, "quarantine"); }
  }

  async function revocations() {
    try {
      const r = await W.api.get("/v1/revocations", { auth: true });
      if (!changed("revocations", r)) return;
      const list = r.revocations.slice().sort((a, b) => b.revoked.log_index - a.revoked.log_index);
      $("revocations-count").textContent = `${list.length} revoked`;
      const jti = el("input", { id: "revoke-jti", placeholder: "writ id", "aria-label": "writ to revoke", autocomplete: "off" });
      const revoke = () => {
        const id = jti.value.trim();
        if (!id) { jti.focus(); return; }
        W.confirmAction({
          title: "Revoke writ " + id,
          describe: el("p", {}, `Writ ${id} and every writ below it stop verifying at every enforcement point.`),
          confirmLabel: "Revoke", danger: true,
          run: (reason) => act("/v1/revocations", { jti: id, reason }),
        });
      };
      fill($("revocations"),
        el("form", { class: "row", id: "revoke-form", onsubmit: (e) => { e.preventDefault(); revoke(); } }, jti,
          el("button", { type: "submit", class: "danger", id: "revoke" }, "Revoke…")),
        list.length ? el("table", { id: "revoked" },
          el("colgroup", {}, el("col"), el("col", { class: "c-time" })),
          el("thead", {}, el("tr", {}, el("th", {}, "writ · reason · by"), el("th", {}, "when"))),
          el("tbody", {}, list.slice(0, 50).map((x) => el("tr", {},
            el("td", { class: "wrap" }, el("a", { href: W.link.governance({ writ: x.jti }) }, x.jti), el("br"),
              el("span", { class: "muted" }, `${x.revoked.reason} · by ${x.revoked.operator || "the local CLI"}`)),
            el("td", {}, el("a", { href: W.link.proof(x.revoked.log_index) }, W.fmtTime(x.revoked.time).slice(0, 16)))))))
          : el("p", { class: "muted" }, "No writ is revoked."),
        list.length > 50 ? el("p", { class: "muted" }, `the newest 50 of ${list.length}`) : null);
    } catch (e) { W.showError(e, "revocations"); }
  }

  // ---- Start ------------------------------------------------------------------------------

  readUrl();
  connect();
  totals();
  refreshOperator();
  setInterval(totals, 3000);
  setInterval(() => { if (W.credential.get()) refreshOperator(); }, 5000);
  document.addEventListener("writ:credential", () => { for (const k of Object.keys(last)) delete last[k]; details.clear(); refreshOperator(); draw(); });
})();
