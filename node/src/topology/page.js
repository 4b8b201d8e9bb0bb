// The topology page's script (inlined by render_html.rs): draws the graph at the
// slider's moment and the block propagation chart from the JSON in #data.
// No libraries and no network: everything it needs is in this file and the data.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const TIP_COLOURS = ["#b3e2cd", "#fdcdac", "#cbd5e8", "#f4cae4", "#e6f5c9", "#fff2ae",
    "#f1e2cc", "#8dd3c7", "#bebada", "#fb8072", "#80b1d3", "#fdb462"];
  const OFFLINE = "#dddddd";
  const BOOTSTRAP = "#1f5fbf";

  function el(name, attrs, parent, text) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function iso(ms) {
    return new Date(ms).toISOString();
  }

  // The slider's stops: the start, every change, the end.
  const stops = Array.from(new Set([data.start].concat(data.changes.map(c => c[0]), [data.at, data.end])))
    .sort((a, b) => a - b);

  // Nodes on a circle, in name order: stable from one moment to the next.
  const order = data.nodes.slice().sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const radius = Math.max(160, order.length * 28);
  const size = 2 * radius + 260;
  const pos = {};
  order.forEach((n, i) => {
    const angle = -Math.PI / 2 + 2 * Math.PI * i / Math.max(1, order.length);
    pos[n.id] = [size / 2 + radius * Math.cos(angle), size / 2 + radius * Math.sin(angle)];
  });

  // Spans are half-open: [from, to).
  function within(span, t) {
    return span[0] <= t && t < span[1];
  }

  function stateAt(t) {
    const edges = [];
    const linked = {};
    for (const e of data.edges) {
      const up = e.spans.filter(s => s.from <= t && t < s.to);
      if (up.length === 0) continue;
      const mesh = data.mesh.some(m => ((m[0] === e.a && m[1] === e.b) || (m[0] === e.b && m[1] === e.a))
        && m[2] <= t && t < m[3]);
      const dialer = up[0].dialer;
      edges.push({
        from: dialer, to: dialer === e.a ? e.b : e.a, mesh: mesh,
        connected: up.some(s => s.connected), bootstrap: up.some(s => s.bootstrap),
        both: up.some(s => s.dialer !== dialer),
      });
      linked[e.a] = linked[e.b] = true;
    }
    const nodes = {};
    for (const n of data.nodes) {
      let tip = null;
      for (const x of n.tips) if (x[0] <= t) tip = x;
      const up = n.logged ? n.up.some(r => within(r, t)) : !!linked[n.id];
      nodes[n.id] = { up: up, height: tip ? tip[1] : null, tip: tip ? tip[2] : null };
    }
    return { edges: edges, nodes: nodes };
  }

  function tipColours(state) {
    const counts = {};
    for (const id in state.nodes) {
      const tip = state.nodes[id].tip;
      if (tip) counts[tip] = (counts[tip] || 0) + 1;
    }
    const tips = Object.keys(counts).sort((a, b) => counts[b] - counts[a] || (a < b ? -1 : 1));
    const colours = {};
    tips.forEach((tip, i) => { colours[tip] = TIP_COLOURS[i % TIP_COLOURS.length]; });
    return colours;
  }

  const graph = document.getElementById("graph");
  graph.setAttribute("viewBox", "0 0 " + size + " " + size);

  function drawGraph(t) {
    while (graph.firstChild) graph.removeChild(graph.firstChild);
    const defs = el("defs", {}, graph);
    for (const [id, colour] of [["arrow", "#444"], ["arrow-boot", BOOTSTRAP]]) {
      const m = el("marker", { id: id, viewBox: "0 0 10 10", refX: "10", refY: "5",
        markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, defs);
      el("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: colour }, m);
    }
    const state = stateAt(t);
    const colours = tipColours(state);
    for (const e of state.edges) {
      const [x1, y1] = pos[e.from], [x2, y2] = pos[e.to];
      // Stop short of the boxes so the arrow heads show.
      const dx = x2 - x1, dy = y2 - y1, len = Math.max(1, Math.hypot(dx, dy)), cut = 46 / len;
      const cls = ["link", e.connected ? (e.mesh ? "mesh" : "plain") : "known"];
      if (e.bootstrap) cls.push("bootstrap");
      const marker = "url(#" + (e.bootstrap ? "arrow-boot" : "arrow") + ")";
      const attrs = { class: cls.join(" "), x1: x1 + dx * cut, y1: y1 + dy * cut,
        x2: x2 - dx * cut, y2: y2 - dy * cut, "marker-end": marker,
        "data-from": e.from, "data-to": e.to };
      if (e.both) attrs["marker-start"] = marker;
      el("line", attrs, graph);
    }
    for (const n of order) {
      const s = state.nodes[n.id];
      const [x, y] = pos[n.id];
      const g = el("g", { class: "node" + (s.up ? "" : " down"), "data-id": n.id,
        transform: "translate(" + x + "," + y + ")" }, graph);
      el("title", {}, g, n.id + (n.detail ? "\n" + n.detail : ""));
      const fill = !s.up ? OFFLINE : s.tip ? colours[s.tip] : "#ffffff";
      el("rect", { x: -62, y: -26, width: 124, height: 52, rx: 8, fill: fill }, g);
      el("text", { class: "name", y: -8 }, g, n.name);
      el("text", { class: "id", y: 6 }, g, "…" + n.id.slice(-8));
      const h = s.height === null ? "" : "height " + s.height + (s.tip ? " " + s.tip.slice(0, 8) : "");
      el("text", { class: "height", y: 19 }, g, h);
    }
    document.getElementById("time").textContent = iso(t) + "  (" + state.edges.length + " links up)";
    const events = document.getElementById("events");
    events.textContent = "";
    const past = data.changes.filter(c => c[0] <= t).slice(-12);
    for (const c of past) {
      const li = document.createElement("li");
      li.textContent = iso(c[0]).slice(11, 23) + "  " + c[1];
      if (c[0] === t) li.className = "now";
      events.appendChild(li);
    }
  }

  function legend() {
    const box = document.getElementById("legend");
    const rows = [["mesh", "in the blocks gossip mesh"], ["plain", "connected, not in the mesh"],
      ["bootstrap", "bootstrap link"], ["known", "knows of (routing table)"]];
    const svg = el("svg", { width: 300, height: rows.length * 20 + 44 }, box);
    rows.forEach(([cls, text], i) => {
      el("line", { class: "link " + (cls === "bootstrap" ? "plain bootstrap" : cls),
        x1: 4, y1: 12 + i * 20, x2: 54, y2: 12 + i * 20 }, svg);
      el("text", { x: 62, y: 16 + i * 20 }, svg, text);
    });
    el("text", { x: 4, y: 16 + rows.length * 20 }, svg, "arrow: from the dialer; same fill: same tip");
    el("text", { x: 4, y: 34 + rows.length * 20 }, svg, "grey: stopped or unreachable");
  }

  function chart() {
    const svg = document.getElementById("chart");
    const blocks = data.blocks.filter(b => b.max !== null);
    const W = 900, H = 300, L = 60, B = 40;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    document.getElementById("summary").textContent = data.summary;
    if (blocks.length === 0) {
      el("text", { class: "empty", x: W / 2, y: H / 2 }, svg, "no block reached another node in these logs");
      return;
    }
    const top = Math.max(1, ...blocks.map(b => b.max));
    const x = i => L + (W - L - 20) * (blocks.length === 1 ? 0.5 : i / (blocks.length - 1));
    const y = v => H - B - (H - B - 20) * Math.max(0, v) / top;
    el("line", { class: "axis", x1: L, y1: H - B, x2: W - 10, y2: H - B }, svg);
    el("line", { class: "axis", x1: L, y1: 20, x2: L, y2: H - B }, svg);
    for (const v of [0, top / 2, top]) {
      el("text", { class: "tick", x: L - 6, y: y(v) + 4 }, svg, Math.round(v) + " ms");
    }
    el("text", { class: "tick x", x: (W + L) / 2, y: H - 8 }, svg,
      "blocks in order mined (" + blocks.length + "); line: p50 to max, dot: p50, ring: p90");
    blocks.forEach((b, i) => {
      const g = el("g", { class: "block" }, svg);
      el("title", {}, g, "height " + b.height + " " + b.hash + " from " + b.origin + ": " + b.n +
        " nodes, p50 " + b.p50 + " ms, p90 " + b.p90 + " ms, max " + b.max + " ms");
      el("line", { class: "spread", x1: x(i), y1: y(b.p50), x2: x(i), y2: y(b.max) }, g);
      el("circle", { class: "p50", cx: x(i), cy: y(b.p50), r: 3 }, g);
      el("circle", { class: "p90", cx: x(i), cy: y(b.p90), r: 4 }, g);
    });
  }

  const slider = document.getElementById("slider");
  slider.max = String(stops.length - 1);
  let first = 0;
  stops.forEach((s, i) => { if (s <= data.at) first = i; });
  slider.value = String(first);
  slider.addEventListener("input", () => drawGraph(stops[Number(slider.value)]));
  legend();
  drawGraph(stops[first]);
  chart();
})();
