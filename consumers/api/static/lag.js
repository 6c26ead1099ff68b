// Consumer-lag dashboard: polls /api/v1/lag every 2 s and shows, for a glance,
//  1. a headline per consumer group (status, total lag in messages and seconds, trend),
//  2. one uPlot chart of every group's total lag over time,
//  3. lag per lender (topics rolled up) for each group, next to the lender's freshness,
//  4. the partition table of each group as a drill-down.
// Groups are whatever the JSON has: no group name is known here. uPlot is served locally from
// /static/vendor/ (see its LICENSE there); the rest is plain browser JavaScript, no build step.
"use strict";

(function () {
  const POLL_MS = 2000;
  const CHART_HEIGHT = 320;
  const PALETTE = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
    "#db2777", "#65a30d", "#4f46e5", "#b45309",
  ];
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800];
  const SEVERITY = { OK: 0, ERROR: 1, WARN: 2, STALLED: 3, STOPPED: 4 };
  const state = { metric: "lag", last: null, rendered: false, chart: null, chartKey: "", colors: [], scale: "log" };
  const headlines = new Map();
  const drilldowns = new Map();

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function fmtNumber(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    return Number(value).toLocaleString("en-US", { maximumFractionDigits: 1 });
  }

  function fmtSeconds(value) {
    if (value === null || value === undefined) return "– s";
    if (value < 120) return `${fmtNumber(value)} s`;
    if (value < 7200) return `${fmtNumber(value / 60)} min`;
    return `${fmtNumber(value / 3600)} h`;
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    const pad = (n) => String(n).padStart(2, "0");
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function colorOf(names, name) {
    return PALETTE[names.indexOf(name) % PALETTE.length];
  }

  function swatch(color) {
    const node = el("span", { className: "swatch" });
    node.style.background = color;
    return node;
  }

  // --- 1. headline per group ------------------------------------------------------------------
  function trendText(trend) {
    if (!trend || trend.direction === "unknown") return "trend: too early";
    const arrow = { rising: "▲", falling: "▼", steady: "▶" }[trend.direction];
    const delta = trend.delta > 0 ? `+${fmtNumber(trend.delta)}` : fmtNumber(trend.delta);
    return `${arrow} ${trend.direction} ${delta} in ${fmtNumber(trend.span_seconds)} s`;
  }

  function renderHeadline(group, color) {
    let view = headlines.get(group.group);
    if (!view) {
      const badge = el("span", { className: "badge", id: `status-${group.group}`, "data-status": "ERROR" });
      const name = el("div", { className: "name" }, [
        el("span", {}, [swatch(color), el("b", { text: group.group })]), badge]);
      const big = el("div", { className: "big" });
      const facts = el("div", { className: "facts" });
      const node = el("article", { className: "headline", "data-group": group.group }, [name, big, facts]);
      document.getElementById("headlines").appendChild(node);
      view = { node, badge, big, facts, swatch: name.querySelector(".swatch") };
      headlines.set(group.group, view);
    }
    view.swatch.style.background = color;
    view.node.dataset.status = group.status;
    view.badge.textContent = group.status;
    view.badge.dataset.status = group.status;
    view.big.replaceChildren(document.createTextNode(fmtNumber(group.lag)),
      el("small", { text: " messages behind" }));
    view.big.dataset.lag = String(group.lag);
    const members = group.members === null ? "members unknown" : `${group.members} member(s)`;
    view.facts.replaceChildren(
      el("span", { text: `oldest unread ${fmtSeconds(group.lag_seconds)}` }),
      el("span", { className: "trend", text: trendText(group.trend),
        "data-direction": (group.trend || {}).direction || "unknown" }),
      el("span", { className: "muted", text: `${group.state} · ${members}` }),
    );
  }

  // --- 2. the chart ---------------------------------------------------------------------------
  function chartData(names, groups, metric) {
    const times = new Set();
    for (const name of names) for (const t of groups[name].history.t) times.add(t);
    const xs = [...times].sort((a, b) => a - b);
    const index = new Map(xs.map((t, i) => [t, i]));
    const columns = names.map((name) => {
      const column = new Array(xs.length).fill(null);
      const h = groups[name].history;
      h.t.forEach((t, i) => { column[index.get(t)] = h[metric][i]; });
      return column;
    });
    return [xs.map((t) => t / 1000), ...columns];
  }

  function chartWidth() {
    return Math.max(300, document.getElementById("lag-chart").clientWidth);
  }

  function hexRgb(hex) {
    return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  }

  // After each draw: what a person would see, written on the chart element for tests and
  // curious operators: the plot area's height and, per series, how many pixels of the plot
  // area carry that series' colour.
  function reportDrawn(u) {
    const node = document.getElementById("lag-chart");
    const ratio = window.devicePixelRatio || 1;
    const { left, top, width, height } = u.bbox;
    const pixels = width > 0 && height > 0
      ? u.ctx.getImageData(Math.round(left), Math.round(top), Math.round(width), Math.round(height)).data
      : new Uint8ClampedArray(0);
    const wanted = state.colors.map(hexRgb);
    const counts = wanted.map(() => 0);
    for (let i = 0; i < pixels.length; i += 4) {
      if (pixels[i + 3] < 200) continue;
      for (let k = 0; k < wanted.length; k++) {
        const [r, g, b] = wanted[k];
        if (Math.abs(pixels[i] - r) + Math.abs(pixels[i + 1] - g) + Math.abs(pixels[i + 2] - b) < 60) {
          counts[k]++;
          break;
        }
      }
    }
    const series = u.series.slice(1).map((s, k) => ({
      group: s.label, color: state.colors[k], shown: s.show, pixels: counts[k],
      points: u.data[k + 1].filter((v) => v !== null && v !== undefined).length,
      max: Math.max(0, ...u.data[k + 1].filter((v) => v !== null && v !== undefined)),
    }));
    node.dataset.plotHeight = String(Math.round(height / ratio));
    node.dataset.plotWidth = String(Math.round(width / ratio));
    node.dataset.canvasHeight = String(Math.round(u.ctx.canvas.getBoundingClientRect().height));
    node.dataset.series = JSON.stringify(series);
    node.dataset.drawn = String(Number(node.dataset.drawn || "0") + 1);
  }

  function decadeAbove(max) {
    return Math.pow(10, Math.ceil(Math.log10(Math.max(10, max * 1.05))));
  }

  function decadesOnly(u, splits) {
    return splits.map((v) => (v === 0 || v > 0 && Math.abs(Math.log10(v) % 1) < 1e-9 ? v : null));
  }

  function renderChart(names, groups) {
    const metric = state.metric;
    const data = chartData(names, groups, metric);
    const key = `${metric}|${state.scale}|${names.join("\n")}`;
    if (state.chart && state.chartKey === key) {
      state.chart.setData(data);
      return;
    }
    if (state.chart) state.chart.destroy();
    const unit = metric === "lag_seconds" ? (v) => fmtSeconds(v) : (v) => fmtNumber(v);
    const opts = {
      width: chartWidth(),
      height: CHART_HEIGHT,
      // asinh: linear near 0, logarithmic beyond, so a group 10 messages behind stays
      // visible next to one 10 000 behind, and 0 is drawable (a log scale cannot show it)
      scales: { x: { time: true }, y: state.scale === "log"
        ? { distr: 4, asinh: 1, range: (u, min, max) => [0, decadeAbove(max)] }
        : { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        // whole seconds at least, labelled as wall-clock time
        { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, space: 70, incrs: TIME_STEPS,
          values: (u, ticks) => ticks.map((t) => fmtTime(t * 1000)) },
        state.scale === "log"
          ? { stroke: "#6b7280", size: 70, values: (u, ticks) => ticks.map((v) => (v < 0 ? "" : unit(v))),
            grid: { stroke: "#eef0f3", filter: decadesOnly }, ticks: { show: false } }
          : { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, size: 70, values: (u, ticks) => ticks.map(unit) },
      ],
      series: [
        { value: (u, v) => (v === null ? "–" : fmtTime(v * 1000)) },
        ...names.map((name) => {
          const color = colorOf(names, name);
          return {
            label: name, stroke: color, width: 2.5, spanGaps: true,
            points: { show: false },
            value: (u, v) => (v === null || v === undefined ? "–" : unit(v)),
          };
        }),
      ],
      legend: { live: false },
      hooks: { draw: [reportDrawn] },
    };
    const node = document.getElementById("lag-chart");
    node.replaceChildren();
    state.colors = names.map((name) => colorOf(names, name));
    state.chart = new uPlot(opts, data, node);
    state.chartKey = key;
    document.getElementById("chart-title").textContent =
      `Total lag per consumer group · ${metric === "lag_seconds" ? "seconds behind (oldest unread message)" : "messages behind"}` +
      (state.scale === "log" ? " · log scale" : "");
  }

  // --- 3. lag per lender ----------------------------------------------------------------------
  function renderLenders(names, groups, freshness) {
    const rows = new Map(); // name -> {lender, name, byGroup: {group: row}}
    for (const name of names) {
      for (const row of groups[name].lenders || []) {
        const entry = rows.get(row.name) || { lender: row.lender, name: row.name, byGroup: {}, total: 0 };
        entry.byGroup[name] = row;
        entry.total += row.lag;
        rows.set(row.name, entry);
      }
    }
    for (const f of freshness) {
      if (!rows.has(f.lender)) rows.set(f.lender, { lender: f.lender, name: f.lender, byGroup: {}, total: 0 });
    }
    const fresh = new Map(freshness.map((f) => [f.lender, f.seconds]));
    const ordered = [...rows.values()].sort((a, b) =>
      (a.lender === null) - (b.lender === null) || b.total - a.total || a.name.localeCompare(b.name));
    const maxLag = Math.max(1, ...ordered.flatMap((r) => Object.values(r.byGroup).map((c) => c.lag)));

    const head = el("tr", {}, [
      el("th", { text: "lender / topic" }),
      ...names.map((name) => el("th", {}, [swatch(colorOf(names, name)), document.createTextNode(name)])),
      el("th", { className: "num", text: "newest event" }),
    ]);
    document.querySelector("#lenders thead").replaceChildren(head);
    const body = ordered.map((r) => {
      const cells = names.map((name) => {
        const c = r.byGroup[name];
        if (!c) return el("td", { className: "cell muted", text: "–" });
        const bar = el("div", { className: "bar" }, [el("span")]);
        bar.firstChild.style.width = `${Math.round((100 * c.lag) / maxLag)}%`;
        bar.firstChild.style.background = colorOf(names, name);
        return el("td", { className: "cell", "data-status": c.status, "data-group": name,
          title: `${c.topics.join(", ")} · ${c.partitions} partition(s) · ${c.status}` }, [
          el("span", { className: "num", text: `${fmtNumber(c.lag)} msg · ${fmtSeconds(c.lag_seconds)}` }),
          bar,
        ]);
      });
      const seconds = fresh.has(r.name) ? fresh.get(r.name) : undefined;
      const label = r.lender === null
        ? el("td", { className: "mono", text: `${r.name} (internal)` })
        : el("td", { className: "mono" }, [el("b", { text: r.name })]);
      return el("tr", { className: r.lender === null ? "internal" : "", "data-lender": r.name }, [
        label, ...cells,
        el("td", { className: "num", text: seconds === undefined ? "" : seconds === null
          ? "no events" : `${fmtSeconds(seconds)} ago` }),
      ]);
    });
    if (body.length === 0) {
      body.push(el("tr", {}, [el("td", { className: "muted", text: "no lender topics yet" })]));
    }
    document.querySelector("#lenders tbody").replaceChildren(...body);
  }

  // --- 4. drill-down --------------------------------------------------------------------------
  function renderDrilldown(group, color) {
    let view = drilldowns.get(group.group);
    if (!view) {
      const badge = el("span", { className: "badge", "data-status": "ERROR" });
      const info = el("span", { className: "muted" });
      const tbody = el("tbody");
      const table = el("table", { id: `partitions-${group.group}` }, [
        el("thead", {}, [el("tr", {}, ["topic", "partition", "committed", "end", "lag",
          "lag seconds", "status"].map((h, i) => el("th", { text: h, className: i > 0 && i < 6 ? "num" : "" })))]),
        tbody,
      ]);
      const summary = el("summary", {}, [swatch(color), el("b", { text: group.group }), badge, info]);
      const node = el("details", { "data-group": group.group }, [summary, table]);
      document.getElementById("drilldown").appendChild(node);
      view = { node, badge, info, tbody };
      drilldowns.set(group.group, view);
    }
    view.badge.textContent = group.status;
    view.badge.dataset.status = group.status;
    view.info.textContent = `${group.partitions.length} partition(s) · total lag ${fmtNumber(group.lag)}`;
    const partitions = [...group.partitions].sort((a, b) =>
      SEVERITY[b.status] - SEVERITY[a.status] || b.lag - a.lag ||
      a.topic.localeCompare(b.topic) || a.partition - b.partition);
    view.tbody.replaceChildren(...partitions.map((p) => el("tr", { "data-status": p.status }, [
      el("td", { className: "mono", text: p.topic }),
      el("td", { className: "num", text: String(p.partition) }),
      el("td", { className: "num", text: fmtNumber(p.committed) }),
      el("td", { className: "num", text: fmtNumber(p.end) }),
      el("td", { className: "num", text: fmtNumber(p.lag) }),
      el("td", { className: "num", text: fmtNumber(p.lag_seconds) }),
      el("td", {}, [el("span", { className: "badge", text: p.status, "data-status": p.status })]),
    ])));
  }

  function forget(views, names) {
    for (const [name, view] of views) {
      if (!names.includes(name)) { view.node.remove(); views.delete(name); }
    }
  }

  function render(data) {
    state.last = data;
    const error = document.getElementById("error");
    error.hidden = !data.error;
    error.textContent = data.error ? `Last sample failed: ${data.error}` : "";
    document.getElementById("sampled-at").textContent = data.sampled_at
      ? `sampled ${fmtTime(data.sampled_at)} · every ${data.poll_seconds} s`
      : "waiting for the first sample…";
    const names = Object.keys(data.groups).sort();
    forget(headlines, names);
    forget(drilldowns, names);
    names.forEach((name) => {
      renderHeadline(data.groups[name], colorOf(names, name));
      renderDrilldown(data.groups[name], colorOf(names, name));
    });
    document.getElementById("no-groups").hidden = !data.ready || names.length > 0;
    renderChart(names, data.groups);
    renderLenders(names, data.groups, data.freshness || []);
    if (data.ready && names.length > 0 && !state.rendered) {
      state.rendered = true;
      document.body.dataset.ready = "1";
    }
  }

  async function poll() {
    try {
      const response = await fetch("/api/v1/lag", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
    } catch (err) {
      const error = document.getElementById("error");
      error.hidden = false;
      error.textContent = `Cannot show the lag: ${err.message}`;
    } finally {
      window.setTimeout(poll, POLL_MS);
    }
  }

  document.querySelectorAll("button.toggle").forEach((button) => {
    button.addEventListener("click", () => {
      const kind = button.dataset.metric ? "metric" : "scale";
      state[kind] = button.dataset[kind];
      document.querySelectorAll(`button.toggle[data-${kind}]`).forEach(
        (b) => b.classList.toggle("active", b === button));
      if (state.last) render(state.last);
    });
  });
  window.addEventListener("resize", () => {
    if (state.chart) state.chart.setSize({ width: chartWidth(), height: CHART_HEIGHT });
  });
  poll();
})();
