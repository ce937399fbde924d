// The Runtime Governance Demo (SPEC.md §4, view 2): runs the built-in demo scenario against
// this control plane (POST /v1/demo/runs, operator credential) and narrates it as it happens
// from the run's event stream (GET /v1/demo/runs/{id}/events): each agent action, the
// decision, its reason, and links into the other views. A run's id is kept in the URL
// (?run=…), so a reload follows the same run.
"use strict";

(function () {
  const W = window.Writ;
  const { el, fill, $ } = W;
  let stream = null;
  let list = null;
  let steps = 0, unexpected = 0;

  function reset() {
    steps = 0; unexpected = 0;
    list = null;
    fill($("narration"));
    $("summary-panel").classList.add("hidden");
    $("progress").textContent = "";
  }

  function ensureList() {
    if (!list) { list = el("ol", { class: "steps" }); $("narration").append(list); }
    return list;
  }

  function links(ev) {
    const out = [];
    if (ev.kind === "decision" && ev.id) {
      out.push(el("a", { href: W.link.governance({ writ: ev.id }) }, "decision in the console"));
      out.push(el("a", { href: W.link.lineage(ev.id) }, "lineage"));
    }
    if (ev.kind === "verification" && ev.id) out.push(el("a", { href: W.link.governance({ writ: ev.id }) }, "the writ in the console"));
    if (typeof ev.log_index === "number") out.push(el("a", { href: W.link.proof(ev.log_index) }, `proof of entry #${ev.log_index}`));
    return out.length ? el("div", { class: "links" }, out) : null;
  }

  function onEvent(e) {
    let ev;
    try { ev = JSON.parse(e.data); } catch (err) { W.showError(err, "a demo event"); return; }
    switch (e.type) {
      case "section":
        list = null;
        $("narration").append(el("h3", {}, ev.title));
        break;
      case "step": {
        steps += 1;
        if (!ev.ok) unexpected += 1;
        const outcome = ev.outcome || (ev.kind === "operator" ? (ev.ok ? "done" : "failed") : ev.ok ? "ok" : "unexpected");
        const why = [];
        if (ev.kind === "evaluated") why.push(`evaluated with the starter bundle at ${String(ev.at || "").slice(11, 16)} UTC, not recorded`);
        if (ev.reason) why.push(`reason ${ev.reason}`);
        if (ev.kind === "operator") why.push(`${ev.route} by ${ev.operator}${ev.reason ? ": “" + ev.reason + "”" : ""}`);
        if (ev.detail) why.push(ev.detail);
        ensureList().append(el("li", { class: "step" + (ev.ok ? "" : " unexpected"), dataset: { kind: ev.kind, outcome, n: ev.n } },
          el("span", { class: "n" }, ev.n),
          el("span", {}, W.pill(outcome)),
          el("div", { class: "what" },
            el("div", {}, ev.label, " ", ev.ok ? el("span", { class: "expect-ok", title: "as expected" }, "✓") : el("span", { class: "expect-bad" }, `✗ expected ${ev.expected}, got ${ev.got}`)),
            why.length ? el("div", { class: "why" }, why.join(" · ")) : null,
            links(ev))));
        $("progress").textContent = `${steps} steps${unexpected ? `, ${unexpected} not as expected` : ""}`;
        break;
      }
      case "note":
        ensureList().append(el("li", { class: "note" }, ev.text));
        break;
      case "summary":
        $("summary-panel").classList.remove("hidden");
        fill($("summary"),
          el("p", { class: ev.ok ? "allow" : "deny", id: "summary-verdict" }, ev.ok ? `Every one of the ${ev.steps} steps went as expected.` : `${ev.failures.length} of ${ev.steps} steps did not go as expected.`),
          el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "outcome"), el("th", {}, "reason"), el("th", {}, "decisions"))),
            el("tbody", {}, ev.counts.map((c) => el("tr", {}, el("td", {}, W.pill(c.outcome)), el("td", {}, c.reason || "—"), el("td", {}, c.count))))),
          ev.failures.length ? el("ul", {}, ev.failures.map((f) => el("li", { class: "deny" }, f))) : null,
          el("p", {}, "See them all in the ", el("a", { href: "/console/governance" }, "Governance Console"), "."));
        break;
      case "error":
        W.showError(new Error(ev.message), "the demo run");
        break;
      case "end":
        finished(ev);
        break;
      default:
        break;
    }
  }

  function finished(ev) {
    const ok = ev.status === "succeeded";
    $("run-state").textContent = `run ${ev.id} ${ev.status} at ${W.fmtTime(ev.finished)}`;
    $("run-state").className = ok ? "allow" : "deny";
    $("run").disabled = false;
    document.body.dataset.demo = ev.status;
    if (stream) { stream.close(); stream = null; }
  }

  function follow(id) {
    if (stream) stream.close();
    reset();
    document.body.dataset.demo = "running";
    $("run").disabled = true;
    $("run-state").textContent = `run ${id} in progress…`;
    $("run-state").className = "pending";
    history.replaceState(null, "", "/console/demo?run=" + encodeURIComponent(id));
    stream = W.stream(`/v1/demo/runs/${encodeURIComponent(id)}/events`, {
      auth: true,
      onEvent,
      onState(state, err) {
        if (state === "closed" && err) {
          W.showError(err, "the demo run's events");
          $("run").disabled = false;
          $("run-state").textContent = "";
        }
      },
    });
  }

  async function start() {
    if (!W.credential.get()) {
      W.showError(new Error("running the demo needs the operator credential: paste it with “Operator credential” at the top right"), "demo");
      W.askCredential();
      return;
    }
    $("run").disabled = true;
    try {
      const run = await W.api.post("/v1/demo/runs", undefined, { auth: true });
      follow(run.id);
    } catch (e) {
      $("run").disabled = false;
      const busy = e.status === 409 && /demo run (\S+)/.exec(e.body && e.body.message || "");
      if (busy) follow(busy[1]);
      else W.showError(e, "starting the demo");
    }
  }

  $("run").addEventListener("click", start);
  const id = new URLSearchParams(location.search).get("run");
  if (id && W.credential.get()) follow(id);
})();
