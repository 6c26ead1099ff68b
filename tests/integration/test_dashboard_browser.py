"""The /lag dashboard in a real browser: headless Chromium (Debian's ``chromium``) loads the page
from a running worker while a lender simulation publishes, runs its JavaScript, and the DOM it
leaves behind shows what a person sees: a headline per consumer group with its status, a uPlot
chart whose plot area is tall and whose canvas carries the pixels of each group's line, the
lag per lender and the partition drill-down. A screenshot is kept as a test artifact
(``tests/artifacts/lag-dashboard.png``; a copy is ``docs/lag-page.png`` for the README).

Chromium is part of the suite's setup (``make setup`` -> ``infra/chromium.sh install``): when
it is missing this test fails, it never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streams.lender.simulator import SimulationParams, run_simulation
from streams.settings import Settings
from tests.support.openapi_check import checked
from tests.support.services import REPO

pytestmark = pytest.mark.integration

STATUSES = {"OK", "ERROR", "WARN", "STALLED", "STOPPED"}
SCREENSHOT = REPO / "tests" / "artifacts" / "lag-dashboard.png"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--virtual-time-budget=8000", "--window-size=1280,1200",
]
#: The chart's plot area must be at least this tall, in CSS pixels, to be read at a glance.
MIN_PLOT_HEIGHT = 200


def _chromium() -> str:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser"):
        found = name and shutil.which(name)
        if found:
            return found
    pytest.fail("headless Chromium is required for the dashboard test but was not found: "
                "run `make setup` as root (infra/chromium.sh install: apt-get install chromium) "
                "or set CHROMIUM to the browser's path", pytrace=False)


async def _browser(chromium: str, profile: Path, *args: str, timeout: float = 90.0) -> str:
    proc = await asyncio.create_subprocess_exec(
        chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"chromium did not finish within {timeout:.0f}s: {args}") from None
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {err.decode()[-2000:]}"
    return out.decode()


class _Dom(HTMLParser):
    """The attributes of the elements the test cares about."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.chart: dict[str, str | None] = {}
        self.canvases = 0
        self.headlines: dict[str, dict[str, str | None]] = {}
        self.badges: list[dict[str, str | None]] = []
        self.lender_rows: list[str] = []
        self.partition_rows: dict[str, int] = {}
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        if tag == "body":
            self.body = found
        elif found.get("id") == "lag-chart":
            self.chart = found
        elif tag == "canvas":
            self.canvases += 1
        elif tag == "article" and "headline" in classes:
            self.headlines[found.get("data-group") or ""] = found
        elif tag == "table":
            self._table = found.get("id")
        elif tag == "tr" and self._table == "lenders" and found.get("data-lender"):
            self.lender_rows.append(found["data-lender"] or "")
        elif tag == "tr" and (self._table or "").startswith("partitions-") and (
                "data-status" in found):
            group = (self._table or "").removeprefix("partitions-")
            self.partition_rows[group] = self.partition_rows.get(group, 0) + 1
        if "badge" in classes:
            self.badges.append(found)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None


async def _wait_for_samples(settings: Settings, sim: asyncio.Task[Any], worker: Any) -> dict:
    """Poll /api/v1/lag until the Faust group has a few samples with committed offsets; every
    answer is checked against the OpenAPI document."""
    url = f"http://{settings.api_host}:{settings.api_port}/api/v1/lag"
    deadline = time.monotonic() + 180
    last: Any = None
    async with aiohttp.ClientSession() as session:
        while True:
            assert worker.proc.poll() is None, f"worker exited early:\n{worker.log_tail()}"
            if sim.done() and sim.exception() is not None:
                raise sim.exception()  # type: ignore[misc]
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                    last = await checked(r) if r.status == 200 else None
            group = (last or {}).get("groups", {}).get(settings.registry_app_id)
            if (group and any(len(p["history"]["t"]) >= 3 for p in group["partitions"])
                    and len(last["freshness"]) == 3):
                return last
            assert time.monotonic() < deadline, f"no lag samples after 180s: {last}"
            await asyncio.sleep(0.5)


