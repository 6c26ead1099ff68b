"""``make bench``: the whole benchmark suite on the local real stack (< 15 min; --quick ~3).

Order: start a KRaft broker + Redis on free ports (``tests/services.local_services``) ->
publish the backlog twice (two namespaces, same events) -> 1 worker drains namespace A
(py-spy profiles it) -> freshness against that worker at ~50% of its rate -> 2 workers drain
namespace B -> floors and the Quix peer on namespace A's lender topics -> per-stage costs ->
memory -> risk-API latency. Results: ``bench/results/<ts>.{json,md}`` + PNGs.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import QUIX_PYTHON, RESULTS, e2e, freshness, query, report, run_json, use_test_helpers
from streams.settings import Settings

use_test_helpers()
from services import free_port, local_services, settings_env  # noqa: E402

TITLE = re.compile(r"<title>(.+?) \((?:[^()]*:\d+)\) \(([\d,]+) samples?, ([\d.]+)%\)</title>")


def deployment(bootstrap: str, redis_url: str, name: str, workdir: Path) -> Settings:
    return Settings(kafka_bootstrap=bootstrap, redis_url=redis_url, clickhouse_url="",
                    clickhouse_database="bench", kafka_namespace=f"{name}.",
                    registry_app_id=name, registry_data_dir=workdir / name,
                    api_port=free_port(), registry_partitions=6)


def profile_top(svg: Path, n: int = 14) -> list[tuple[str, float]]:
    """Inclusive share per function from py-spy's flame graph (largest frame per name)."""
    if not svg.exists():
        return []
    best: dict[str, float] = {}
    for name, _, share in TITLE.findall(svg.read_text(errors="replace")):
        name = name.replace("&lt;", "<").replace("&gt;", ">")
        best[name] = max(best.get(name, 0.0), float(share))
    skip = ("<module>", "run", "run_forever", "_run_once", "_run", "execute_from_commandline",
            "run_until_complete", "main", "execute", "start", "_execute_task")
    ranked = [(k, v) for k, v in sorted(best.items(), key=lambda kv: -kv[1])
              if k.rsplit(".", 1)[-1] not in skip and not k.startswith(("Thread.", "_run"))]
    return ranked[:n]


def step(results: dict[str, Any], name: str, fn: Any) -> Any:
    print(f"bench: {name} ...", flush=True)
    started = time.monotonic()
    try:
        out = fn()
    except Exception as exc:
        traceback.print_exc()
        results.setdefault("notes", []).append(f"{name} failed: {type(exc).__name__}: {exc}")
        return None
    print(f"bench: {name} done in {time.monotonic() - started:.0f}s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scale, ~3 minutes")
    parser.add_argument("--events", type=int, default=None, help="backlog size (lender events)")
    args = parser.parse_args()
    quick = args.quick
    events = args.events or (40_000 if quick else 200_000)
    fresh_s = 12.0 if quick else 30.0
    mem_borrowers = 200_000 if quick else 1_000_000
    q_borrowers = 100_000 if quick else 1_000_000
    ts = datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    r: dict[str, Any] = {"timestamp": ts, "quick": quick, "events": events, "notes": []}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        with local_services(workdir / "services") as svc:
            a = deployment(svc.kafka_bootstrap, svc.redis_url, "bencha", workdir)
            b = deployment(svc.kafka_bootstrap, svc.redis_url, "benchb", workdir)
            now_ms = int(time.time()) * 1000
            pub = step(r, "publish backlog A", lambda: asyncio.run(
                e2e.publish_backlog(a, events, now_ms)))
            step(r, "publish backlog B", lambda: asyncio.run(
                e2e.publish_backlog(b, events, now_ms)))
            r["publish"] = pub
            records = pub["loan_records"] if pub else events
            r["setup"] = (f"Local KRaft broker + Redis, embedded chDB, 2 shared cores. Backlog: "
                          f"{records:,} lender records (5 lenders, consent rate 0.9, 1% "
                          f"duplicates, 2% late, 0.5% malformed), 6 registry partitions.")
            svg = RESULTS / f"{ts}-worker.svg"
            one = step(r, "e2e 1 worker", lambda: asyncio.run(e2e.run_workers(
                a, 1, records, workdir, timeout=600, profile_svg=svg,
                profile_s=10 if quick else 20, keep_running=True)))
            if one is not None:
                run1, workers1 = one
                busy = run1["drain"].drained_s - run1["drain"].first_progress_s
                rate = 0.5 * records / busy
                r["freshness"] = step(r, f"freshness at {rate:,.0f}/s", lambda: asyncio.run(
                    freshness.measure_freshness(a, rate, fresh_s)))
                r["e2e_1"] = e2e.finish(a, run1, workers1)
                r["e2e_1"]["baseline_rss_mib"] = r["e2e_1"]["peak_rss_mib"][0]
                r["profile"] = {"svg": svg.name, "top": profile_top(svg)}
            two = step(r, "e2e 2 workers", lambda: asyncio.run(e2e.run_workers(
                b, 2, records, workdir, timeout=600)))
            if two is not None:
                r["e2e_2"] = e2e.finish(b, *two)
            topics = asyncio.run(e2e.loans_topic_names(a))
            n = asyncio.run(e2e.end_offsets_total(a, topics))
            floor_args = ["--bootstrap", a.kafka_bootstrap, "--topics", ",".join(topics),
                          "--n", str(n)]
            r["floors"] = {}
            for which, python in (("faust", None), ("aiokafka", None),
                                  ("quix", str(QUIX_PYTHON))):
                if python and not Path(python).exists():
                    r["floors"][which] = {"error": "Quix venv missing (run make bench)"}
                    continue
                out = step(r, f"floor {which}", lambda w=which, p=python: run_json(
                    ["bench.floors", w, *floor_args], timeout=300, python=p))
                r["floors"][which] = out or {"error": "failed"}
            r["stages"] = step(r, "per-stage costs", lambda: run_json(
                ["bench.stages"], env=settings_env(a), timeout=300))
        r["memory"] = step(r, f"memory, {mem_borrowers:,} borrowers", lambda: run_json(
            ["bench.memory", "--borrowers", str(mem_borrowers)], timeout=600))
        r["query"] = step(r, f"query latency, {q_borrowers:,} borrowers x 10 days",
                          lambda: query.measure(q_borrowers, 10, 2000, free_port()))
    r["elapsed_s"] = time.monotonic() - began
    table = report.write(r, RESULTS, ts)
    print(f"\nbench: results in {RESULTS / ts}.md (+ .json, PNGs), "
          f"{r['elapsed_s'] / 60:.1f} min\n{table}")
    for note in r["notes"]:
        print(f"  note: {note}")


if __name__ == "__main__":
    main()
