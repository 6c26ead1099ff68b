// Consumer-lag dashboard: polls /api/v1/lag every 2 s and draws one line chart per group
// (one line per topic partition) on a <canvas>, with status badges and a partition table.
// Plain browser JavaScript: no framework, no CDN, no build step.
"use strict";

(function () {
  const POLL_MS = 2000;
  const PALETTE = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
    "#db2777", "#65a30d", "#4f46e5", "#b45309", "#0f766e", "#7c3aed",
  ];
  const state = { metric: "lag", last: null, rendered: false };
  const groupViews = new Map();

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

  function fmtTime(ms) {
    const d = new Date(ms);
    const pad = (n) => String(n).padStart(2, "0");
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function niceStep(range, ticks) {
    const raw = range / Math.max(1, ticks);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const unit = raw / power;
    const nice = unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10;
    return nice * power;
  }

  function seriesKey(p) {
    return `${p.topic}[${p.partition}]`;
  }

  // Draws axes, grid, labels, one line per partition and a legend. Pure canvas 2D.
  function drawChart(canvas, partitions, metric) {
    const ratio = window.devicePixelRatio || 1;
    const cssWidth = canvas.clientWidth || 800;
    const cssHeight = canvas.clientHeight || 260;
    if (canvas.width !== Math.round(cssWidth * ratio)) canvas.width = Math.round(cssWidth * ratio);
    if (canvas.height !== Math.round(cssHeight * ratio)) canvas.height = Math.round(cssHeight * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, cssWidth, cssHeight);

    const legendRows = Math.ceil(partitions.length / 4);
    const pad = { left: 64, right: 16, top: 12, bottom: 28 + legendRows * 18 };
    const width = cssWidth - pad.left - pad.right;
    const height = cssHeight - pad.top - pad.bottom;

    let tMin = Infinity, tMax = -Infinity, yMax = 0, points = 0;
    for (const p of partitions) {
      const h = p.history;
      for (let i = 0; i < h.t.length; i++) {
        const y = h[metric][i];
        if (y === null || y === undefined) continue;
        tMin = Math.min(tMin, h.t[i]);
        tMax = Math.max(tMax, h.t[i]);
        yMax = Math.max(yMax, y);
        points++;
      }
    }
    canvas.dataset.points = String(points);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#6b7280";
    if (points === 0) {
      ctx.fillText("no samples yet", pad.left + 8, pad.top + 16);
      return;
    }
    if (tMax === tMin) tMin = tMax - 60000;
    const step = niceStep(yMax > 0 ? yMax : 1, 4);
    const yTop = Math.max(step, Math.ceil((yMax || 1) / step) * step);
    const x = (t) => pad.left + ((t - tMin) / (tMax - tMin)) * width;
    const y = (v) => pad.top + height - (v / yTop) * height;

    // grid + y labels
    ctx.strokeStyle = "#e3e6eb";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let v = 0; v <= yTop + step / 2; v += step) {
      ctx.beginPath();
      ctx.moveTo(pad.left, Math.round(y(v)) + 0.5);
      ctx.lineTo(pad.left + width, Math.round(y(v)) + 0.5);
      ctx.stroke();
      ctx.fillText(fmtNumber(v) + (metric === "lag_seconds" ? " s" : ""), pad.left - 6, y(v));
    }
    // x labels
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const xTicks = Math.max(2, Math.floor(width / 110));
    for (let i = 0; i <= xTicks; i++) {
      const t = tMin + ((tMax - tMin) * i) / xTicks;
      ctx.textAlign = i === 0 ? "left" : i === xTicks ? "right" : "center";
      ctx.fillText(fmtTime(t), x(t), pad.top + height + 6);
    }
    // axes
    ctx.strokeStyle = "#9aa3b2";
    ctx.beginPath();
    ctx.moveTo(pad.left + 0.5, pad.top);
    ctx.lineTo(pad.left + 0.5, pad.top + height + 0.5);
    ctx.lineTo(pad.left + width, pad.top + height + 0.5);
    ctx.stroke();

    // one line per partition
    partitions.forEach((p, index) => {
      const h = p.history;
      ctx.strokeStyle = PALETTE[index % PALETTE.length];
      ctx.lineWidth = 1.75;
      ctx.beginPath();
      let pen = false;
      for (let i = 0; i < h.t.length; i++) {
        const v = h[metric][i];
        if (v === null || v === undefined) { pen = false; continue; }
        if (pen) ctx.lineTo(x(h.t[i]), y(v));
        else ctx.moveTo(x(h.t[i]), y(v));
        pen = true;
      }
      ctx.stroke();
    });

    // legend
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    const colWidth = width / 4;
    partitions.forEach((p, index) => {
      const lx = pad.left + (index % 4) * colWidth;
      const ly = pad.top + height + 30 + Math.floor(index / 4) * 18;
      ctx.fillStyle = PALETTE[index % PALETTE.length];
      ctx.fillRect(lx, ly - 5, 10, 10);
      ctx.fillStyle = "#1d2330";
      ctx.fillText(seriesKey(p), lx + 14, ly, colWidth - 18);
    });
  }

  function groupView(name) {
    let view = groupViews.get(name);
    if (view) return view;
    const badge = el("span", { className: "badge", id: `status-${name}`, "data-status": "ERROR" });
    const title = el("h2", { text: name });
    const info = el("span", { className: "muted" });
    const canvas = el("canvas", { className: "chart", id: `lag-chart-${name}`, "data-group": name });
    const tbody = el("tbody");
    const table = el("table", { id: `partitions-${name}` }, [
      el("thead", {}, [el("tr", {}, ["topic", "partition", "committed", "end", "lag",
        "lag seconds", "status"].map((h, i) => el("th", { text: h, className: i > 0 && i < 6 ? "num" : "" })))]),
      tbody,
    ]);
    const section = el("article", { className: "group", "data-group": name }, [
      el("div", { className: "group-head" }, [title, badge, info]),
      canvas,
      table,
    ]);
    document.getElementById("groups").appendChild(section);
    view = { section, badge, info, canvas, tbody, partitions: [] };
    groupViews.set(name, view);
    return view;
  }

  function renderGroup(group) {
    const view = groupView(group.group);
    view.badge.textContent = group.status;
    view.badge.dataset.status = group.status;
    view.section.dataset.status = group.status;
    const members = group.members === null ? "members unknown" : `${group.members} member(s)`;
    view.info.textContent = `${group.state} · ${members} · total lag ${fmtNumber(group.lag)}`;
    view.partitions = group.partitions;
    const rows = group.partitions.map((p, index) => {
      const swatch = el("span", { className: "swatch" });
      swatch.style.background = PALETTE[index % PALETTE.length];
      const statusBadge = el("span", { className: "badge", text: p.status, "data-status": p.status });
      return el("tr", { "data-status": p.status }, [
        el("td", { className: "mono" }, [swatch, document.createTextNode(p.topic)]),
        el("td", { className: "num", text: String(p.partition) }),
        el("td", { className: "num", text: fmtNumber(p.committed) }),
        el("td", { className: "num", text: fmtNumber(p.end) }),
        el("td", { className: "num", text: fmtNumber(p.lag) }),
        el("td", { className: "num", text: fmtNumber(p.lag_seconds) }),
        el("td", {}, [statusBadge]),
      ]);
    });
    view.tbody.replaceChildren(...rows);
    drawChart(view.canvas, view.partitions, state.metric);
  }

  function renderFreshness(freshness) {
    const tbody = document.querySelector("#freshness tbody");
    const rows = freshness.map((f) => el("tr", { "data-lender": f.lender }, [
      el("td", { className: "mono", text: f.lender }),
      el("td", { className: "num", text: f.seconds === null ? "no events" : fmtNumber(f.seconds) }),
    ]));
    if (rows.length === 0) {
      rows.push(el("tr", {}, [el("td", { className: "muted", text: "no lender topics yet", colSpan: 2 })]));
    }
    tbody.replaceChildren(...rows);
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
    for (const [name, view] of groupViews) {
      if (!data.groups[name]) { view.section.remove(); groupViews.delete(name); }
    }
    names.forEach((name) => renderGroup(data.groups[name]));
    document.getElementById("no-groups").hidden = !data.ready || names.length > 0;
    renderFreshness(data.freshness || []);
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
      error.textContent = `Cannot reach the lag API: ${err.message}`;
    } finally {
      window.setTimeout(poll, POLL_MS);
    }
  }

  document.querySelectorAll("button.toggle").forEach((button) => {
    button.addEventListener("click", () => {
      state.metric = button.dataset.metric;
      document.querySelectorAll("button.toggle").forEach((b) => b.classList.toggle("active", b === button));
      for (const view of groupViews.values()) drawChart(view.canvas, view.partitions, state.metric);
    });
  });
  window.addEventListener("resize", () => {
    for (const view of groupViews.values()) drawChart(view.canvas, view.partitions, state.metric);
  });
  poll();
})();
