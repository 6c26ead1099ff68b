"""Query latency of the risk API at scale, driven by a real HTTP load generator (``wrk``).

``python -m bench.query serve --dir D --borrowers B --days K --port P --ids F`` (a subprocess:
it owns a scratch chDB folder) creates the registry tables, fills ``borrower_daily`` with B
borrowers x K consecutive days ending today (B*K rows: the pseudonyms are inserted once through
clickhouse-connect, then one ``INSERT ... SELECT`` of B rows per day, i.e. 1M-row chunks at
full scale), writes a sample of the raw ids to F (one a line), serves the real aiohttp app
(``consumers.api.server.build_app``) and prints a JSON line when ready.

:func:`measure` then drives ``POST /api/v1/frequency`` with ``wrk`` (Debian package; the
``make bench`` target installs it) at ``connections`` concurrent connections, through
``bench/frequency.lua`` (each request asks about the next id of the file; every request also
records an inquiry row, as in production). Rounds: once right after the load (ten freshly
inserted parts, merges running: a pessimistic case) and once after ``OPTIMIZE ... FINAL`` (all
parts merged, the state background merges approach). Each round: a short warm-up run, then the
measured run; wrk reports p50/p95/p99/p99.9 (its own latency histogram) and answers/s, and
the serve process's CPU time per answer (``/proc``, all threads) gives a figure that the rest
of a shared machine's load does not move much.

Answers vs inquiry rows: the serve process counts the 200 answers it sent and, once no request
is in flight, the rows of ``inquiries``; both must be equal (every answer has its row). wrk's
count of answers received can be lower by at most ``connections`` per run: requests still in
flight when wrk stops are answered and recorded, but wrk no longer reads them.

Under load (the ``ingesting`` round, between the two idle ones): ``background`` is an optional
callable entered around the measured run (``measure(..., background=fn)``: ``fn(info)``
returns a context manager; ``info`` has the port and the pid of the serve process), e.g. a
lender simulator feeding a pipeline. ``--ingest-rate R`` is the built-in one: the serve
process inserts daily rows for random borrowers at R rows/s in 0.5 s batches through the same
facade the sink uses, i.e. the ClickHouse write load of a sink at that rate in the same
process (not the stream processor's CPU: that needs the lead's reworked pipeline).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import REPO, emit
from streams.settings import Settings

TOKEN = "local-dev-token"
SAMPLE = 20_000
LUA = REPO / "bench" / "frequency.lua"
WARMUP_S = 3

Background = Callable[[dict[str, Any]], AbstractContextManager[Any]]


def serve(folder: Path, borrowers: int, days: int, port: int, ids_out: Path,
          ingest_rate: float = 0.0) -> None:
    from aiohttp import web

    from consumers.api.frequency_routes import HANDLER_KEY
    from consumers.api.server import build_app
    from consumers.clickhouse.client import connect
    from consumers.clickhouse.migrations import apply_migrations
    from consumers.lag.monitor import LagMonitor
    from schemas.calendar import local_today
    from schemas.national_id import generate
    from schemas.pseudonym import Pseudonymiser

    settings = Settings(registry_data_dir=folder, clickhouse_url="",
                        clickhouse_database="bench", api_port=port, api_host="127.0.0.1")
    ch = connect(settings)
    apply_migrations(ch)
    rng = random.Random(17)
    started = time.perf_counter()
    ids = [generate(rng) for _ in range(borrowers)]
    pseudonymise = Pseudonymiser(settings.pseudonym_key_bytes)
    ch.command("CREATE TABLE IF NOT EXISTS bench_ids (borrower String) "
               "ENGINE = MergeTree ORDER BY tuple()")
    ch.insert("bench_ids", [[pseudonymise(i)] for i in ids], ["borrower"])
    today = local_today(settings.tz)
    for d in range(days):
        day = (today - timedelta(days=d)).isoformat()
        ch.command(
            "INSERT INTO borrower_daily SELECT borrower, toDate({day:String}), "
            "1 + cityHash64(borrower, {d:UInt32}) % 4, 10000 + cityHash64(borrower) % 900000, "
            "cityHash64(borrower, 7) % 2, 5000, 0, ['lender-0', 'lender-1'], "
            "now64(3), {v:UInt64} FROM bench_ids", {"day": day, "d": d, "v": d + 1})
    rows = ch.query("SELECT count() FROM borrower_daily")[0][0]
    load_s = time.perf_counter() - started
    ids_out.write_text("\n".join(rng.sample(ids, min(SAMPLE, len(ids)))) + "\n")
    pseudonyms = [pseudonymise(i) for i in rng.sample(ids, min(SAMPLE, len(ids)))]
    app = build_app(settings, ch, LagMonitor(settings), as_of_ms=lambda: int(time.time() * 1000))
    stop = asyncio.Event()
    state = {"in_flight": 0, "answered": 0}
    idle = asyncio.Condition()

    @web.middleware
    async def count_answers(request: web.Request, handler: Any) -> web.StreamResponse:
        """Bench only: 200 answers sent, and requests in flight (for a quiet count)."""
        if request.path != "/api/v1/frequency":
            return await handler(request)
        state["in_flight"] += 1
        try:
            response = await handler(request)
            if response.status == 200:
                state["answered"] += 1
            return response
        finally:
            state["in_flight"] -= 1
            async with idle:
                idle.notify_all()

    async def inquiries(_: web.Request) -> web.Response:
        """Bench only: once nothing is in flight, answers sent and inquiry rows."""
        async with idle:
            await idle.wait_for(lambda: state["in_flight"] == 0)
        rows = await asyncio.to_thread(ch.query, "SELECT count() FROM inquiries")
        batcher = getattr(app[HANDLER_KEY], "_batcher", None)  # absent before group commit
        return web.json_response({"answered": state["answered"],
                                  "inquiry_rows": int(rows[0][0]),
                                  "batches": getattr(batcher, "batches", 0)})

    app.middlewares.append(count_answers)
    app.router.add_get("/bench/inquiries", inquiries)

    ingesting = threading.Event()

    def ingest() -> None:
        """``--ingest-rate``: sink-like daily-row inserts while ``ingesting`` is set."""
        version = days + 1
        while not stop_thread.is_set():
            if not ingesting.wait(0.2):
                continue
            batch_started = time.monotonic()
            n = max(1, int(ingest_rate * 0.5))
            version += 1
            batch = [[rng.choice(pseudonyms), today, 1, 1000, 0, 0, 0, ["lender-9"],
                      None, version] for _ in range(n)]
            ch.insert("borrower_daily", batch,
                      ["borrower", "day", "draws", "draw_amount_minor", "repayments",
                       "repaid_amount_minor", "defaults", "lenders", "last_draw_at",
                       "version"])
            stop_thread.wait(max(0.0, 0.5 - (time.monotonic() - batch_started)))

    stop_thread = threading.Event()
    ingester = threading.Thread(target=ingest, daemon=True) if ingest_rate > 0 else None
    if ingester is not None:
        ingester.start()

    async def optimize() -> None:
        """Second round: every part merged, the steady state background merges approach."""
        await asyncio.to_thread(ch.command, "OPTIMIZE TABLE borrower_daily FINAL")
        parts = ch.query("SELECT count() FROM system.parts WHERE active AND "
                         "table = 'borrower_daily' AND database = currentDatabase()")[0][0]
        emit({"optimized": True, "parts": parts})

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: asyncio.ensure_future(optimize()))
        loop.add_signal_handler(signal.SIGUSR2, lambda: (
            ingesting.clear() if ingesting.is_set() else ingesting.set()))
        emit({"ready": True, "rows": rows, "load_s": load_s})
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())
    stop_thread.set()
    if ingester is not None:
        ingester.join()
    ch.close()


def wrk(port: int, ids: Path, seconds: float, connections: int) -> dict[str, Any]:
    """One wrk run (2 threads, ``connections`` connections); its JSON line from the Lua
    script's ``done``, plus ``answers`` (requests minus errors) and ``answers_per_s``."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed (make bench installs the Debian package)")
    url = f"http://127.0.0.1:{port}/api/v1/frequency"
    done = subprocess.run(
        [binary, "-t2", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
         "-s", str(LUA), url, "--", str(ids), TOKEN],
        capture_output=True, text=True, timeout=seconds + 60, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"wrk"')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-1500:]}"
                           f"{done.stdout[-1500:]}")
    out = json.loads(lines[-1])
    errors = sum(out[k] for k in ("connect_errors", "read_errors", "write_errors",
                                  "status_errors", "timeouts"))
    out["answers"] = out["requests"] - errors
    out["answers_per_s"] = round(out["answers"] / (out["duration_us"] / 1e6), 1)
    return out


