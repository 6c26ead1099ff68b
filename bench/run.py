"""``make bench``: the whole benchmark suite on the local real stack (< 15 min; --quick ~3).

Order: start a KRaft broker + Redis on free ports (``tests.support.services.local_services``) ->
publish the backlog twice (two namespaces, same events) -> 1 worker drains namespace A
(py-spy profiles it) -> freshness against that worker (pre-encoded replay at 1,000 events/s
and at half its measured rate) -> 2 workers drain namespace B -> floors and light peers
(bare Faust agent, aiokafka, light Quix and light Faust jobs) and the full Quix Streams peer
(the registry's job) on namespace A's lender topics -> per-stage costs -> memory -> risk-API
latency. Results: ``bench/results/<ts>.{json,md}`` + PNGs; a full run (all parts, default
scale) is also copied to ``bench/results/latest.*``, the run the README quotes (tracked).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import (
    QUIX_PYTHON,
    RESULTS,
    e2e,
    freshness,
    profile,
    query,
    report,
    run_json,
)
from streams.settings import Settings
from tests.support.services import free_port, local_services, settings_env


def deployment(bootstrap: str, redis_url: str, name: str, workdir: Path) -> Settings:
    return Settings(kafka_bootstrap=bootstrap, redis_url=redis_url, clickhouse_url="",
                    clickhouse_database="bench", kafka_namespace=f"{name}.",
                    registry_app_id=name, registry_data_dir=workdir / name,
                    api_port=free_port(), registry_partitions=6)


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


def streaming(r: dict[str, Any], only: set[str], svc: Any, workdir: Path, ts: str,
              events: int, quick: bool, fresh_s: float) -> None:
    """The parts that need the broker: backlogs, end-to-end runs, floors, stage costs."""
    a = deployment(svc.kafka_bootstrap, svc.redis_url, "bencha", workdir)
    b = deployment(svc.kafka_bootstrap, svc.redis_url, "benchb", workdir)
    now_ms = int(time.time()) * 1000
    pub = step(r, "publish backlog A", lambda: asyncio.run(
        e2e.publish_backlog(a, events, now_ms)))
    if "two" in only:
        step(r, "publish backlog B", lambda: asyncio.run(
            e2e.publish_backlog(b, events, now_ms)))
    r["publish"] = pub
    records = pub["loan_records"] if pub else events
    r["setup"] = (f"Local KRaft broker + Redis, embedded chDB, 2 shared cores. Backlog: "
                  f"{records:,} lender records (5 lenders, consent rate 0.9, 1% "
                  f"duplicates, 2% late, 0.5% malformed), 6 registry partitions.")
    prof = RESULTS / f"{ts}-worker-stacks.txt"
    prof_s = 10 if quick else 20
    one = None
    if "e2e" in only:
        one = step(r, "e2e 1 worker", lambda: asyncio.run(e2e.run_workers(
            a, 1, records, workdir, timeout=600, profile_out=prof, profile_s=prof_s,
            keep_running=True)))
    if one is not None:
        run1, workers1 = one
        busy = run1["drain"].drained_s - run1["drain"].first_progress_s
        rate = 0.5 * records / busy
        if "freshness" in only:
            r["freshness_1k"] = step(r, "freshness at 1,000/s", lambda: asyncio.run(
                freshness.measure_freshness(a, 1000.0, fresh_s)))
            r["freshness"] = step(r, f"freshness at {rate:,.0f}/s (half e2e)",
                                  lambda: asyncio.run(
                                      freshness.measure_freshness(a, rate, fresh_s)))
        r["e2e_1"] = e2e.finish(a, run1, workers1)
        r["e2e_1"]["baseline_rss_mib"] = r["e2e_1"]["peak_rss_mib"][0]
        r["profile"] = profile.summarise(prof, prof_s)
    if "two" in only:
        two = step(r, "e2e 2 workers", lambda: asyncio.run(e2e.run_workers(
            b, 2, records, workdir, timeout=600)))
        if two is not None:
            r["e2e_2"] = e2e.finish(b, *two)
    if "floors" in only:
        floors(r, a)
    if "peers" in only:
        r["quix_full"] = step(r, "peer: Quix Streams doing the registry's job",
                              lambda: quix_full(r, a, workdir))
    if "stages" in only:
        r["stages"] = step(r, "per-stage costs", lambda: run_json(
            ["bench.stages"], env=settings_env(a), timeout=300))


def floors(r: dict[str, Any], a: Settings) -> None:
    """The framework floor, the language floor and the light peers on deployment A's lender
    topics. Every floor and peer reads ALL of those topics (N = their end offsets): after a
    freshness part that is the backlog plus the replayed draws, the same N for each of them."""
    topics = asyncio.run(e2e.loans_topic_names(a))
    n = asyncio.run(e2e.end_offsets_total(a, topics))
    floor_args = ["--bootstrap", a.kafka_bootstrap, "--topics", ",".join(topics),
                  "--n", str(n)]
    r["floors"] = {}
    for which, python in (("faust", None), ("aiokafka", None),
                          ("quix", str(QUIX_PYTHON)), ("faust-light", None)):
        if python and not Path(python).exists():
            r["floors"][which] = {"error": "Quix venv missing (run make bench)"}
            continue
        out = step(r, f"floor {which}", lambda w=which, p=python: run_json(
            ["bench.floors", w, *floor_args], timeout=300, python=p))
        r["floors"][which] = out or {"error": "failed"}


def quix_full(r: dict[str, Any], a: Settings, workdir: Path) -> dict[str, Any]:
    """The full Quix Streams peer (:mod:`bench.quix_peer`) on deployment A's lender topics.

    Its consent look-ups read the intervals deployment A's consent agent stored, so it needs
    the e2e part to have run first (else every event is refused for lack of consent)."""
    if not QUIX_PYTHON.exists():
        return {"error": "Quix venv missing (run make bench)"}
    if "e2e_1" not in r:
        r["notes"].append("Quix full peer ran without the e2e part: no consent was applied, "
                          "so it refused every event (its rate is not comparable)")
    topics = asyncio.run(e2e.loans_topic_names(a))
    n = asyncio.run(e2e.end_offsets_total(a, topics))
    env = {**os.environ, "BENCH_PSEUDONYM_KEY": a.pseudonym_key_bytes.decode()}
    return run_json(["bench.quix_peer", "--bootstrap", a.kafka_bootstrap,
                     "--topics", ",".join(topics), "--n", str(n),
                     "--namespace", a.kafka_namespace, "--redis-url", a.redis_url,
                     "--consent-prefix", a.redis_prefix, "--tz", a.registry_timezone,
                     "--chdb", str(workdir / "quix-peer-chdb")],
                    env=env, timeout=900, python=str(QUIX_PYTHON))


def publish_latest(ts: str) -> list[str]:
    """Copy run ``ts`` to ``latest.*`` (json, md with its links renamed, PNGs, stacks)."""
    copied = []
    for src in sorted(RESULTS.glob(f"{ts}*")):
        dst = RESULTS / ("latest" + src.name[len(ts):])
        if src.suffix == ".md":
            dst.write_text(src.read_text().replace(f"{ts}-", "latest-"))
        else:
            shutil.copyfile(src, dst)
        copied.append(dst.name)
    return copied


def baseline(path: Path | None, ts: str, quick: bool) -> dict[str, Any] | None:
    """The run to compare with: ``path``, else the newest earlier one of the same scale."""
    if path is not None:
        return json.loads(path.read_text())
    for candidate in sorted(RESULTS.glob("*.json"), reverse=True):
        if candidate.stem >= ts:
            continue
        with contextlib.suppress(ValueError, OSError):
            earlier = json.loads(candidate.read_text())
            if earlier.get("quick") == quick and earlier.get("e2e_1"):
                return earlier
    return None


PARTS = ("e2e", "freshness", "two", "floors", "peers", "stages", "memory", "query")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scale, ~3 minutes")
    parser.add_argument("--events", type=int, default=None, help="backlog size (lender events)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run (default all: {','.join(PARTS)}); "
                             "freshness needs e2e, peers should follow e2e (consent)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="an earlier results JSON to compare with (default: the newest "
                             "earlier run of the same scale)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if only - set(PARTS):
        parser.error(f"unknown parts {sorted(only - set(PARTS))}; choose from {PARTS}")
    quick = args.quick
    events = args.events or (40_000 if quick else 200_000)
    fresh_s = 12.0 if quick else 30.0
    mem_borrowers = 200_000 if quick else 1_000_000
    q_borrowers = 100_000 if quick else 1_000_000
    ts = datetime.now().strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    r: dict[str, Any] = {"timestamp": ts, "quick": quick, "events": events, "notes": [],
                         "parts": sorted(only)}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        if only & {"e2e", "two", "floors", "peers", "stages"}:
            with local_services(workdir / "services") as svc:
                streaming(r, only, svc, workdir, ts, events, quick, fresh_s)
        if "memory" in only:
            r["memory"] = step(r, f"memory, {mem_borrowers:,} borrowers", lambda: run_json(
                ["bench.memory", "--borrowers", str(mem_borrowers)], timeout=600))
        if "query" in only:
            # ingesting round: sink-like writes at half the 1-worker e2e rate (when measured)
            half = (r.get("e2e_1") or {}).get("events_per_s", 1000.0) / 2
            r["query"] = step(r, f"query latency (wrk, 16 connections), {q_borrowers:,} "
                              f"borrowers x 10 days", lambda: query.measure(
                                  q_borrowers, 10, free_port(), seconds=10 if quick else 20,
                                  ingest_rate=half))
    r["elapsed_s"] = time.monotonic() - began
    base = baseline(args.baseline, ts, quick)
    table = report.write(r, RESULTS, ts, base)
    print(f"\nbench: results in {RESULTS / ts}.md (+ .json, PNGs), "
          f"{r['elapsed_s'] / 60:.1f} min\n{table}")
    for note in r["notes"]:
        print(f"  note: {note}")
    # the README quotes the latest FULL run: every part at the default scale, nothing failed
    if not quick and only == set(PARTS) and args.events is None:
        if any("failed" in note for note in r["notes"]):
            print("bench: a part failed: bench/results/latest.* left as it was")
        else:
            print(f"bench: copied to {', '.join(publish_latest(ts))} (tracked by git)")


if __name__ == "__main__":
    main()
