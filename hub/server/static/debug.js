// mixerhub /debug/: polls ./state once a second and redraws. Values are attacker-chosen
// request data, so they only ever go into the page as text (textContent), never as HTML.
"use strict";

const CODES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
  "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
  "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"];
const REDACTED = "[REDACTED]";

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function text(id, value) { document.getElementById(id).textContent = value; }

function rows(id, items, render, emptyText) {
  const body = document.querySelector(`#${id} tbody`);
  const columns = document.querySelectorAll(`#${id} thead th`).length;
  body.replaceChildren(...(items.length ? items.map(render)
    : [el("tr", {}, el("td", {colspan: columns, class: "empty"}, emptyText))]));
}

function clock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleTimeString([], {hour12: false}) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function show(value) {
  if (value === REDACTED) return el("span", {class: "mono redacted"}, REDACTED);
  return el("span", {class: "mono"}, JSON.stringify(value));  // strings quoted, maps as JSON
}

// {source: n} or {source: {outcome: n}} → "3 ok · 1 denied · 0 error" and "mixer 4 · http 1"
function outcomes(bySource) {
  const sums = {};
  for (const row of Object.values(bySource)) {
    for (const [outcome, n] of Object.entries(row)) sums[outcome] = (sums[outcome] || 0) + n;
  }
  return Object.entries(sums).map(([o, n]) => `${n} ${o}`).join(" · ");
}

function sources(bySource) {
  const total = (v) => typeof v === "object" ? Object.values(v).reduce((a, b) => a + b, 0) : v;
  const seen = Object.entries(bySource).filter(([, v]) => total(v) > 0);
  return seen.length ? "by source: " + seen.map(([k, v]) => `${k} ${total(v)}`).join(" · ")
    : "none yet";
}

function drawSummary(s) {
  text("checks-total", s.checks.total);
  text("checks-detail", s.checks.total ? outcomes(s.checks.by_source) : "none yet");
  text("checks-sources", s.checks.total ? sources(s.checks.by_source) : "");
  text("reports-total", s.reports.total);
  text("reports-detail", sources(s.reports.by_source));
  const c = s.cache;
  text("cache-rate", !c.enabled ? "off" : c.hit_rate === null ? "–"
    : (100 * c.hit_rate).toFixed(1) + "%");
  text("cache-detail", `${c.hits} hits · ${c.misses} misses · ${c.size}` +
    (c.enabled ? ` / ${c.max_entries} entries` : " entries"));
  const snap = s.snapshot;
  text("snapshot-version", "v" + snap.version);
  text("snapshot-detail", snap.note || `${(snap.rules || []).length} rules · ` +
    `${(snap.handlers || []).length} handlers · ${(snap.instances || []).length} instances`);
}

function drawAdapters(adapters) {
  rows("adapters", adapters, (a) => el("tr", {},
    el("td", {}, el("span", {class: "dot " + a.status, title: a.status})),
    el("td", {class: "mono nowrap"}, a.handler), el("td", {}, a.adapter),
    el("td", {class: "nowrap"}, a.status.replace("_", " ")),
    el("td", {}, a.errors), el("td", {class: a.last_error ? "mono error" : ""}, a.last_error || ""),
    el("td", {class: "mono nowrap"}, clock(a.last_error_time))), "no handlers");
}

function drawDecisions(decisions) {
  text("decisions-count", `(${decisions.length}, newest first)`);
  rows("decisions", decisions, (d) => {
    if (d.error) {
      return el("tr", {}, el("td", {class: "mono nowrap"}, clock(d.time)),
        el("td", {colspan: 3, class: "error"}, d.error));
    }
    const v = d.verdict;
    const name = CODES[v.code] || `code ${v.code}`;
    return el("tr", {},
      el("td", {class: "mono nowrap"}, clock(d.time),
        d.cache_hit ? el("div", {class: "tag hit"}, "cache hit") : null),
      el("td", {}, el("div", {class: "nowrap verdict " + (v.code === 0 ? "ok" : "denied")},
        `${name} (${v.http_status})`), v.message ? el("div", {class: "small mono"}, v.message) : null),
      el("td", {}, d.rules.length ? d.rules.map((r) => el("span", {class: "tag mono"}, r))
        : el("span", {class: "empty"}, "none applied")),
      el("td", {}, el("dl", {class: "attrs mono"}, d.referenced.map((r) => [
        el("dt", {}, r.name),
        el("dd", {}, r.present ? show(r.value) : el("span", {class: "absent"}, "absent"))]))));
  }, "no checks yet");
}

function drawConfig(snap) {
  rows("rules", snap.rules || [], (r) => el("tr", {},
    el("td", {class: "mono"}, r.name, r.shadow ? el("span", {class: "tag"}, "shadow") : null),
    el("td", {class: "mono"}, r.match || el("span", {class: "empty"}, "always")),
    el("td", {class: "mono"}, r.actions.map((a) =>
      el("div", {}, `${a.handler} ← ${a.instances.join(", ")}`)))), snap.note || "no rules");
  rows("handlers", snap.handlers || [], (h) => el("tr", {},
    el("td", {class: "mono"}, h.name), el("td", {}, h.adapter)), "none");
  rows("instances", snap.instances || [], (i) => el("tr", {},
    el("td", {class: "mono"}, i.name), el("td", {}, i.template)), "none");
}

async function poll() {
  if (!document.getElementById("pause").checked) {
    try {
      const response = await fetch("state", {cache: "no-store"});
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const s = await response.json();
      drawSummary(s);
      drawAdapters(s.adapters);
      drawDecisions(s.decisions);
      drawConfig(s.snapshot);
      text("meta", `updated ${clock(s.time)}`);
      document.getElementById("meta").className = "muted";
    } catch (err) {
      text("meta", `cannot reach the hub: ${err.message}`);
      document.getElementById("meta").className = "error";
    }
  }
  setTimeout(poll, 1000);
}

poll();
