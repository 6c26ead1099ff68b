"""Broker restart mid-stream: the worker rides it out in-process, nothing lost, nothing twice.

The test gets a broker (and Redis) of its own from ``tests.support.services.local_services``
in its own folder, so restarting it disturbs no other test. The first part of a seeded history is
published, a worker starts on it, and once the stream has committed some of it the broker is
stopped cleanly (``infra/kafka/kafka.sh stop``) and started again on the same port and log
folder. The rest of the history is then published through NEW lender publishers (the old ones
were closed before the restart: a publisher whose broker vanished reports its failure rather
than retrying forever). The worker keeps running throughout (same PID); after the drain the
ledger, the buckets and the rejection counts equal the oracle exactly.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest

from streams.kafka.topics import ensure_lender_topics
from streams.lender.ground_truth import TruthBuilder
from streams.lender.scenario import build_scenario
from streams.lender.sim_types import ItemKind, SimItem, SimulationParams
from streams.settings import Settings
from tests.support.faults import assert_matches_oracle, committed_offsets
from tests.support.pipeline import PUBLISH_CHUNK as CHUNK
from tests.support.pipeline import dump_clickhouse, group_lag, publish_items, wait_drained
from tests.support.services import REPO, docker_available, local_services

pytestmark = pytest.mark.integration

MAX_LOAN_RECORDS = 12_000  # about half before the restart, half after


@pytest.mark.skipif(docker_available(), reason="restarts the local KRaft broker script")
async def test_broker_restart_mid_stream_loses_nothing(settings: Settings, worker_factory,
                                                       tmp_path) -> None:
    workdir = tmp_path / "services"
    with local_services(workdir) as services:
        settings.kafka_bootstrap = services.kafka_bootstrap  # the factory's workers use these
        settings.redis_url = services.redis_url
        kafka_env = {**os.environ, "KAFKA_PORT": services.kafka_bootstrap.rsplit(":", 1)[1],
                     "KAFKA_DATA_DIR": str(workdir / "kafka"), "KAFKA_HEAP": "768m"}
        sasl = getattr(services, "kafka_sasl_bootstrap", "")  # the same listeners after restart
        if sasl:
            kafka_env["KAFKA_SASL_PORT"] = sasl.rsplit(":", 1)[1]

        params = SimulationParams(seed=5150, lenders=3, borrowers=3000, days=20,
                                  consent_rate=0.5, duplicate_rate=0.01, late_rate=0.02,
                                  malformed_rate=0.003).resolved()
        scenario = build_scenario(params)
        lenders = [lender.lender_id for lender in scenario.lenders]
        truth = TruthBuilder(params.to_json(), params.now_ms or 0, lenders,
                             {b.borrower_id: b.profile.value for b in scenario.borrowers})
        items: list[SimItem] = []
        loans = 0
        for item in scenario.items:
            if loans >= MAX_LOAN_RECORDS and len(items) % CHUNK == 0:
                break
            items.append(item)
            loans += item.kind is not ItemKind.CONSENT
        # cut at a chunk boundary: each chunk's consent is acknowledged before its events
        first = CHUNK * (len(items) // 2 // CHUNK)
        for lid in lenders:
            await ensure_lender_topics(settings, lid)
        await publish_items(settings, items[:first], truth)

        worker = worker_factory()
        pid = worker.proc.pid
        deadline = time.monotonic() + 150
        while not sum((await committed_offsets(settings, f"{settings.registry_app_id}-intake",
                                               lambda t: t.endswith(".loans"))).values()):
            assert worker.proc.poll() is None, worker.log_tail()
            assert time.monotonic() < deadline, worker.log_tail()
            await asyncio.sleep(0.5)

        lag_at_stop = await group_lag(settings)
        kafka_sh = REPO / "infra/kafka/kafka.sh"
        down_at = time.monotonic()
        await asyncio.to_thread(subprocess.run, [kafka_sh, "stop"], env=kafka_env, check=True,
                                timeout=90)
        stopped_s = time.monotonic() - down_at
        await asyncio.sleep(3)
        assert worker.proc.poll() is None, worker.log_tail()
        for attempt in range(5):  # the controller port may be held briefly by a client's
            started = await asyncio.to_thread(  # ephemeral source port: try again
                subprocess.run, [kafka_sh, "start"], env=kafka_env, timeout=300)
            if started.returncode == 0:
                break
            assert attempt < 4, "the broker did not start again"
            await asyncio.sleep(3)
        outage_s = time.monotonic() - down_at

        await publish_items(settings, items[first:], truth)
        expected = truth.build()
        drained = await wait_drained(settings, timeout=300, worker=worker)
        assert worker.proc.poll() is None and worker.proc.pid == pid
        code = worker.stop()
        assert code == 0, worker.log_tail()
        stored = dump_clickhouse(settings)

    print(f"[broker-restart] published {loans} loan records ({first} items before the "
          f"restart, {len(items) - first} after); lag when the broker stopped {lag_at_stop}; "
          f"broker stop took {stopped_s:.1f}s, down "
          f"{outage_s:.1f}s in total; drained {drained:.1f}s after the second part; admitted "
          f"{len(expected.admitted)}, ledger {stored['ledger_rows']}")
    assert_matches_oracle(stored, expected.admitted, settings)
    rejections = {(lender, reason): n for lender, reason, n in stored["rejections"]}
    assert rejections == {(lender, reason): n for lender, reasons in expected.rejections.items()
                          for reason, n in reasons.items()}
