"""Results -> ``bench/results/<ts>.json`` + ``<ts>.md`` with PNG plots, and a summary table.

Every figure comes from the run's own JSON (``r``): e2e runs from :mod:`bench.e2e`, floors and
light peers from :mod:`bench.floors`, the full Quix Streams peer from :mod:`bench.quix_peer`,
freshness from :mod:`bench.freshness`, and so on; the peers table sets like against like
(the registry against Quix Streams doing the same job; light Faust against light Quix).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        v = f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"
    elif isinstance(v, int):
        v = f"{v:,}"
    return f"{v}{unit}"


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, value, target, verdict) rows."""
    rows: list[tuple[str, str, str, str]] = []

    def add(name: str, value: Any, unit: str, target: str, ok: bool | None) -> None:
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        rows.append((name, _fmt(value, unit), target, verdict))

    one, two = r.get("e2e_1"), r.get("e2e_2")
    floors = r.get("floors", {})
    faust = floors.get("faust", {}).get("events_per_s")
    quix = (r.get("quix_full") or {}).get("events_per_s")
    if one:
        e = one["events_per_s"]
        add("e2e, 1 worker: lender events/s", e, "", ">= 30,000", e >= 30_000)
        add("e2e, 1 worker: admitted events/s", one["admitted_per_s"], "", "", None)
        add("e2e, 1 worker: ledger rows queryable/s", one["rows_queryable_per_s"], "", "", None)
        add("e2e, 1 worker: incl. start-up, events/s", one["events_per_s_incl_startup"], "",
            "", None)
        if faust:
            add("e2e / bare-Faust floor", e / faust, "x", ">= 0.7x", e / faust >= 0.7)
        if quix:
            add("e2e / Quix Streams doing the same job", e / quix, "x", "> 1x", e > quix)
    if two:
        add("e2e, 2 workers: lender events/s", two["events_per_s"], "", "", None)
    full = r.get("quix_full")
    if full:
        add("peer: Quix Streams doing the registry's job, events/s",
            full.get("events_per_s", full.get("error")), "", "", None)
    for name, key in (("floor: bare Faust agent", "faust"), ("floor: aiokafka getmany+decode",
                      "aiokafka"), ("light peer: Quix Streams windowed count", "quix"),
                      ("light peer: Faust windowed count (the same job)", "faust-light")):
        f = floors.get(key)
        if f is not None:
            add(f"{name}, events/s", f.get("events_per_s", f.get("error")), "", "", None)
    for key, limit in (("freshness_1k", 1.0), ("freshness", 2.0)):
        fr = r.get(key)
        if not fr:
            continue
        where = "" if key == "freshness_1k" else " (half e2e)"
        for q in ("p50", "p95", "p99"):
            target = f"<= {limit:g} s" if q == "p99" else ""
            ok = fr.get(q, 99) <= limit if q == "p99" else None
            add(f"freshness {q} at {fr['rate']:,.0f}/s{where} (append -> queryable)",
                fr.get(q), " s", target, ok)
        if fr.get("p50_first_third") is not None:
            add(f"freshness p50 at {fr['rate']:,.0f}/s, first -> last third",
                f"{fr['p50_first_third']:.2f} -> {fr['p50_last_third']:.2f}", " s", "", None)
    qy = r.get("query")
    if qy:
        add(f"risk API p50 ({qy['rows']:,} rows, fresh parts)", qy["p50"], " ms", "", None)
        add(f"risk API p99 ({qy['rows']:,} rows, fresh parts)", qy["p99"], " ms", "<= 20 ms",
            qy["p99"] <= 20)
        for label, part in (("fresh parts", qy), ("ingesting", qy.get("ingesting") or {})):
            if part.get("p99.9") is not None:
                add(f"risk API p95 / p99.9 ({label})", f"{part['p95']:.1f} / {part['p99.9']:.1f}",
                    " ms", "", None)
                add(f"risk API answers/s at {qy['connections']} connections ({label})",
                    part["answers_per_s"], "", ">= 300", part["answers_per_s"] >= 300)
                add(f"risk API server CPU per answer ({label})",
                    part.get("server_cpu_ms_per_answer"), " ms", "", None)
                add(f"inquiry rows == answers sent ({label})",
                    f"{part['inquiry_rows']} == {part['answers_sent']}", "", "equal",
                    part["inquiry_rows"] == part["answers_sent"])
        if (qy.get("ingesting") or {}).get("p99") is not None:
            add(f"risk API p99 (ingesting {qy['ingesting']['ingest_rate']:,.0f} rows/s)",
                qy["ingesting"]["p99"], " ms", "<= 20 ms", qy["ingesting"]["p99"] <= 20)
        merged = qy.get("merged") or {}
        if merged.get("p99") is not None:
            add("risk API p50 (parts merged)", merged["p50"], " ms", "", None)
            add("risk API p99 (parts merged)", merged["p99"], " ms", "<= 20 ms",
                merged["p99"] <= 20)
    mem = r.get("memory")
    if mem:
        scale = mem["borrowers"]
        at_1m = mem["state_mib"] * 1_000_000 / scale + (one or {}).get("baseline_rss_mib", 0)
        add(f"aggregation state, {scale:,} borrowers", mem["state_mib"], " MiB", "", None)
        add("worker RSS at 1M borrowers (est.)", at_1m, " MiB", "<= 2048 MiB", at_1m <= 2048)
    return rows


