// The Execution Lineage Explorer's model and layout, as pure functions: a lineage as the
// API answers it (`GET /v1/lineage/{id}`: the root, the nodes breadth first, each naming its
// parent) becomes a directed graph laid out top to bottom by the vendored dagre
// (https://github.com/dagrejs/dagre, Sugiyama-style layered layout), and each node gets the
// classes the page colours it by: its decision (allow, deny, pending, revoked) and the
// outcome of its execution (succeeded, failed, not_run, none reported).

export const NODE_W = 188;
export const NODE_H = 58;

/** The decision class of a lineage node: revoked wins over allow. */
export function decisionClass(n) {
  if (n.revoked) return "revoked";
  if (n.outcome === "allow" || n.outcome === "deny" || n.outcome === "pending") return n.outcome;
  return "unknown";
}

/** The execution class: the reported status, or "unreported". */
export function executionClass(n) {
  return n.execution === "succeeded" || n.execution === "failed" || n.execution === "not_run" ? n.execution : "unreported";
}

/** Short labels: the last path segment of a SPIFFE ID, the id's head. */
export function shortSubject(s) {
  const m = /^spiffe:\/\/[^/]+\/(.*)$/.exec(s || "");
  return m ? m[1] : s || "";
}

/** Nodes and edges of a lineage; an edge for each node whose parent is in the view.
 *  Throws on a malformed answer. */
export function graphOf(lineage) {
  if (!lineage || !Array.isArray(lineage.nodes)) throw new Error("a lineage has nodes");
  const ids = new Set();
  for (const n of lineage.nodes) {
    if (typeof n.id !== "string" || ids.has(n.id)) throw new Error(`lineage node ${JSON.stringify(n.id)} is missing or repeated`);
    ids.add(n.id);
  }
  const edges = lineage.nodes.filter((n) => n.parent && ids.has(n.parent)).map((n) => ({ from: n.parent, to: n.id }));
  return { nodes: lineage.nodes, edges };
}

/** Lays the lineage out with `dagre` (the vendored module): positions of each node's
 *  top-left corner and each edge's polyline, and the drawing's size. */
export function layout(dagre, lineage) {
  const { nodes, edges } = graphOf(lineage);
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "TB", nodesep: 24, ranksep: 48, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) g.setNode(n.id, { width: NODE_W, height: NODE_H });
  for (const e of edges) g.setEdge(e.from, e.to);
  dagre.layout(g);
  const placed = nodes.map((n) => {
    const p = g.node(n.id);
    return { ...n, x: p.x - NODE_W / 2, y: p.y - NODE_H / 2, w: NODE_W, h: NODE_H, decision: decisionClass(n), exec: executionClass(n) };
  });
  const lines = edges.map((e) => ({ ...e, points: g.edge(e.from, e.to).points.map((p) => ({ x: p.x, y: p.y })) }));
  const gr = g.graph();
  return { nodes: placed, edges: lines, width: Math.ceil(gr.width || 0), height: Math.ceil(gr.height || 0) };
}

/** Parses the explorer's search box: a writ/decision id, a principal (SPIFFE ID), or a
 *  time range ("since"/"until" as ISO dates or Unix seconds). */
export function parseSearch(q) {
  const s = String(q || "").trim();
  if (!s) return { kind: "recent" };
  if (s.startsWith("spiffe://")) return { kind: "principal", principal: s };
  const range = /^(\S+)\s*(?:\.\.|to)\s*(\S+)$/.exec(s);
  if (range) {
    const since = toUnix(range[1]);
    const until = toUnix(range[2]);
    if (since !== null && until !== null) return { kind: "time", since, until };
  }
  if (/^[A-Za-z0-9._:-]{1,256}$/.test(s) && !/^\d{4}-\d\d-\d\d/.test(s)) return { kind: "id", id: s };
  const at = toUnix(s);
  if (at !== null) return { kind: "time", since: at, until: null };
  throw new Error("search by a writ id, a principal (spiffe://…) or a time (2026-01-01T10:00 or 2026-01-01..2026-01-02)");
}

function toUnix(s) {
  if (/^\d{1,12}$/.test(s)) return Number(s);
  if (!/^\d{4}-\d\d-\d\d/.test(s)) return null;
  const t = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(s) || s.length === 10 ? s : s + "Z");
  return Number.isNaN(t) ? null : Math.floor(t / 1000);
}

/** The query string of `GET /v1/lineage` for a parsed search. */
export function rootsQuery(search, limit = 50) {
  const p = new URLSearchParams();
  if (search.kind === "principal") p.set("principal", search.principal);
  if (search.kind === "time") {
    if (search.since !== null) p.set("since", String(search.since));
    if (search.until !== null) p.set("until", String(search.until));
  }
  p.set("limit", String(limit));
  return p.toString();
}
