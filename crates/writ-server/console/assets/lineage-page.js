// The Execution Lineage Explorer page (/console/lineage): searches lineage roots
// (`GET /v1/lineage?principal=&since=&until=`), draws a lineage (`GET /v1/lineage/{id}`) as a
// DAG laid out by the vendored dagre and drawn in SVG, each node coloured by decision and
// execution outcome; a node (click, or Enter/Space when focused) shows its decision record
// from the public log and a link to its proof in the proof viewer. Both lineage routes take
// the operator credential; without one the page says so and asks for it.
import * as dagre from "../vendor/dagre/dagre.esm.js";
import * as L from "./lineage.js";
// common.js (a classic script loaded before this module) defines window.Writ.
const W = window.Writ;
const api = (path, opts) => W.api.get(path, opts);
const operatorToken = () => W.credential.get();

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const fmtTime = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "");

function needCredential(e) {
  if (e.status === 401 || e.status === 403 || !operatorToken()) {
    return "The lineage routes take the operator credential: enter it in the header (it stays in this tab's session).";
  }
  return e.message;
}

async function search(q) {
  const list = $("roots");
  const status = $("lineage-status");
  let s;
  try {
    s = L.parseSearch(q);
  } catch (e) {
    status.textContent = e.message;
    return;
  }
  if (s.kind === "id") {
    await show(s.id);
    return;
  }
  status.textContent = "searching…";
  try {
    const r = await api(`/v1/lineage?${L.rootsQuery(s)}`, { auth: true });
    W.fill(
      list,
      r.roots.length
        ? r.roots.map((x) =>
            W.el("li", {}, W.el("button", { type: "button", dataset: { root: x.root }, onclick: () => show(x.root) },
              W.pill(x.outcome), ` ${L.shortSubject(x.subject)} · ${x.action} · ${fmtTime(x.time)} · ${x.matched} matching`)))
        : W.el("li", { class: "muted" }, "no lineage matches"),
    );
    list.dataset.count = String(r.roots.length);
    status.textContent = `${r.roots.length} lineage root(s)`;
  } catch (e) {
    status.textContent = needCredential(e);
  }
}

async function show(id) {
  const status = $("lineage-status");
  status.textContent = `loading the lineage of ${id}…`;
  let lin;
  try {
    lin = await api(`/v1/lineage/${encodeURIComponent(id)}`, { auth: true });
  } catch (e) {
    status.textContent = e.status === 404 ? `no decision ${id} in the log` : needCredential(e);
    return;
  }
  const url = new URL(location.href);
  url.searchParams.set("id", id);
  history.replaceState(null, "", url);
  draw(lin);
  status.textContent = `lineage of root ${lin.root}: ${lin.nodes.length} decision(s)${lin.truncated ? " (truncated at 1,000)" : ""}`;
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

function draw(lin) {
  const g = L.layout(dagre, lin);
  const box = $("graph");
  W.fill(box);
  const svg = el("svg", { width: g.width, height: g.height, viewBox: `0 0 ${g.width} ${g.height}`, role: "group", "aria-label": `lineage of ${lin.root}` }, box);
  el("path", { d: "M0,0 L8,4 L0,8 z", fill: "#777" }, el("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 8, refY: 4, markerWidth: 8, markerHeight: 8, orient: "auto" }, el("defs", {}, svg)));
  for (const e of g.edges) {
    el("polyline", { points: e.points.map((p) => `${p.x},${p.y}`).join(" "), class: "edge", "data-from": e.from, "data-to": e.to, "marker-end": "url(#arrow)" }, svg);
  }
  for (const n of g.nodes) {
    const node = el("g", { class: `node ${n.decision} exec-${n.exec}${n.id === lin.focus ? " focus" : ""}`, transform: `translate(${n.x},${n.y})`, tabindex: 0, role: "button", "data-id": n.id, "aria-label": `${n.decision} ${n.action} by ${n.subject}, execution ${n.exec}` }, svg);
    el("rect", { width: n.w, height: n.h, rx: 6 }, node);
    el("rect", { class: "exec-bar", x: 0, y: n.h - 6, width: n.w, height: 6 }, node);
    const t1 = el("text", { x: 8, y: 18 }, node);
    t1.textContent = `${n.decision.toUpperCase()} · ${n.action}`.slice(0, 30);
    const t2 = el("text", { x: 8, y: 34, class: "sub" }, node);
    t2.textContent = L.shortSubject(n.subject).slice(0, 30);
    const t3 = el("text", { x: 8, y: 48, class: "sub" }, node);
    t3.textContent = `#${n.log_index} · ${n.exec}`;
    const open = () => detail(n);
    node.addEventListener("click", open);
    node.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        open();
      }
    });
  }
  box.dataset.nodes = String(g.nodes.length);
  box.dataset.edges = String(g.edges.length);
}

async function detail(n) {
  const d = $("node-detail");
  for (const x of document.querySelectorAll("#graph .node.selected")) x.classList.remove("selected");
  document.querySelector(`#graph .node[data-id="${CSS.escape(n.id)}"]`)?.classList.add("selected");
  const kv = (k, ...v) => [W.el("dt", {}, k), W.el("dd", {}, ...v)];
  W.fill(
    d,
    W.el("h3", {}, n.id),
    W.el("dl", {},
      kv("decision", W.pill(n.decision, n.decision === "revoked" ? "deny" : undefined), n.reason ? ` ${n.reason}` : ""),
      kv("principal", n.subject), kv("action", n.action), kv("depth", String(n.depth)),
      kv("time", `${fmtTime(n.time)} UTC`), kv("execution", n.exec), kv("log index", String(n.log_index))),
    W.el("p", {}, W.el("a", { id: "proof-link", href: `/console/proof?q=${encodeURIComponent(n.log_index)}` }, "Verify its proof in the proof viewer")),
    W.el("pre", { id: "node-record", class: "wrap", tabindex: 0 }, "loading the decision record…"),
  );
  d.dataset.id = n.id;
  try {
    const page = await api(`/v1/log/entries?start=${n.log_index}&end=${n.log_index + 1}`);
    $("node-record").textContent = JSON.stringify(page.entries[0].entry, null, 2);
  } catch (e) {
    $("node-record").textContent = e.message;
  }
  d.focus();
}

$("lineage-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  search($("lineage-q").value);
});

const start = new URL(location.href).searchParams.get("id");
if (start) {
  $("lineage-q").value = start;
  show(start);
} else if (operatorToken()) {
  search("");
} else {
  $("lineage-status").textContent = needCredential({ status: 401 });
}