def peers_md(r: dict[str, Any]) -> list[str]:
    """Like against like: the pipeline ratio and the framework ratio."""
    one, full = r.get("e2e_1") or {}, r.get("quix_full") or {}
    floors = r.get("floors", {})
    pairs = [("pipeline: the registry's job (decode, validate, pseudonym, Redis dedup + "
              "consent, repartition, daily + hourly windows, ClickHouse)",
              "registry worker, e2e", one.get("events_per_s"),
              "Quix Streams full peer", full.get("events_per_s")),
             ("framework: decode + daily windowed count per raw id and lender topic",
              "Faust light peer", (floors.get("faust-light") or {}).get("events_per_s"),
              "Quix Streams light peer", (floors.get("quix") or {}).get("events_per_s"))]
    md = ["## Peers: like against like", "",
          "| job | ours | events/s | Quix Streams | events/s | ours / Quix |",
          "|---|---|---:|---|---:|---:|"]
    rows = 0
    for job, ours, a, peer, b in pairs:
        if a is None and b is None:
            continue
        rows += 1
        ratio = f"{a / b:.2f}x" if a and b else "n/a"
        md.append(f"| {job} | {ours} | {_fmt(a)} | {peer} | {_fmt(b)} | {ratio} |")
    if not rows:
        return []
    if full.get("admitted") is not None:
        md += ["", f"Same input, same outcome? Admitted events: registry "
               f"{_fmt(one.get('admitted'))}, Quix full peer {full['admitted']:,}; bucket rows "
               f"(daily + hourly, FINAL): registry {_fmt(one.get('bucket_rows'))}, Quix full "
               f"peer {_fmt(full.get('bucket_rows'))} (Quix windows drop events later than "
               f"the grace, the registry recomputes those buckets). Quix peer rejections: "
               f"{full.get('rejected')}."]
    return [*md, ""]