def _counts(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/inquiries", timeout=60) as r:
        return json.loads(r.read())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid``, all its threads (chDB's included), from
    ``/proc/<pid>/stat``: what the answers cost whatever else the machine is running."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _round(port: int, ids: Path, seconds: float, connections: int,
           background: Background | None, info: dict[str, Any]) -> dict[str, Any]:
    warm = wrk(port, ids, WARMUP_S, connections)
    before = _counts(port)
    cpu_before = cpu_seconds(info["pid"])
    with background(info) if background is not None else contextlib.nullcontext():
        run = wrk(port, ids, seconds, connections)
    cpu = cpu_seconds(info["pid"]) - cpu_before
    after = _counts(port)
    answered = after["answered"] - before["answered"]
    rows = after["inquiry_rows"] - before["inquiry_rows"]
    if rows != answered:
        raise RuntimeError(f"inquiry rows {rows} != answers sent {answered}")
    if not 0 <= answered - run["answers"] <= connections:
        raise RuntimeError(f"answers sent {answered} vs received {run['answers']}")
    keys = ("p50", "p95", "p99", "p99.9", "max", "mean", "answers_per_s", "answers")
    return {**{k: run[k] for k in keys}, "errors": run["requests"] - run["answers"],
            "answers_sent": answered, "inquiry_rows": rows,
            "server_cpu_ms_per_answer": round(1000 * cpu / max(1, answered), 2),
            "mean_batch": round(answered / max(1, after["batches"] - before["batches"]), 1),
            "warmup_answers": warm["answers"]}


def measure(borrowers: int, days: int, port: int, *, seconds: float = 20.0,
            connections: int = 16, background: Background | None = None,
            ingest_rate: float = 0.0, merged: bool = True) -> dict[str, Any]:
    """Load the data in a serve subprocess, then run the wrk rounds (see the module doc).

    Rounds: idle on fresh parts (the top-level figures); ``ingesting`` when ``ingest_rate`` > 0
    (the built-in sink-like write load, rows/s) or ``background`` is given (any other load,
    entered around the measured run); ``merged``: idle after ``OPTIMIZE ... FINAL``."""
    folder = Path(tempfile.mkdtemp(prefix="bench-query-ch-"))
    ids = folder / "ids.txt"
    cmd = [sys.executable, "-m", "bench.query", "serve", "--dir", str(folder), "--borrowers",
           str(borrowers), "--days", str(days), "--port", str(port), "--ids", str(ids),
           "--ingest-rate", str(ingest_rate)]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    info = {"port": port, "pid": proc.pid}
    loaded = _toggle_ingest(proc, background) if ingest_rate > 0 else background
    try:
        ready = _next_json(proc)
        if not ready:
            raise RuntimeError(f"query server failed:\n{proc.stderr.read()[-2500:]}")
        idle = _round(port, ids, seconds, connections, None, info)
        result: dict[str, Any] = {
            "borrowers": borrowers, "days": days, "rows": ready["rows"],
            "load_s": round(ready["load_s"], 1), "connections": connections,
            "seconds": seconds, **idle}
        if loaded is not None:
            result["ingesting"] = {"ingest_rate": ingest_rate,
                                   **_round(port, ids, seconds, connections, loaded, info)}
        if merged:
            proc.send_signal(signal.SIGUSR1)
            optimized = _next_json(proc)
            result["merged"] = {"parts": optimized.get("parts"),
                                **_round(port, ids, seconds, connections, None, info)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(folder, ignore_errors=True)
    return result


def _toggle_ingest(proc: subprocess.Popen[str], inner: Background | None) -> Background:
    @contextlib.contextmanager
    def ingesting(info: dict[str, Any]) -> Iterator[None]:
        proc.send_signal(signal.SIGUSR2)  # on
        try:
            with inner(info) if inner is not None else contextlib.nullcontext():
                yield
        finally:
            proc.send_signal(signal.SIGUSR2)  # off
    return ingesting


def _next_json(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            return json.loads(line)
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    srv = sub.add_parser("serve", help="load the data and serve the API (used by measure)")
    srv.add_argument("--dir", type=Path, required=True)
    srv.add_argument("--borrowers", type=int, required=True)
    srv.add_argument("--days", type=int, default=10)
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--ids", type=Path, required=True)
    srv.add_argument("--ingest-rate", type=float, default=0.0)
    run = sub.add_parser("run", help="measure and print one JSON line")
    run.add_argument("--borrowers", type=int, default=1_000_000)
    run.add_argument("--days", type=int, default=10)
    run.add_argument("--port", type=int, default=18999)
    run.add_argument("--seconds", type=float, default=20.0)
    run.add_argument("--connections", type=int, default=16)
    run.add_argument("--ingest-rate", type=float, default=0.0)
    run.add_argument("--no-merged", action="store_true")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.dir, args.borrowers, args.days, args.port, args.ids, args.ingest_rate)
    else:
        emit(measure(args.borrowers, args.days, args.port, seconds=args.seconds,
                     connections=args.connections, ingest_rate=args.ingest_rate,
                     merged=not args.no_merged))


if __name__ == "__main__":
    main()
