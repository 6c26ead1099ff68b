"""The /lag dashboard in a real browser: headless Chromium (Debian's ``chromium``) loads the page
from a running worker while a lender simulation publishes, runs its JavaScript, and the DOM it
leaves behind has a chart with data points and status badges for the registry's groups. A
screenshot is kept as a test artifact (``tests/artifacts/lag-dashboard.png``).

Chromium is part of the suite's setup (``make setup`` -> ``infra/chromium.sh install``): when
it is missing this test fails, it never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from services import REPO

from streams.lender.simulator import SimulationParams, run_simulation
from streams.settings import Settings

pytestmark = pytest.mark.integration

STATUSES = {"OK", "ERROR", "WARN", "STALLED", "STOPPED"}
SCREENSHOT = REPO / "tests" / "artifacts" / "lag-dashboard.png"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--virtual-time-budget=8000",
]


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
        self.canvases: dict[str, dict[str, str | None]] = {}
        self.badges: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "body":
            self.body = found
        elif tag == "canvas" and (found.get("id") or "").startswith("lag-chart-"):
            self.canvases[found["id"] or ""] = found
        elif "badge" in (found.get("class") or "").split():
            self.badges.append(found)


async def _wait_for_samples(settings: Settings, sim: asyncio.Task[Any], worker: Any) -> dict:
    """Poll /api/v1/lag until the Faust group has a few samples with committed offsets."""
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
                    last = await r.json() if r.status == 200 else None
            group = (last or {}).get("groups", {}).get(settings.registry_app_id)
            if group and any(len(p["history"]["t"]) >= 3 for p in group["partitions"]):
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
        await _browser(chromium, tmp_path / "profile-shot", f"--screenshot={SCREENSHOT}",
                       "--window-size=1280,900", url)
    finally:
        stop.set()
        result = await sim
    assert result.acked == result.sent

    dom = _Dom()
    dom.feed(dom_text)
    assert dom.body.get("data-ready") == "1", f"page never rendered data: {dom_text[:2000]}"
    groups = sorted(snapshot["groups"])
    faust_chart = dom.canvases.get(f"lag-chart-{settings.registry_app_id}")
    assert faust_chart is not None, f"no chart for the Faust group; charts: {list(dom.canvases)}"
    points = {cid: int(c.get("data-points") or 0) for cid, c in dom.canvases.items()}
    assert points[f"lag-chart-{settings.registry_app_id}"] > 0, points
    group_badges = {b.get("id"): b.get("data-status") for b in dom.badges
                    if (b.get("id") or "").startswith("status-")}
    assert f"status-{settings.registry_app_id}" in group_badges, group_badges
    assert all(s in STATUSES for s in group_badges.values()), group_badges
    partition_badges = [b.get("data-status") for b in dom.badges if not b.get("id")]
    assert partition_badges and all(s in STATUSES for s in partition_badges), partition_badges

    assert SCREENSHOT.is_file(), "chromium wrote no screenshot"
    size = SCREENSHOT.stat().st_size
    assert size > 10_000, f"screenshot is only {size} bytes"
    print(f"\n[dashboard] groups {groups}; chart points {points}; group statuses "
          f"{group_badges}; {len(partition_badges)} partition badges; screenshot "
          f"{SCREENSHOT} ({size} bytes)")