def table_md(rows: list[tuple[str, str, str, str]]) -> str:
    out = ["| measure | value | target | verdict |", "|---|---:|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)


def table_text(rows: list[tuple[str, str, str, str]]) -> str:
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(f"  {a:<{w[0]}}  {b:>{w[1]}}  {c:<{w[2]}}  {d}" for a, b, c, d in rows)


def plots(r: dict[str, Any], out: Path, ts: str) -> list[str]:
    names = []
    fig, ax = plt.subplots(figsize=(8, 4))
    for key, label in (("e2e_1", "1 worker"), ("e2e_2", "2 workers")):
        run = r.get(key)
        if run:
            t = [s[0] for s in run["samples"]]
            ax.plot(t, [s[1] + s[2] for s in run["samples"]], label=f"{label}: stream+sink")
    ax.set_xlabel("seconds since worker start")
    ax.set_ylabel("remaining (consumer lag, records)")
    ax.set_title("End-to-end drain of the backlog")
    ax.legend()
    names.append(_save(fig, out / f"{ts}-e2e-lag.png"))
    runs = [fr for fr in (r.get("freshness_1k"), r.get("freshness"))
            if fr and fr.get("latencies")]
    if runs:
        fig, ax = plt.subplots(figsize=(8, 4))
        for fr in runs:
            lat = sorted(fr["latencies"])
            ax.plot(lat, [i / len(lat) for i in range(len(lat))],
                    label=f"{fr['rate']:,.0f} events/s")
        ax.set_xlabel("broker append -> queryable in ClickHouse (s)")
        ax.set_ylabel("fraction of events")
        ax.set_title("Freshness, pre-encoded replay at a fixed rate")
        ax.legend()
        names.append(_save(fig, out / f"{ts}-freshness.png"))
    bars = {}
    if r.get("e2e_1"):
        bars["registry (1 worker)"] = r["e2e_1"]["events_per_s"]
    if r.get("e2e_2"):
        bars["registry (2 workers)"] = r["e2e_2"]["events_per_s"]
    if (r.get("quix_full") or {}).get("events_per_s"):
        bars["quix full peer"] = r["quix_full"]["events_per_s"]
    for k, v in r.get("floors", {}).items():
        if "events_per_s" in v:
            bars[{"quix": "quix light peer", "faust-light": "faust light peer"}.get(k, k)] = (
                v["events_per_s"])
    if bars:
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.barh(list(bars), list(bars.values()))
        ax.set_xlabel("events/s")
        ax.set_title("Throughput: registry vs floors and peer")
        fig.tight_layout()
        names.append(_save(fig, out / f"{ts}-throughput.png"))
    st = r.get("stages")
    if st:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        us = st["us_per_event"]
        ax.barh(list(us), list(us.values()))
        ax.invert_yaxis()
        ax.set_xlabel("µs per event")
        ax.set_title("Per-stage cost, in-process")
        fig.tight_layout()
        names.append(_save(fig, out / f"{ts}-stages.png"))
    return names


def _save(fig: Any, path: Path) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _headline(r: dict[str, Any]) -> dict[str, float]:
    """The numbers worth comparing between two runs (absent ones are left out)."""
    out: dict[str, float] = {}
    for key, label in (("e2e_1", "e2e 1 worker, events/s"), ("e2e_2", "e2e 2 workers, events/s")):
        if r.get(key):
            out[label] = r[key]["events_per_s"]
    if (r.get("freshness") or {}).get("p99") is not None:
        out["freshness p99, s"] = r["freshness"]["p99"]
    if (r.get("freshness_1k") or {}).get("p99") is not None:
        out["freshness p99 at 1,000/s, s"] = r["freshness_1k"]["p99"]
    if (r.get("quix_full") or {}).get("events_per_s"):
        out["Quix full peer, events/s"] = r["quix_full"]["events_per_s"]
    if (r.get("query") or {}).get("p99") is not None:
        out["risk query p99, ms"] = r["query"]["p99"]
    for stage, us in ((r.get("stages") or {}).get("us_per_event") or {}).items():
        # "dedup (Redis SET NX GET)" and "dedup (Redis script: ...)" are the same stage
        out[f"stage µs/event: {re.sub(r'[(]Redis[^)]*[)]', '(Redis)', stage)}"] = us
    return out


def before_after_md(r: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """A before/after table against an earlier run (``--baseline``), measures in both only."""
    now, then = _headline(r), _headline(base)
    common = [k for k in now if k in then]
    if not common:
        return []
    md = [f"## Before / after (baseline: run {base.get('timestamp')})", "",
          "| measure | before | after | change |", "|---|---:|---:|---:|"]
    for k in common:
        change = f"{(now[k] / then[k] - 1) * 100:+.0f}%" if then[k] else "n/a"
        md.append(f"| {k} | {_fmt(then[k])} | {_fmt(now[k])} | {change} |")
    return [*md, ""]


def write(r: dict[str, Any], out: Path, ts: str, base: dict[str, Any] | None = None) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{ts}.json").write_text(json.dumps(r, indent=1, default=str))
    rows = summary_rows(r)
    pngs = plots(r, out, ts)
    md = [f"# Benchmark {ts}", "", r.get("setup", ""), "", table_md(rows), "", *peers_md(r)]
    st = r.get("stages")
    if st:
        md += ["## Per-stage cost (µs/event)", "", "| stage | µs/event |", "|---|---:|"]
        md += [f"| {k} | {v:.2f} |" for k, v in st["us_per_event"].items()]
        total = sum(v for k, v in st["us_per_event"].items() if "per row" not in k)
        md += [f"| **sum** | **{total:.1f}** (= {1e6 / total:,.0f} events/s on one core) |", ""]
    prof = r.get("profile")
    if prof and prof.get("samples"):
        md += ["## Worker profile (py-spy while draining)", "",
               f"{prof['samples']:,} samples; the worker's main thread was busy "
               f"{100 * (prof['busy_share'] or 0):.0f}% of the window. Collapsed stacks: "
               f"`{prof['file']}` (load into any flame-graph viewer).", "",
               "| self: where the CPU is | share | inclusive: what it is for | share |",
               "|---|---:|---|---:|"]
        for (fs, ps), (fi, pi) in zip(prof["self"], prof["inclusive"], strict=False):
            md.append(f"| `{fs}` | {ps:.1f}% | `{fi}` | {pi:.1f}% |")
        md.append("")
    if base:
        md += before_after_md(r, base)
    if r.get("notes"):
        md += ["## Notes", "", *[f"- {n}" for n in r["notes"]], ""]
    md += [f"![{p}]({p})" for p in pngs]
    (out / f"{ts}.md").write_text("\n".join(md) + "\n")
    return table_text(rows)