async def test_lag_dashboard_renders_in_chromium(settings: Settings, worker_factory,
                                                 tmp_path: Path) -> None:
    chromium = _chromium()
    worker = worker_factory(extra_env={"LAG_POLL_SECONDS": "1"})
    stop = asyncio.Event()
    sim = asyncio.create_task(run_simulation(settings, SimulationParams(
        seed=11, lenders=3, borrowers=300, rate=500.0, duration_s=20.0), stop=stop))
    try:
        snapshot = await _wait_for_samples(settings, sim, worker)
        url = f"http://{settings.api_host}:{settings.api_port}/lag"
        dom_text = await _browser(chromium, tmp_path / "profile-dom", "--dump-dom", url)

        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.unlink(missing_ok=True)
        await _browser(chromium, tmp_path / "profile-shot", f"--screenshot={SCREENSHOT}", url)
    finally:
        stop.set()
        result = await sim
    assert result.acked == result.sent

    dom = _Dom()
    dom.feed(dom_text)
    assert dom.body.get("data-ready") == "1", f"page never rendered data: {dom_text[:2000]}"
    app_id = settings.registry_app_id
    groups = sorted(snapshot["groups"])

    # a headline per group the JSON has (names are not hard-coded), each with a status
    assert app_id in dom.headlines, f"no headline for the Faust group: {list(dom.headlines)}"
    assert set(groups) <= set(dom.headlines), (groups, list(dom.headlines))
    assert all(h.get("data-status") in STATUSES for h in dom.headlines.values()), dom.headlines
    group_badges = {b.get("id"): b.get("data-status") for b in dom.badges
                    if (b.get("id") or "").startswith("status-")}
    assert set(group_badges) == {f"status-{g}" for g in dom.headlines}, group_badges
    assert all(s in STATUSES for s in group_badges.values()), group_badges

    # the chart: drawn by uPlot, tall enough, every group a visible line on the canvas
    chart = dom.chart
    assert int(chart.get("data-drawn") or 0) >= 1, f"uPlot never drew: {chart}"
    assert dom.canvases == 1, f"expected one chart canvas, found {dom.canvases}"
    plot_height = int(chart.get("data-plot-height") or 0)
    assert plot_height >= MIN_PLOT_HEIGHT, f"plot area only {plot_height}px tall: {chart}"
    assert int(chart.get("data-canvas-height") or 0) >= 300, chart
    assert int(chart.get("data-plot-width") or 0) >= 800, chart
    series = {s["group"]: s for s in json.loads(chart.get("data-series") or "[]")}
    assert set(series) == set(dom.headlines), (list(series), list(dom.headlines))
    assert all(s["shown"] for s in series.values()), series
    assert series[app_id]["points"] >= 3, series[app_id]
    for name, line in series.items():
        # a line across the plot leaves hundreds of pixels of its colour; one that went above
        # zero stands out of the baseline it may share with the others
        if line["max"] > 0:
            assert line["pixels"] >= 20, f"group {name}'s line is not visible: {line}"
    assert sum(s["pixels"] for s in series.values()) >= 300, series
    assert max(s["pixels"] for s in series.values()) >= 300, series

    # lag per lender: every lender with a loans topic has a row; drill-down per group
    lenders = sorted(f["lender"] for f in snapshot["freshness"])
    assert len(lenders) == 3, snapshot["freshness"]
    assert set(lenders) <= set(dom.lender_rows), (lenders, dom.lender_rows)
    assert dom.partition_rows.get(app_id, 0) >= len(snapshot["groups"][app_id]["partitions"]), (
        dom.partition_rows)
    partition_badges = [b.get("data-status") for b in dom.badges if not b.get("id")]
    assert partition_badges and all(s in STATUSES for s in partition_badges), partition_badges

    assert SCREENSHOT.is_file(), "chromium wrote no screenshot"
    size = SCREENSHOT.stat().st_size
    assert size > 10_000, f"screenshot is only {size} bytes"
    print(f"\n[dashboard] groups {groups}; plot {chart.get('data-plot-width')}x{plot_height}px; "
          f"series {[(n, s['points'], s['max'], s['pixels']) for n, s in series.items()]}; "
          f"statuses {group_badges}; lender rows {dom.lender_rows}; "
          f"{len(partition_badges)} partition badges; screenshot {SCREENSHOT} ({size} bytes)")
