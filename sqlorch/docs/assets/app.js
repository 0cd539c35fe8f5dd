// sqlorch docs: the DAG around the selected node, its page, and column lineage.
// Data: window.SQLORCH_DOCS (data.js, see sqlorch/docs/site.py). No network, no server.
"use strict";
(function () {
  const DATA = window.SQLORCH_DOCS;
  const KINDS = ["passthrough", "transformed", "filter"];
  const nodes = DATA.nodes;
  const byId = new Map(nodes.map((node, i) => [node.id, i]));
  const parents = nodes.map(() => []);
  const children = nodes.map(() => []);
  for (const [a, b] of DATA.edges) {
    parents[b].push(a);
    children[a].push(b);
  }
  // Column graph, both ways; a column is "nodeIndex/name", an edge carries its kind's index.
  // Built on the first column click: a page of 10,000 models opens without it.
  let up = null;
  let down = null;
  function columnGraph() {
    up = new Map();
    down = new Map();
    nodes.forEach((node, i) => {
      for (const column of node.columns) {
        const key = i + "/" + column.name;
        const edges = column.from.map(([j, name, kind]) => [j + "/" + name, KINDS.indexOf(kind)]);
        up.set(key, edges);
        for (const [from, kind] of edges) {
          if (!down.has(from)) down.set(from, []);
          down.get(from).push([key, kind]);
        }
      }
    });
  }
  // SQL and compiled SQL come in sql.js, loaded once the page is interactive.
  let SQL = null;
  function loadSql() {
    const script = document.createElement("script");
    script.src = "sql.js";
    script.onload = () => {
      SQL = window.SQLORCH_SQL;
      if (state.selected >= 0) renderSql();
    };
    document.body.append(script);
  }

  const state = { selected: -1, column: null, lineage: null };
  const depthSelect = document.getElementById("depth");
  depthSelect.value = nodes.length <= 300 ? "all" : "2";

  function h(tag, attrs, ...content) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "onclick") element.addEventListener("click", value);
      else if (value !== null && value !== undefined && value !== false) element.setAttribute(name, value);
    }
    return fill(element, content);
  }

  // Put `content` (nodes, text, nested arrays; null and undefined skipped) in `element`.
  function fill(element, ...content) {
    for (const item of content.flat(Infinity)) {
      if (item !== null && item !== undefined) element.append(item instanceof Node ? item : String(item));
    }
    return element;
  }

  // Every column reachable from `start`, with the strongest kind over its paths (a path is
  // as weak as its weakest edge): the same rule as sqlorch/analysis/lineage_graph.py.
  function walk(edges, start) {
    const best = new Map([[start, -1]]);
    const queue = [[start, -1]];
    for (let at = 0; at < queue.length; at++) {
      const [column, rank] = queue[at];
      if (rank > best.get(column)) continue;
      for (const [other, edge] of edges.get(column) || []) {
        const path = Math.max(rank, edge);
        if (other === start || path >= (best.has(other) ? best.get(other) : 3)) continue;
        best.set(other, path);
        queue.push([other, path]);
      }
    }
    best.delete(start);
    return best;
  }

  // ---- graph ---------------------------------------------------------------------------
  const cy = cytoscape({
    container: document.getElementById("graph"),
    minZoom: 0.05,
    maxZoom: 3,
    style: [
      { selector: "node", style: {
        shape: "round-rectangle", width: "data(w)", height: "data(h)", label: "data(label)",
        "text-valign": "center", "text-halign": "center", "text-wrap": "wrap", "font-size": 11,
        "background-color": "#dfe9ff", "border-width": 1, "border-color": "#8aa4d6", color: "#1d2433" } },
      { selector: "node[type = 'seed']", style: { "background-color": "#e3f5e1", "border-color": "#8cc487" } },
      { selector: "node[type = 'source']", style: { "background-color": "#fdecd2", "border-color": "#dcaa62" } },
      { selector: "node.upstream", style: { "border-color": "#2456c7", "border-width": 2 } },
      { selector: "node.downstream", style: { "border-color": "#2e9a45", "border-width": 2 } },
      { selector: "node.lineage-up", style: { "background-color": "#c8dafc" } },
      { selector: "node.lineage-down", style: { "background-color": "#c9efcb" } },
      { selector: "node.selected", style: { "border-width": 3, "border-color": "#d08a00", "font-weight": "bold" } },
      { selector: "edge", style: {
        width: 1.2, "line-color": "#b7bfcf", "target-arrow-color": "#b7bfcf",
        "target-arrow-shape": "triangle", "curve-style": "bezier" } },
      { selector: "edge.path", style: { width: 2, "line-color": "#7d8db0", "target-arrow-color": "#7d8db0" } },
    ],
  });
  cy.on("tap", "node", (event) => select(Number(event.target.id())));

  function neighbourhood(center, depth, cap) {
    if (depth === "all") return new Set(nodes.keys());
    const shown = new Set([center]);
    for (const next of [parents, children]) {
      let frontier = [center];
      for (let step = 0; step < depth && frontier.length; step++) {
        const reached = [];
        for (const node of frontier) {
          for (const other of next[node]) {
            if (shown.has(other)) continue;
            if (shown.size >= cap) return shown;
            shown.add(other);
            reached.push(other);
          }
        }
        frontier = reached;
      }
    }
    return shown;
  }

  // Layered layout: a node sits one layer right of its furthest parent; within a layer
  // nodes are ordered by the mean position of their parents (one sweep).
  function layout(shown) {
    const layer = new Map();
    const layerOf = (node) => {
      if (layer.has(node)) return layer.get(node);
      layer.set(node, 0);
      let value = 0;
      for (const parent of parents[node]) if (shown.has(parent)) value = Math.max(value, layerOf(parent) + 1);
      layer.set(node, value);
      return value;
    };
    const layers = [];
    for (const node of shown) (layers[layerOf(node)] ||= []).push(node);
    const y = new Map();
    const positions = new Map();
    let x = 0;
    let previous = 0;
    layers.forEach((members, column) => {
      const width = Math.max(...members.map((node) => labelWidth(nodes[node].id)));
      x += column ? previous / 2 + width / 2 + 70 : 0;
      previous = width;
      const score = (node) => {
        const placed = parents[node].filter((p) => y.has(p));
        return placed.length ? placed.reduce((sum, p) => sum + y.get(p), 0) / placed.length : 0;
      };
      members.sort((a, b) => score(a) - score(b) || nodes[a].id.localeCompare(nodes[b].id));
      members.forEach((node, row) => {
        y.set(node, row - (members.length - 1) / 2);
        positions.set(node, { x, y: y.get(node) * 64 });
      });
    });
    return positions;
  }

  const labelWidth = (text) => text.length * 6.6 + 22;

  function drawGraph() {
    const depth = depthSelect.value === "all" ? "all" : Number(depthSelect.value);
    const cap = depth === "all" ? nodes.length : 500;
    const shown = neighbourhood(state.selected, depth, cap);
    const positions = layout(shown);
    const elements = [];
    for (const node of shown) {
      elements.push({ group: "nodes", data: { id: String(node), type: nodes[node].type }, position: positions.get(node) });
      for (const child of children[node]) {
        if (shown.has(child)) elements.push({ group: "edges", data: { id: node + ">" + child, source: String(node), target: String(child) } });
      }
    }
    cy.batch(() => {
      cy.elements().remove();
      cy.add(elements);
    });
    decorateGraph();
    cy.fit(undefined, 30);
    document.getElementById("graph-note").textContent =
      shown.size < nodes.length ? `showing ${shown.size} of ${nodes.length} relations` : `${nodes.length} relations`;
  }

  function lineageColumnsByNode() {
    const found = new Map(); // node -> [names, up?, down?]
    if (!state.lineage) return found;
    for (const [direction, columns] of [["up", state.lineage.up], ["down", state.lineage.down]]) {
      for (const key of columns.keys()) {
        const [node, name] = splitKey(key);
        if (!found.has(node)) found.set(node, { names: [], up: false, down: false });
        const entry = found.get(node);
        entry.names.push(name);
        entry[direction] = true;
      }
    }
    return found;
  }

  function decorateGraph() {
    const lineage = lineageColumnsByNode();
    const ancestors = closure(state.selected, parents);
    const descendants = closure(state.selected, children);
    cy.batch(() => {
      cy.nodes().forEach((element) => {
        const node = Number(element.id());
        const hit = lineage.get(node);
        const id = nodes[node].id;
        let names = hit ? hit.names.join(", ") : "";
        const room = Math.max(id.length, 24);
        if (names.length > room) names = names.slice(0, room - 1) + "…";
        element.data({ label: hit ? id + "\n" + names : id, w: labelWidth(hit ? "x".repeat(Math.max(id.length, names.length)) : id), h: hit ? 40 : 26 });
        element.toggleClass("selected", node === state.selected);
        element.toggleClass("upstream", ancestors.has(node));
        element.toggleClass("downstream", descendants.has(node));
        element.toggleClass("lineage-up", Boolean(hit && hit.up));
        element.toggleClass("lineage-down", Boolean(hit && hit.down));
      });
      cy.edges().forEach((edge) => {
        const a = Number(edge.source().id());
        const b = Number(edge.target().id());
        const onPath = (ancestors.has(a) || a === state.selected) && (ancestors.has(b) || b === state.selected);
        const below = (descendants.has(a) || a === state.selected) && descendants.has(b);
        edge.toggleClass("path", onPath || below);
      });
    });
  }

  function closure(start, next) {
    const seen = new Set();
    const stack = [start];
    while (stack.length) {
      for (const other of next[stack.pop()] || []) {
        if (!seen.has(other)) {
          seen.add(other);
          stack.push(other);
        }
      }
    }
    return seen;
  }

  const splitKey = (key) => {
    const slash = key.indexOf("/");
    return [Number(key.slice(0, slash)), key.slice(slash + 1)];
  };
  const columnName = (key) => {
    const [node, name] = splitKey(key);
    return nodes[node].id + "." + name;
  };

  // ---- the page of one node ------------------------------------------------------------
  function link(node) {
    return h("a", { "data-node": nodes[node].id, onclick: () => select(node) }, nodes[node].id);
  }

  function kindSpan(kind) {
    return kind ? h("span", { class: "kind-" + kind }, kind) : "";
  }

  function renderDetails() {
    const node = nodes[state.selected];
    const panel = document.getElementById("details");
    const facts = [];
    if (node.path) facts.push(["file", node.path]);
    if (node.type === "model") {
      facts.push(["materialized", node.materialized]);
      facts.push(["key", node.key ? (node.key.length ? node.key.join(", ") : "(one row)") : "none: " + node.key_reason]);
      facts.push(["strategy", node.strategy]);
    }
    const sorted = (list) => [...list].sort((a, b) => nodes[a].id.localeCompare(nodes[b].id));
    panel.replaceChildren();
    fill(panel,
      h("h2", { id: "node-title" }, node.id),
      h("span", { class: "badge " + node.type }, node.type),
      (node.tags || []).map((tag) => h("span", { class: "badge" }, "tag: " + tag)),
      node.description ? h("p", {}, node.description) : null,
      h("dl", {}, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
      renderFreshness(node),
      h("h3", {}, `Upstream (${parents[state.selected].length})`),
      h("ul", { id: "upstream", class: "links" }, sorted(parents[state.selected]).map((p) => h("li", {}, link(p)))),
      h("h3", {}, `Downstream (${children[state.selected].length})`),
      h("ul", { id: "downstream", class: "links" }, sorted(children[state.selected]).map((c) => h("li", {}, link(c)))),
      h("h3", {}, "Columns"),
      h("p", { class: "legend" }, "Click a column to see the columns it comes from (blue) and the columns it feeds (green)."),
      h("div", { id: "column-lineage-slot" }),
      renderColumns(node),
      renderAudits(node),
      h("div", { id: "sql-slot" }),
      node.type !== "source" ? renderRuns(node) : null,
    );
    renderColumnLineage();
    renderSql();
  }

  function renderSql() {
    const node = nodes[state.selected];
    const slot = document.getElementById("sql-slot");
    if (node.type !== "model") return;
    if (!SQL) {
      slot.replaceChildren(h("p", { class: "legend" }, "loading the SQL…"));
      return;
    }
    const [sql, compiled] = SQL[node.id];
    slot.replaceChildren(h("h3", {}, "SQL"), h("pre", { id: "sql" }, sql),
      h("h3", {}, "Compiled SQL"), h("pre", { id: "compiled-sql" }, compiled));
  }

  function renderColumns(node) {
    if (!node.columns.length) {
      return h("p", { class: "legend" }, node.type === "model"
        ? "Columns not known offline: declare the columns of its sources (columns: in the sources YAML)."
        : "No columns declared or read.");
    }
    const rows = node.columns.map((column) => {
      const key = state.selected + "/" + column.name;
      const from = column.from.map(([j, name, kind], i) => [i ? ", " : "", nodes[j].id + "." + name + " ", kindSpan(kind)]);
      const row = h("tr", { class: "column-row", "data-column": column.name, onclick: () => selectColumn(key) },
        h("td", {}, h("strong", {}, column.name)), h("td", {}, column.type || ""), h("td", {}, kindSpan(column.kind)),
        h("td", {}, from));
      return row;
    });
    return h("table", { id: "columns" },
      h("thead", {}, h("tr", {}, ["column", "type", "kind", "from"].map((title) => h("th", {}, title)))),
      h("tbody", {}, rows));
  }

  function renderFreshness(node) {
    if (!node.freshness) return null;
    const f = node.freshness;
    return [h("h3", {}, "Freshness"), h("dl", { id: "freshness" },
      h("dt", {}, "target"), h("dd", {}, f.target || "-"),
      h("dt", {}, "current lag"), h("dd", {}, f.lag_seconds === null || f.lag_seconds === undefined ? "-" : f.lag_seconds + " s"),
      h("dt", {}, "status"), h("dd", {}, f.status || "-"))];
  }

  function renderAudits(node) {
    if (!node.audits) return null;
    return [h("h3", {}, "Audits"), h("table", { id: "audits" },
      h("tr", {}, ["audit", "blocking", "last result", "failing rows"].map((t) => h("th", {}, t))),
      node.audits.map((a) => h("tr", {}, h("td", {}, a.name), h("td", {}, a.blocking ? "yes" : "warn"),
        h("td", {}, a.status || "-"), h("td", {}, a.failing_rows ?? "-"))))];
  }

  function renderRuns(node) {
    if (!node.runs.length) {
      return [h("h3", {}, "Last runs"), h("p", { id: "runs-note", class: "legend" }, DATA.runs_note || "no runs recorded for this model")];
    }
    return [h("h3", {}, "Last runs"), h("table", { id: "runs" },
      h("tr", {}, ["status", "action", "rows", "seconds", "reason"].map((t) => h("th", {}, t))),
      node.runs.map((run) => h("tr", {}, h("td", {}, run.status), h("td", {}, run.action), h("td", {}, run.rows ?? "-"),
        h("td", {}, run.seconds ?? "-"), h("td", {}, run.reason))))];
  }

  function renderColumnLineage() {
    const slot = document.getElementById("column-lineage-slot");
    for (const row of document.querySelectorAll("tr.column-row")) {
      const key = state.selected + "/" + row.dataset.column;
      row.classList.toggle("selected", key === state.column);
      row.classList.toggle("lineage-up", Boolean(state.lineage && state.lineage.up.has(key)));
      row.classList.toggle("lineage-down", Boolean(state.lineage && state.lineage.down.has(key)));
    }
    if (!state.lineage) {
      slot.replaceChildren();
      return;
    }
    const ordered = (columns) => [...columns].sort((a, b) => a[1] - b[1] || columnName(a[0]).localeCompare(columnName(b[0])));
    const list = (id, columns) => h("ul", { id }, ordered(columns).map(([key, rank]) => {
      const [node, name] = splitKey(key);
      return h("li", { class: id === "lineage-upstream" ? "lineage-up" : "lineage-down", "data-column": columnName(key) },
        link(node), "." + name + " ", kindSpan(KINDS[rank]));
    }));
    slot.replaceChildren(h("div", { id: "column-lineage" },
      h("strong", {}, "Lineage of " + columnName(state.column)),
      h("div", {}, `comes from (${state.lineage.up.size})`), list("lineage-upstream", state.lineage.up),
      h("div", {}, `feeds (${state.lineage.down.size})`), list("lineage-downstream", state.lineage.down)));
  }

  function selectColumn(key) {
    if (state.column === key) {
      state.column = null;
      state.lineage = null;
    } else {
      state.column = key;
      if (!up) columnGraph();
      state.lineage = { up: walk(up, key), down: walk(down, key) };
    }
    renderColumnLineage();
    decorateGraph();
  }

  function select(node) {
    if (node < 0 || node >= nodes.length) return;
    const redraw = depthSelect.value !== "all" || cy.getElementById(String(node)).empty();
    state.selected = node;
    if (location.hash !== "#" + nodes[node].id) history.replaceState(null, "", "#" + nodes[node].id);
    renderDetails();
    if (redraw) drawGraph();
    else decorateGraph();
  }

  // ---- search --------------------------------------------------------------------------
  const search = document.getElementById("search");
  const results = document.getElementById("results");
  function find(text) {
    const query = text.trim().toLowerCase();
    if (!query) return [];
    const scored = [];
    nodes.forEach((node, i) => {
      const id = node.id.toLowerCase();
      const at = id.indexOf(query);
      if (at >= 0) scored.push([id.slice(id.lastIndexOf(".") + 1).startsWith(query) ? 0 : at === 0 ? 1 : 2, id, i]);
    });
    scored.sort((a, b) => a[0] - b[0] || a[1].localeCompare(b[1]));
    return scored.slice(0, 25).map((entry) => entry[2]);
  }
  function showResults() {
    const found = find(search.value);
    results.replaceChildren(...found.map((node) => h("li", { class: "search-result", "data-node": nodes[node].id,
      onclick: () => choose(node) }, nodes[node].id, h("span", { class: "type" }, nodes[node].type))));
    results.hidden = found.length === 0;
  }
  function choose(node) {
    results.hidden = true;
    search.value = "";
    select(node);
  }
  search.addEventListener("input", showResults);
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      const found = find(search.value);
      if (found.length) choose(found[0]);
    } else if (event.key === "Escape") {
      results.hidden = true;
    }
  });
  depthSelect.addEventListener("change", drawGraph);
  window.addEventListener("hashchange", () => {
    const node = byId.get(decodeURIComponent(location.hash.slice(1)));
    if (node !== undefined && node !== state.selected) select(node);
  });

  document.getElementById("project").textContent = `${DATA.project} · ${DATA.target} · ${DATA.generated_at}`;
  const fromHash = byId.get(decodeURIComponent(location.hash.slice(1)));
  const firstModel = nodes.findIndex((node) => node.type === "model");
  if (nodes.length) select(fromHash !== undefined ? fromHash : Math.max(firstModel, 0));
  window.sqlorchDocs = { cy, select, nodes };
  window.SQLORCH_READY = performance.now();
  document.body.dataset.ready = "true";
  loadSql();
})();
