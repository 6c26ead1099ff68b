"""A running worker's ``/metrics``: what Prometheus, Grafana and the alert rules will read.

A worker ingests a seeded simulator run; its ``/metrics`` is scraped over HTTP until the
counters match the run's ground truth exactly (events admitted per lender, ledger rows the sink
inserted) and the freshness watermark has passed the end of publishing. That scrape must then:

* pass ``promtool check metrics`` (Prometheus' own parser and linter) without a word;
* carry the process metrics of the worker process itself;
* declare every metric name the Grafana dashboard and the alert rules query.

The scrape is saved to ``tests/artifacts/metrics-scrape.txt``.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.kafka.topics import ensure_lender_topics
from streams.lender.population import lenders
from streams.lender.simulator import SimulationParams, run_simulation
from streams.settings import Settings
from tests.support.promql import dashboard_exprs, exposed_names, metric_names, rule_exprs

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
DASHBOARD = REPO / "infra" / "grafana" / "registry-dashboard.json"
ALERTS = REPO / "infra" / "prometheus" / "alerts.yml"
LENDERS = 2
DRAIN_TIMEOUT_S = 240.0


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _scrape(session: aiohttp.ClientSession, settings: Settings,
                  accept: str | None = None) -> tuple[str, str] | None:
    url = f"http://{settings.api_host}:{settings.api_port}/metrics"
    headers = {"Accept": accept} if accept else {}
    try:
        async with session.get(url, headers=headers,
                               timeout=aiohttp.ClientTimeout(total=5)) as response:
            if response.status != 200:
                return None
            return await response.text(), response.headers["Content-Type"]
    except (aiohttp.ClientError, TimeoutError):  # the worker is not serving yet
        return None


async def test_running_worker_scrape_is_valid_and_complete(settings: Settings,
                                                           worker_factory) -> None:
    for lender in lenders(LENDERS):
        await ensure_lender_topics(settings, lender.lender_id)
    worker_started = time.time()
    worker = worker_factory(extra_env={"LAG_POLL_SECONDS": "1.0"})
    run = await run_simulation(settings, SimulationParams(
        seed=17, lenders=LENDERS, borrowers=200, events=2000))
    assert run.acked == run.sent
    published_s = time.time()
    admitted = collections.Counter(ev.lender_id for ev in run.truth.admitted)
    assert sum(admitted.values()) > 0

    def complete(values: dict) -> bool:
        per_lender = {lender: values.get(("registry_events_admitted_total",
                                          (("lender", lender),)), 0) for lender in admitted}
        ledger = values.get(("registry_sink_rows_total", (("table", "admitted_events"),)), 0)
        watermark = values.get(("registry_freshness_watermark_seconds", ()), 0)
        # the stream group's status appears once the lag monitor sampled a commit of it
        stream_status = any(name == "registry_consumer_status"
                            and dict(labels).get("group") == settings.registry_app_id
                            for name, labels in values)
        return (per_lender == dict(admitted) and ledger == len(run.truth.admitted)
                and watermark >= published_s and stream_status)

    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while True:
            assert worker.proc.poll() is None, f"worker exited:\n{worker.log_tail()}"
            scraped = await _scrape(session, settings)
            if scraped is not None and complete(_values(scraped[0])):
                break
            if time.monotonic() > deadline:
                last = None if scraped is None else {
                    k: v for k, v in _values(scraped[0]).items()
                    if k[0] in ("registry_events_admitted_total", "registry_sink_rows_total",
                                "registry_freshness_watermark_seconds")}
                raise AssertionError(f"scrape never matched the run ({dict(admitted)} admitted, "
                                     f"published until {published_s:.0f}); last: {last}\n"
                                     f"{worker.log_tail()}")
            await asyncio.sleep(0.5)  # between polls; the loop's condition decides
        text, content_type = scraped
        om = await _scrape(session, settings, "application/openmetrics-text; version=1.0.0")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "metrics-scrape.txt").write_text(text)

    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert om is not None
    assert om[1].startswith("application/openmetrics-text; version=1.0.0")
    assert om[0].endswith("# EOF\n")

    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make setup` installs Debian's prometheus package"
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""

    values = _values(text)
    assert values[("process_cpu_seconds_total", ())] > 0
    assert values[("process_resident_memory_bytes", ())] > 0
    started = values[("process_start_time_seconds", ())]
    assert worker_started - 1 <= started <= time.time(), (worker_started, started)
    group = settings.registry_app_id
    statuses = {dict(labels)["status"]: v for (name, labels), v in values.items()
                if name == "registry_consumer_status" and dict(labels)["group"] == group}
    assert set(statuses) == {"OK", "WARN", "STALLED", "STOPPED", "ERROR"}
    assert sum(statuses.values()) == 1  # exactly the current status is 1

    exported = exposed_names(text)
    queried = set().union(*(metric_names(e) for e in dashboard_exprs(DASHBOARD)))
    assert queried <= exported, sorted(queried - exported)
    ruled = set().union(*(metric_names(e) for e in rule_exprs(ALERTS))) - {"up"}
    assert ruled <= exported, sorted(ruled - exported)

