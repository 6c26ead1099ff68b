"""The lag monitor outlives the stream: an ``ops`` worker (sink, lag monitor, HTTP) keeps reporting
while the only ``stream`` worker is stopped.

Through the real ``/api/v1/lag`` of the ops worker: the registry's intake group (the stream
worker's bulk reader of the lender topics) first drains to lag 0 / OK; with the stream worker
stopped and lenders still publishing, its lag grows sample after sample and its status leaves OK
(WARN: an empty group whose commits stand still, before the STOPPED threshold); with a stream
worker back, lag returns to 0 and status to OK. The observed figures are printed (run with
``-s``).
"""

from __future__ import annotations

import asyncio
import time
from itertools import pairwise
from typing import Any

import aiohttp
import pytest

from streams.kafka.topics import ensure_lender_topics
from streams.lender.population import lenders
from streams.lender.simulator import SimulationParams, run_simulation
from streams.settings import Settings

pytestmark = pytest.mark.integration

#: Sampling interval of the ops worker's lag monitor: the status window is 10 samples.
POLL_S = 1.0
LENDERS = 3
NON_OK_WITHIN_S = 30.0
OPS_ENV = {"LAG_POLL_SECONDS": str(POLL_S)}
STREAM_ARGS = ["worker", "--role", "stream"]
OPS_ARGS = ["worker", "--role", "ops"]


async def _group(session: aiohttp.ClientSession, settings: Settings) -> dict[str, Any] | None:
    """The intake group's entry (it reads the lender topics) of the latest snapshot, with
    ``sampled_at``; None if absent."""
    url = f"http://{settings.api_host}:{settings.api_port}/api/v1/lag"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            if response.status != 200:
                return None
            data = await response.json()
    except (aiohttp.ClientError, TimeoutError):  # the ops worker is not serving yet
        return None
    group = data["groups"].get(f"{settings.registry_app_id}-intake")
    return None if group is None else {**group, "sampled_at": data["sampled_at"]}


def _alive(*workers: Any) -> None:
    for worker in workers:
        assert worker.proc.poll() is None, f"worker exited early:\n{worker.log_tail()}"


async def _poll_until(session: aiohttp.ClientSession, settings: Settings, done: Any, *,
                      timeout: float, what: str, workers: tuple[Any, ...],
                      on_sample: Any = None) -> dict[str, Any]:
    """Poll /api/v1/lag until ``done(group)``; ``on_sample`` sees each new sample once."""
    deadline = time.monotonic() + timeout
    seen_at = None
    group: dict[str, Any] | None = None
    while True:
        _alive(*workers)
        group = await _group(session, settings)
        if group is not None and group["sampled_at"] != seen_at:
            seen_at = group["sampled_at"]
            if on_sample is not None:
                on_sample(group)
            if done(group):
                return group
        if time.monotonic() > deadline:
            summary = None if group is None else {k: group[k] for k in ("status", "lag",
                                                                        "members", "state")}
            tails = "\n".join(w.log_tail(30) for w in workers)
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; "
                                 f"last: {summary}\n{tails}")
        await asyncio.sleep(POLL_S / 4)


def _drained(group: dict[str, Any]) -> bool:
    loans = {p["topic"] for p in group["partitions"] if ".loans" in p["topic"]}
    return group["lag"] == 0 and group["status"] == "OK" and len(loans) == LENDERS


async def test_lag_monitor_sees_stream_worker_stop_and_recover(settings: Settings,
                                                               worker_factory) -> None:
    for lender in lenders(LENDERS):
        await ensure_lender_topics(settings, lender.lender_id)
    ops = worker_factory(extra_env=OPS_ENV, args=OPS_ARGS)
    stream = worker_factory(args=STREAM_ARGS)
    first = await run_simulation(settings, SimulationParams(
        seed=7, lenders=LENDERS, borrowers=300, events=5000))
    assert first.acked == first.sent

    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        await _poll_until(session, settings, _drained, timeout=240,
                          what="the intake group drained (lag 0, OK)", workers=(ops, stream))
        print(f"\n[lag e2e] first {first.sent} records drained after "
              f"{time.monotonic() - started:.1f}s")

        # --- the only stream worker stops; lenders keep publishing ------------------------
        assert stream.stop() == 0, stream.log_tail()
        stopped_at = time.monotonic()
        publishing = asyncio.create_task(run_simulation(settings, SimulationParams(
            seed=8, lenders=LENDERS, borrowers=300, events=4000, rate=400.0)))
        lags: list[int] = []
        non_ok: dict[str, Any] = {}

        def record(group: dict[str, Any]) -> None:
            lags.append(group["lag"])
            if group["status"] != "OK" and not non_ok:
                non_ok.update(status=group["status"], after_s=time.monotonic() - stopped_at,
                              lag=group["lag"], members=group["members"])

        def grown_and_not_ok(group: dict[str, Any]) -> bool:
            grew = any(0 < a < b for a, b in pairwise(lags))
            return bool(non_ok) and grew

        try:
            await _poll_until(session, settings, grown_and_not_ok, timeout=NON_OK_WITHIN_S + 15,
                              what="growing lag and a non-OK status", workers=(ops,),
                              on_sample=record)
        finally:
            second = await publishing
        assert second.acked == second.sent
        assert non_ok["after_s"] <= NON_OK_WITHIN_S, non_ok
        assert non_ok["members"] == 0, non_ok
        increases = sum(1 for a, b in pairwise(lags) if 0 < a < b)
        print(f"[lag e2e] stream stopped: status {non_ok['status']} after "
              f"{non_ok['after_s']:.1f}s (lag then {non_ok['lag']}, members "
              f"{non_ok['members']}); lag rose in {increases} of {len(lags) - 1} sample steps")

        # one sample after the last record landed: the full backlog, still not OK
        published_ms = int(time.time() * 1000)
        await _poll_until(session, settings,
                          lambda g: g["sampled_at"] > published_ms and g["status"] != "OK",
                          timeout=30, what="non-OK status while the stream worker is down",
                          workers=(ops,), on_sample=lambda g: lags.append(g["lag"]))
        max_lag = max(lags)
        assert max_lag > 0

        # --- a stream worker comes back ---------------------------------------------------
        worker_factory(args=STREAM_ARGS)
        restarted_at = time.monotonic()
        await _poll_until(session, settings, _drained, timeout=240,
                          what="lag back to 0 and status OK after the restart",
                          workers=(ops,), on_sample=lambda g: lags.append(g["lag"]))
        recovered_s = time.monotonic() - restarted_at
        print(f"[lag e2e] max lag {max(lags)} messages; recovered to lag 0 / OK "
              f"{recovered_s:.1f}s after the restart")
    assert ops.stop() == 0, ops.log_tail()
