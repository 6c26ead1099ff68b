"""Query latency of the risk API at scale.

``python -m bench.query serve --dir D --borrowers B --days K --port P`` (a subprocess: it owns
a scratch chDB folder) creates the registry tables, fills ``borrower_daily`` with B borrowers
x K consecutive days ending today (B*K rows: the pseudonyms are inserted once through
clickhouse-connect, then one ``INSERT ... SELECT`` of B rows per day, i.e. 1M-row chunks at
full scale), serves the real aiohttp app (``consumers.api.server.build_app``) and prints a
JSON line with the raw ids to ask about. :func:`measure` then sends sequential
``POST /api/v1/frequency`` requests (each also records an inquiry row, as in production): once
right after the load (ten freshly inserted parts, merges running: a pessimistic case) and once
after ``OPTIMIZE ... FINAL`` (all parts merged, the state background merges approach).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import REPO, emit, percentiles
from streams.settings import Settings

TOKEN = "local-dev-token"
SAMPLE = 2000


def serve(folder: Path, borrowers: int, days: int, port: int) -> None:
    from aiohttp import web

    from consumers.api.server import build_app
    from consumers.clickhouse.client import connect
    from consumers.clickhouse.migrations import apply_migrations
    from consumers.lag.monitor import LagMonitor
    from schemas.national_id import generate
    from streams.calendar import local_today
    from streams.pseudonym import Pseudonymiser

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
    app = build_app(settings, ch, LagMonitor(settings), as_of_ms=lambda: int(time.time() * 1000))
    stop = asyncio.Event()

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
        emit({"ready": True, "rows": rows, "load_s": load_s,
              "ids": rng.sample(ids, min(SAMPLE, len(ids)))})
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())
    ch.close()


async def _ask(port: int, ids: list[str], requests: int) -> list[float]:
    import aiohttp

    url = f"http://127.0.0.1:{port}/api/v1/frequency"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    out = []
    async with aiohttp.ClientSession(headers=headers) as session:
        for i in range(requests + 50):
            body = {"borrower_id": ids[i % len(ids)], "window_days": 30}
            started = time.perf_counter()
            async with session.post(url, json=body) as resp:
                payload = await resp.json()
                if resp.status != 200:
                    raise RuntimeError(f"risk API answered {resp.status}: {payload}")
            if i >= 50:  # the first 50 warm up caches and connections
                out.append((time.perf_counter() - started) * 1000)
    return out


def measure(borrowers: int, days: int, requests: int, port: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-query-ch-"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.query", "serve", "--dir", str(folder), "--borrowers",
         str(borrowers), "--days", str(days), "--port", str(port)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready: dict[str, Any] = {}
        for line in proc.stdout:
            if line.startswith("{"):
                ready = json.loads(line)
                break
        if not ready:
            raise RuntimeError(f"query server failed:\n{proc.stderr.read()[-2500:]}")
        latencies = asyncio.run(_ask(port, ready["ids"], requests))
        proc.send_signal(signal.SIGUSR1)
        merged: dict[str, Any] = {}
        for line in proc.stdout:
            if line.startswith("{"):
                merged = json.loads(line)
                break
        merged_latencies = asyncio.run(_ask(port, ready["ids"], requests)) if merged else []
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"borrowers": borrowers, "days": days, "rows": ready["rows"],
            "load_s": round(ready["load_s"], 1), "requests": len(latencies),
            **{k: round(v, 2) for k, v in percentiles(latencies).items()},
            "mean": round(sum(latencies) / len(latencies), 2),
            "merged": {"parts": merged.get("parts"),
                       **{k: round(v, 2) for k, v in percentiles(merged_latencies).items()}}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve"])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--borrowers", type=int, required=True)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(args.dir, args.borrowers, args.days, args.port)


if __name__ == "__main__":
    main()
