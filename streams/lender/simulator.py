"""``registry simulate``: several lenders publishing a reproducible loan history, then live.

What is published comes from :mod:`~streams.lender.scenario` (the seeded history, then live
items); this module sends it through one :class:`LenderPublisher` per lender, at the requested
rate, until ``events``/``duration``/a stop, and provides the command line.

Causality rule, relied upon by the stream: every consent record is published and acknowledged
before any loan event that follows it in the sequence is sent. :func:`run_simulation` sends the
sequence in chunks: each chunk's consent records first, then a flush, then its loan records.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.cli.base import ExitCode, ascii_float, ascii_int, fail
from streams.kafka.errors import BrokerUnavailable, TopicAdminError
from streams.kafka.topics import ensure_lender_topics
from streams.lender.errors import PublisherError, PublishError
from streams.lender.ground_truth import TruthBuilder
from streams.lender.publisher import LenderPublisher
from streams.lender.scenario import build_scenario, live_items
from streams.lender.sim_types import ItemKind, SimItem, SimulationParams, SimulationResult
from streams.runtime.progress import progress_bar
from streams.settings import Settings, get_settings

if TYPE_CHECKING:
    from tqdm import tqdm

CHUNK_ITEMS = 2000
#: Live events per second when ``--rate`` is 0 and no ``--events`` bound ends the run.
LIVE_DEFAULT_RATE = 50.0


class _Player:
    """Sends items through one publisher per lender, honouring rate, limits and causality."""

    def __init__(
        self,
        publishers: dict[str, LenderPublisher],
        truth: TruthBuilder,
        params: SimulationParams,
        progress: tqdm,
        stop: asyncio.Event,
    ) -> None:
        self.publishers = publishers
        self.truth = truth
        self.params = params
        self.progress = progress
        self.stop = stop
        self.started = time.monotonic()
        self.loan_records = 0  # records sent to loans topics
        self.sent = 0
        self.rate = params.rate
        self._paced_from = (self.started, 0)

    def done(self) -> bool:
        p = self.params
        return (
            self.stop.is_set()
            or (p.events is not None and self.loan_records >= p.events)
            or (p.duration_s is not None and time.monotonic() - self.started >= p.duration_s)
        )

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self._paced_from = (time.monotonic(), self.sent)

    async def play(self, items: Iterable[SimItem]) -> int:
        """Send ``items`` chunk by chunk; returns how many were sent before a stop."""
        played = 0
        chunk: list[SimItem] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= CHUNK_ITEMS:
                played += await self._chunk(chunk)
                chunk = []
                if self.done():
                    return played
        return played + (await self._chunk(chunk) if chunk else 0)

    async def _chunk(self, chunk: list[SimItem]) -> int:
        consent = [item for item in chunk if item.kind is ItemKind.CONSENT]
        for item in consent:  # earlier than their place is harmless: consent is by time
            assert item.consent is not None
            await self.publishers[item.lender_id].publish_consent(item.consent)
            self.truth.observe_consent(item.consent)
            self.sent += 1
        await asyncio.gather(
            *(self.publishers[lid].flush() for lid in {c.lender_id for c in consent})
        )
        played = len(consent)
        for item in chunk:
            if item.kind is ItemKind.CONSENT:
                continue
            if self.done():
                return played
            publisher = self.publishers[item.lender_id]
            if item.kind is ItemKind.LOAN:
                assert item.loan is not None
                await publisher.publish_event(item.loan)
                self.truth.observe_loan(item.lender_id, item.loan)
            else:
                assert item.value is not None and item.reason is not None
                await publisher.send_raw(publisher.loans_topic, item.key, item.value)
                self.truth.observe_raw(item.lender_id, item.reason)
            self.sent += 1
            self.loan_records += 1
            played += 1
            await self._pace()
        return played

    async def _pace(self) -> None:
        if self.rate > 0:
            since, base = self._paced_from
            ahead = since + (self.sent - base) / self.rate - time.monotonic()
            if ahead > 0.002:
                await asyncio.sleep(ahead)
        elif self.sent % 1000 == 0:
            await asyncio.sleep(0)  # let acknowledgements and signals through
        progress = self.progress
        if not progress.disable:
            progress.update(self.loan_records - progress.n)
            if self.sent % 1000 == 0:
                acked = sum(p.acked for p in self.publishers.values())
                progress.set_postfix_str(f"acked {acked}", refresh=False)


async def run_simulation(
    settings: Settings,
    params: SimulationParams,
    *,
    truth_path: Path | None = None,
    progress: bool = False,
    stop: asyncio.Event | None = None,
) -> SimulationResult:
    """Publish the history, then live events, until ``events``/``duration``/``stop``.

    ``progress``: draw a bar on stderr (loan records sent, rate, acknowledged; ETA with
    ``events``) when stderr is a terminal. Returns once everything sent is acknowledged; the
    truth (also written to ``truth_path``) covers exactly what was published, even when
    stopped early.
    """
    params = params.resolved()
    scenario = build_scenario(params)
    lender_ids = [lender.lender_id for lender in scenario.lenders]
    for lid in lender_ids:
        await ensure_lender_topics(settings, lid)
    truth = TruthBuilder(
        params.to_json(),
        params.now_ms or 0,
        lender_ids,
        {b.borrower_id: b.profile.value for b in scenario.borrowers},
    )
    stop = stop or asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        publishers = {
            lid: await stack.enter_async_context(LenderPublisher(settings, lid))
            for lid in lender_ids
        }
        bar = stack.enter_context(progress_bar(
            "simulate", total=params.events, enabled=None if progress else False))
        player = _Player(publishers, truth, params, bar, stop)
        player.set_rate(params.rate)
        history = await player.play(scenario.items)
        complete = history == len(scenario.items)
        live = 0
        if complete and not player.done():
            # rate 0 means unlimited; live data without an --events bound gets a sane pace
            player.set_rate(params.rate or (0.0 if params.events else LIVE_DEFAULT_RATE))
            batch = max(1, int(player.rate / 5)) if player.rate else CHUNK_ITEMS
            while not player.done():
                live += await player.play(live_items(scenario, int(time.time() * 1000), batch))
        await asyncio.gather(*(p.flush() for p in publishers.values()))
        sent = sum(p.sent for p in publishers.values())
        acked = sum(p.acked for p in publishers.values())
    result = truth.build()
    if truth_path is not None:
        result.write(truth_path)
    return SimulationResult(
        result, sent, acked, history, live, complete, time.monotonic() - player.started
    )


# --- command line --------------------------------------------------------------------------


def _share(text: str) -> float:
    value = ascii_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def _positive_int(text: str) -> int:
    value = ascii_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _rfc3339_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 timestamp") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs an offset, e.g. Z or +08:00")
    return int(moment.timestamp() * 1000)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "simulate",
        help="publish a reproducible simulated loan history, then live events",
        description="Seeded: the same seed, arguments and --now give the same events.",
    )
    add = parser.add_argument
    add("--seed", type=ascii_int, default=1)
    add("--lenders", type=_positive_int, default=5, help="number of lenders (default 5)")
    add("--borrowers", type=_positive_int, default=1000, help="number of borrowers")
    add(
        "--rate",
        type=ascii_float,
        default=0.0,
        help=f"events/s, 0 = unlimited (live without --events: {LIVE_DEFAULT_RATE:g})",
    )
    add("--duration", type=ascii_float, default=None, help="stop after S seconds")
    add("--events", type=_positive_int, default=None, help="stop after N loan records")
    add("--days", type=_positive_int, default=30, help="history length in days (default 30)")
    add("--consent-rate", type=_share, default=0.3, help="share of (borrower, lender) consents")
    add("--duplicate-rate", type=_share, default=0.01)
    add("--late-rate", type=_share, default=0.02)
    add("--malformed-rate", type=_share, default=0.005)
    add(
        "--cancel-rate",
        type=_share,
        default=0.003,
        help="cancels per loan event (default 0.003): each withdraws an event of the same "
        "lender and borrower, some beyond the grace period, some published before it",
    )
    add("--now", type=_rfc3339_ms, default=None, help="end of the history (default: now)")
    add("--truth", type=Path, default=None, help="write the expected outcome as JSON here")
    add("--quiet", action="store_true", help="no progress bar (none is drawn in a pipe anyway)")
    return parser


def run(args: argparse.Namespace) -> int:
    params = SimulationParams(
        seed=args.seed,
        lenders=args.lenders,
        borrowers=args.borrowers,
        rate=args.rate,
        duration_s=args.duration,
        events=args.events,
        days=args.days,
        consent_rate=args.consent_rate,
        duplicate_rate=args.duplicate_rate,
        late_rate=args.late_rate,
        malformed_rate=args.malformed_rate,
        cancel_rate=args.cancel_rate,
        now_ms=args.now,
    )
    return asyncio.run(_run(get_settings(), params, args.truth, not args.quiet))


async def _run(settings: Settings, params: SimulationParams, truth: Path | None, loud: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        result = await run_simulation(settings, params, truth_path=truth, progress=loud, stop=stop)
    except PublishError as exc:
        return fail("simulate", f"not every record was acknowledged: {exc}",
                    ExitCode.TEMP_FAIL)
    except (TopicAdminError, BrokerUnavailable, PublisherError) as exc:
        return fail("simulate", str(exc), ExitCode.UNAVAILABLE)
    t = result.truth
    print(
        f"simulate: published {t.published['loans']:,} loan events, {t.published['consent']:,}"
        f" consent records, {t.published['raw']:,} malformed records for {len(t.lenders)} "
        f"lenders in {result.elapsed_s:.1f}s ({result.acked:,} acknowledged); expected "
        f"{len(t.admitted):,} admitted, {t.rejected_total():,} rejected"
        + (f"; truth in {truth}" if truth else ""),
        file=sys.stderr,
    )
    return ExitCode.OK
