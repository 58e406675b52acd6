// The built-in page's live part: each second it asks this process for its figures
// (/_nano/stats.json) and its newest traces (/_nano/traces.json) and draws them.
// Everything it shows goes in as text, never as markup.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const limit = document.body.dataset.traces || "200";
  const opened = new Set(); // the traces a reader opened stay open across redraws
  let newest = null; // the trace drawn first, to redraw only when there is another

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const ms = (value) => (value === null || value === undefined ? "–" : value.toFixed(value < 10 ? 2 : 1));
  const rate = (value) => value.toFixed(value < 10 ? 2 : 1);

  class SignedOut extends Error {}

  async function get(path) {
    const answer = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    if (answer.status === 401) throw new SignedOut();
    if (!answer.ok) throw new Error(`${path} answered ${answer.status}`);
    return answer.json();
  }

  function drawStats(stats) {
    const note = $("metrics-note");
    const rows = $("contract-table").tBodies[0];
    const remotes = $("remote-table").tBodies[0];
    if (!stats.metrics) {
      note.textContent = "Metrics are off in this process (start it with NANO_METRICS=1): the services and the graph are from the build.";
      note.className = "note off";
      rows.replaceChildren();
      remotes.replaceChildren();
      document.body.dataset.metrics = "off";
      return;
    }
    document.body.dataset.metrics = "on";
    const process = stats.process || {};
    note.className = "note";
    note.textContent = `process ${process.name || ""} · pid ${process.pid} · build ${process.build || ""}`;
    const lines = stats.contracts.map((c) => {
      const tr = el("tr");
      tr.dataset.contract = `${c.service}.${c.contract}`;
      const errors = Object.entries(c.errors).map(([kind, n]) => `${kind} ${n}`).join(", ");
      tr.append(
        el("td", "", `${c.service}.${c.contract}`),
        el("td", "num calls", String(c.calls)),
        el("td", "num rate", rate(c.rate)),
        el("td", "num error-rate" + (c.error_rate > 0 ? " errors" : ""), rate(c.error_rate)),
        el("td", errors ? "errors" : "", errors || "–"),
        el("td", "num", String(c.in_flight)),
        el("td", "num p50", ms(c.p50_ms)),
        el("td", "num p90", ms(c.p90_ms)),
        el("td", "num p99", ms(c.p99_ms)),
      );
      return tr;
    });
    if (!lines.length) {
      const tr = el("tr");
      const td = el("td", "empty", "no calls yet");
      td.colSpan = 9;
      tr.append(td);
      lines.push(tr);
    }
    rows.replaceChildren(...lines);
    $("remote-table").hidden = !stats.remotes.length;
    remotes.replaceChildren(
      ...stats.remotes.map((r) => {
        const tr = el("tr");
        tr.dataset.remote = r.service;
        tr.append(
          el("td", "", r.service),
          el("td", "num", String(r.replicas)),
          el("td", "num", String(r.ready)),
          el("td", r.state === "ready" ? "" : "errors", r.state),
        );
        return tr;
      }),
    );
  }

  // the spans of one trace in call order: each after its parent, children indented
  function ordered(spans) {
    const ids = new Set(spans.map((s) => s.span_id));
    const children = new Map();
    for (const span of spans) {
      const parent = ids.has(span.parent_id) ? span.parent_id : null; // its parent may be in another process
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(span);
    }
    const out = [];
    const visit = (parent, depth) => {
      const here = (children.get(parent) || []).sort((a, b) => a.start_ns - b.start_ns);
      for (const span of here) {
        out.push([span, depth]);
        visit(span.span_id, depth + 1);
      }
    };
    visit(null, 0);
    return out;
  }

  function waterfall(trace) {
    const box = el("div", "waterfall");
    const start = Math.min(...trace.spans.map((s) => s.start_ns));
    const end = Math.max(...trace.spans.map((s) => s.end_ns));
    const total = Math.max(end - start, 1);
    for (const [span, depth] of ordered(trace.spans)) {
      const row = el("div", "span-row");
      row.dataset.span = span.span_id;
      const name = el("span", "span-name", `${span.name} · ${span.kind} · ${span.process}`);
      name.style.paddingLeft = `${depth * 14}px`;
      name.title = `${span.name} (${span.placement}, ${span.outcome}) in ${span.process}`;
      const lane = el("div", "lane");
      const bar = el("div", `bar kind-${span.kind}` + (span.outcome === "ok" ? "" : " failed"));
      bar.style.left = `${((span.start_ns - start) / total) * 100}%`;
      bar.style.width = `${((span.end_ns - span.start_ns) / total) * 100}%`;
      lane.append(bar);
      row.append(name, lane, el("span", "span-ms", `${ms((span.end_ns - span.start_ns) / 1e6)} ms`));
      box.append(row);
    }
    return box;
  }

  function drawTraces(traces) {
    const list = $("trace-list");
    const first = traces.length ? traces[0].trace_id : null;
    if (first === newest && list.childElementCount) return;
    newest = first;
    if (!traces.length) {
      list.replaceChildren(el("p", "empty", "no traces yet: make a call"));
      return;
    }
    list.replaceChildren(
      ...traces.map((trace, index) => {
        const item = el("details", "trace");
        item.dataset.trace = trace.trace_id;
        item.open = opened.has(trace.trace_id) || (index === 0 && opened.size === 0);
        item.addEventListener("toggle", () => {
          if (item.open) opened.add(trace.trace_id);
          else opened.delete(trace.trace_id);
        });
        const summary = el("summary");
        const outcome = el("span", trace.outcome === "ok" ? "outcome-ok" : "outcome-bad", trace.outcome);
        const when = new Date(trace.start_ns / 1e6).toLocaleTimeString();
        summary.append(
          `${when} · ${trace.root} · ${ms(trace.duration_ms)} ms · `,
          outcome,
          ` · ${trace.spans.length} span${trace.spans.length === 1 ? "" : "s"}`,
        );
        item.append(summary, waterfall(trace));
        return item;
      }),
    );
  }

  async function tick() {
    const status = $("status");
    try {
      const stats = await get("/_nano/stats.json");
      drawStats(stats);
      drawTraces(stats.metrics ? await get(`/_nano/traces.json?limit=${limit}`) : []);
      status.textContent = `live · ${new Date().toLocaleTimeString()}`;
      status.className = "status";
      document.body.dataset.ready = "true";
    } catch (error) {
      status.className = "status off";
      status.textContent =
        error instanceof SignedOut
          ? "signed out (the process restarted?): reload to sign in again"
          : `cannot reach this process: ${error.message}`;
    }
    setTimeout(tick, 1000);
  }

  tick();
})();
