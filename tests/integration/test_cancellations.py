"""Lender cancellations (issue 16) against the real stack: Kafka -> worker -> Redis -> ClickHouse.

ONE deployment and ONE worker serve every test of this module (the module fixture ``run``),
with ``DEDUP_TTL_DAYS=1`` and the default grace period (72 h). Each scenario has borrowers of its
own; everything is published in three phases, the pipeline drained after each, and after each
phase the risk API is asked about every borrower and the rejection and alert topics are read.
Then the worker stops and ClickHouse is read once (the embedded chDB folder belongs to the
worker while it runs). The tests only judge what the fixture collected.

Expected values come from the rule of the README (Corrections), computed here without any
registry module: ``cancelled`` = the ``(borrower, lender, cancels_event_id)`` of the admitted
cancels; ``counted`` = the admitted events that are not cancels and not cancelled. Buckets and
answers are computed from ``counted`` only; ClickHouse's all-zero bucket rows (allowed: a bucket
whose every event was cancelled) are dropped before comparing.

Scenarios (N = the fixture's start, H = hour, D = day):

* ``beyond_grace``: draws at N-6D (bank B) and N-5D (bank A, the target) and a repayment at
  N-5D (bank B); phase 2 a repayment at N-2H evicts the target's day from stream state;
  phase 3 bank A cancels the N-5D draw.
* ``cancel_first``: the cancel is published (phase 1) before the draw it names (phase 2).
* ``unmatched``: bank A cancels ``c-x``, an id bank A never sent (bank B did send a ``c-x``
  for the same borrower). The borrower is alone on its ``registry.validated`` partition, so
  that partition's stream time is the borrower's own: phase 1 stays below the cancel's
  ``occurred_at + 1 day``, phase 2 publishes a repayment 2 days after the cancel.
* ``unmatched_idle``: the same, but the borrower is never seen again: a neighbour alone with
  them on another partition moves that partition's stream time past the horizon (phase 2).
* ``repeated``: a cancel, then (phase 2) the same cancel re-sent, a second cancel of the same
  event and a cancel of the first cancel.
* ``velocity``: four draws in 4 h, one cancelled, then a fifth (no ``draws_24h`` alert: the
  threshold is 5); and five draws that raise the alert, then a cancel and a sixth draw (the
  alert is neither withdrawn nor raised again).
* ``no_consent``: a cancel after the consent was revoked is NO_CONSENT and cancels nothing.

A worker crash between a cancel's outputs and its commit (a replayed cancel) is not exercised
here.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from schemas import national_id
from schemas.codec import LOAN_EVENT, REJECTION, codec_for
from schemas.pseudonym import partition_of
from schemas.records import (
    ConsentAction,
    ConsentRecord,
    EventType,
    LoanEvent,
    format_timestamp,
)
from streams.alerts import ALERT_SCHEMA
from streams.kafka.topics import ensure_lender_topics
from streams.lender.publisher import LenderPublisher
from streams.settings import Settings
from tests.conftest import WorkerProcess, unique
from tests.support.oracle import pseudonym
from tests.support.pipeline import read_to_end, wait_drained
from tests.support.services import REPO, Services, free_port, settings_env

pytestmark = pytest.mark.integration

H, D = 3_600_000, 86_400_000
BANK_A, BANK_B = "cx-bank-a", "cx-bank-b"
TOKEN = "tok-cx-risk-5a1e"
API_TOKENS = f"cx-risk:{TOKEN}"
WINDOW = 10  # local days asked for; every event of the module is at most 6 days old
PHASES = 3
PARTITIONS = 6

ADMITTED, DUPLICATE, NO_CONSENT = "admitted", "DUPLICATE", "NO_CONSENT"
UNMATCHED = "CANCEL_UNMATCHED"

_CLICKHOUSE = """
import json, sys
from consumers.clickhouse.client import connect
from streams.settings import Settings
ch = connect(Settings())
def rows(sql):
    return [list(r) for r in ch.query(sql)]
BUCKET = ("draws, draw_amount_minor, repayments, repaid_amount_minor, defaults, "
          "arraySort(lenders), toUnixTimestamp64Milli(last_draw_at)")
json.dump({
    "ledger": rows("SELECT borrower, lender_id, event_id, loan_id, event_type, amount_minor, "
                   "currency, toUnixTimestamp64Milli(occurred_at), product, cancels_event_id "
                   "FROM admitted_events FINAL"),
    "ledger_duplicates": rows("SELECT count() - uniqExact(borrower, lender_id, event_id) "
                              "FROM admitted_events FINAL")[0][0],
    "daily": rows(f"SELECT borrower, toString(day), {BUCKET} FROM borrower_daily FINAL"),
    "hourly": rows("SELECT borrower, formatDateTime(hour, '%Y-%m-%dT%H:00'), "
                   f"{BUCKET} FROM borrower_hourly FINAL"),
    "rejections": rows("SELECT lender_id, reason, detail, event_id, source_topic, "
                       "source_partition, source_offset FROM rejections FINAL"),
}, sys.stdout, default=str)
"""


# --- the plan -----------------------------------------------------------------------------------


@dataclass
class Sent:
    phase: int
    event: LoanEvent
    fate: str = ADMITTED  # ADMITTED, DUPLICATE or NO_CONSENT


@dataclass
class Scene:
    name: str
    borrowers: list[str]
    consents: list[ConsentRecord] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    #: (lender, event_id) of the admitted cancels to be reported CANCEL_UNMATCHED (phase 2)
    unmatched: list[tuple[str, str]] = field(default_factory=list)

    def add(self, phase: int, event: LoanEvent, fate: str = ADMITTED) -> LoanEvent:
        self.sent.append(Sent(phase, event, fate))
        return event

    @property
    def admitted(self) -> list[LoanEvent]:
        return [s.event for s in self.sent if s.fate == ADMITTED]


def _at(ms: int) -> int:
    return ms // 1000 * 1000 + 250  # whole seconds plus a fixed millisecond part


def _ev(kind: EventType, eid: str, lender: str, who: str, at: int, amount: int = 0,
        *, product: str | None = None, cancels: str | None = None) -> LoanEvent:
    return LoanEvent(eid, lender, who, f"loan-{who[-4:]}", kind, amount, "CNY", _at(at), product,
                     cancels)


def draw(eid: str, lender: str, who: str, at: int, amount: int, **kw: Any) -> LoanEvent:
    return _ev(EventType.DRAW, eid, lender, who, at, amount, **kw)


def repay(eid: str, lender: str, who: str, at: int, amount: int) -> LoanEvent:
    return _ev(EventType.REPAYMENT, eid, lender, who, at, amount)


def cancel(eid: str, lender: str, who: str, at: int, target: str, amount: int = 0) -> LoanEvent:
    return _ev(EventType.CANCEL, eid, lender, who, at, amount, cancels=target)


def _borrowers(key: bytes) -> dict[str, str]:
    """National ids per role: ``unmatched`` alone on its registry partition, ``idle`` and
    ``neighbour`` alone together on another, everyone else on the remaining four."""
    rng = random.Random(20261616)

    def where(bid: str) -> int:
        return partition_of(pseudonym(key, bid), PARTITIONS)

    def pick(ok: Any) -> str:
        bid = national_id.generate(rng)
        while not ok(where(bid)):
            bid = national_id.generate(rng)
        return bid

    ids = {"unmatched": pick(lambda p: True)}
    ids["idle"] = pick(lambda p: p != where(ids["unmatched"]))
    ids["neighbour"] = pick(lambda p: p == where(ids["idle"]))
    reserved = {where(ids["unmatched"]), where(ids["idle"])}
    for role in ("beyond_grace", "cancel_first", "repeated", "velocity_1", "velocity_2",
                 "no_consent"):
        ids[role] = pick(lambda p: p not in reserved)
    return ids


def plan(now: int, key: bytes) -> dict[str, Scene]:
    ids = _borrowers(key)
    scenes: dict[str, Scene] = {}

    def scene(name: str, *roles: str) -> Scene:
        s = scenes[name] = Scene(name, [ids[r] for r in roles])
        return s

    # a. the target's day leaves stream state (phase 2), then the cancel (phase 3)
    s = scene("beyond_grace", "beyond_grace")
    who = ids["beyond_grace"]
    target_at = now - 5 * D - (now - 5 * D) % H + 10 * 60_000  # 10 min past an hour
    s.add(1, draw("a-u", BANK_B, who, now - 6 * D, 120_000))
    s.add(1, draw("a-t", BANK_A, who, target_at, 250_000, product="huabei"))
    s.add(1, repay("a-r1", BANK_B, who, target_at + 20 * 60_000, 30_000))  # same hour
    s.add(2, repay("a-r2", BANK_B, who, now - 2 * H, 45_000))
    s.add(3, cancel("a-c", BANK_A, who, now - H, "a-t"))

    # b. the cancel arrives before the draw it names
    s = scene("cancel_first", "cancel_first")
    who = ids["cancel_first"]
    s.add(1, draw("b-d", BANK_A, who, now - 3 * H, 50_000))
    s.add(1, cancel("b-c", BANK_A, who, now - 30 * 60_000, "b-t"))
    s.add(2, draw("b-t", BANK_A, who, now - 2 * H, 70_000, product="jiebei"))

    # c. a cancel of an id bank A never sent; bank B's event of that id is another event
    s = scene("unmatched", "unmatched")
    who = ids["unmatched"]
    s.add(1, draw("c-x", BANK_B, who, now - 3 * D, 30_000))
    s.add(1, cancel("c-cancel-unknown", BANK_A, who, now - 3 * D + H, "c-x"))
    s.add(2, repay("c-later", BANK_A, who, now - 3 * D + H + 2 * D, 20_000))
    s.unmatched.append((BANK_A, "c-cancel-unknown"))

    # c'. the same, the borrower never seen again; a neighbour's draw moves the partition on
    s = scene("unmatched_idle", "idle", "neighbour")
    idle, neighbour = ids["idle"], ids["neighbour"]
    s.add(1, draw("g-1", BANK_B, idle, now - 4 * D, 25_000))
    s.add(1, cancel("g-cancel-unknown", BANK_B, idle, now - 4 * D + H, "g-never-sent"))
    s.add(1, draw("x-1", BANK_A, neighbour, now - 4 * D + 2 * H, 15_000))
    s.add(2, draw("x-2", BANK_A, neighbour, now - 2 * D, 35_000))
    s.unmatched.append((BANK_B, "g-cancel-unknown"))

    # d. a re-sent cancel, a second cancel of the same event, a cancel of a cancel
    s = scene("repeated", "repeated")
    who = ids["repeated"]
    s.add(1, draw("d-1", BANK_A, who, now - 4 * H, 40_000))
    s.add(1, draw("d-2", BANK_A, who, now - 3 * H, 60_000))
    first = s.add(1, cancel("d-c1", BANK_A, who, now - 2 * H, "d-2"))
    s.add(2, first, DUPLICATE)  # the very same record again
    s.add(2, cancel("d-c2", BANK_A, who, now - H, "d-2", amount=60_000))
    s.add(2, cancel("d-c3", BANK_A, who, now - 50 * 60_000, "d-c1"))

    # e. velocity: draws_24h fires at 5 draws within 24 h (the default threshold)
    s = scene("velocity", "velocity_1", "velocity_2")
    one, two = ids["velocity_1"], ids["velocity_2"]
    for i, back in enumerate((5, 4, 3, 2), start=1):
        s.add(1, draw(f"e1-{i}", BANK_B, one, now - back * H, 10_000 * i))
    s.add(1, cancel("e1-c", BANK_B, one, now - 100 * 60_000, "e1-2"))
    s.add(2, draw("e1-5", BANK_B, one, now - H, 50_000))
    for i, back in enumerate((6, 5, 4, 3, 2), start=1):
        s.add(1, draw(f"e2-{i}", BANK_B, two, now - back * H, 11_000 * i))
    s.add(2, cancel("e2-c", BANK_B, two, now - 70 * 60_000, "e2-3"))
    s.add(2, draw("e2-6", BANK_B, two, now - 30 * 60_000, 66_000))

    # f. a cancel without consent at its own occurred_at
    s = scene("no_consent", "no_consent")
    who = ids["no_consent"]
    s.consents.append(ConsentRecord(BANK_A, who, ConsentAction.REVOKE, _at(now - 2 * H)))
    s.add(1, draw("f-1", BANK_A, who, now - 3 * H, 80_000))
    s.add(1, cancel("f-c", BANK_A, who, now - H, "f-1"), NO_CONSENT)

    for s in scenes.values():  # consent since 30 days to every lender the borrower uses
        pairs = sorted({(x.event.lender_id, x.event.borrower_id) for x in s.sent})
        s.consents[:0] = [ConsentRecord(lender, bid, ConsentAction.GRANT, _at(now - 30 * D))
                          for lender, bid in pairs]
    return scenes


# --- the oracle ---------------------------------------------------------------------------------


def counted(admitted: list[LoanEvent]) -> list[LoanEvent]:
    """The README's rule: admitted non-cancels that no admitted cancel of the same lender and
    borrower names."""
    cancelled = {(ev.borrower_id, ev.lender_id, ev.cancels_event_id)
                 for ev in admitted if ev.event_type is EventType.CANCEL}
    return [ev for ev in admitted if ev.event_type is not EventType.CANCEL
            and (ev.borrower_id, ev.lender_id, ev.event_id) not in cancelled]


def _money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _local_day(ms: int, settings: Settings) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(settings.tz).date()


def expected_buckets(events: list[LoanEvent], settings: Settings
                     ) -> tuple[dict[tuple[str, str], list], dict[tuple[str, str], list]]:
    """(daily, hourly): ``(pseudonym, day or UTC hour) -> [draws, draw_amount, repayments,
    repaid_amount, defaults, sorted lenders, last draw ms]``."""
    key = settings.pseudonym_key_bytes
    daily: dict[tuple[str, str], list] = {}
    hourly: dict[tuple[str, str], list] = {}
    for ev in events:
        who = pseudonym(key, ev.borrower_id)
        at = datetime.fromtimestamp(ev.occurred_at_ms / 1000, UTC)
        for table, bucket in ((daily, _local_day(ev.occurred_at_ms, settings).isoformat()),
                              (hourly, at.strftime("%Y-%m-%dT%H:00"))):
            row = table.setdefault((who, bucket), [0, 0, 0, 0, 0, set(), None])
            if ev.event_type is EventType.DRAW:
                row[0] += 1
                row[1] += ev.amount_minor
                row[6] = max(row[6] or 0, ev.occurred_at_ms)
            elif ev.event_type is EventType.REPAYMENT:
                row[2] += 1
                row[3] += ev.amount_minor
            else:
                row[4] += 1
            row[5].add(ev.lender_id)
    for table in (daily, hourly):
        for row in table.values():
            row[5] = sorted(row[5])
    return daily, hourly


def expected_answer(events: list[LoanEvent], settings: Settings, end: date) -> dict[str, Any]:
    """The frequency answer's numbers for ``events`` (one borrower) over WINDOW days to ``end``."""
    start = end - timedelta(days=WINDOW - 1)
    inside = [ev for ev in events if start <= _local_day(ev.occurred_at_ms, settings) <= end]
    draws = [ev for ev in inside if ev.event_type is EventType.DRAW]
    repayments = [ev for ev in inside if ev.event_type is EventType.REPAYMENT]
    per_day: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for ev in draws:
        per_day[_local_day(ev.occurred_at_ms, settings)][0] += 1
        per_day[_local_day(ev.occurred_at_ms, settings)][1] += ev.amount_minor
    last = max((ev.occurred_at_ms for ev in draws), default=None)
    return {
        "window_start": start.isoformat(), "window_end": end.isoformat(),
        "draws": len(draws), "draw_amount": _money(sum(ev.amount_minor for ev in draws)),
        "repayments": len(repayments),
        "repaid_amount": _money(sum(ev.amount_minor for ev in repayments)),
        "defaults": sum(1 for ev in inside if ev.event_type is EventType.DEFAULT),
        "distinct_lenders": len({ev.lender_id for ev in inside}),
        "active_days": len({_local_day(ev.occurred_at_ms, settings) for ev in inside}),
        "last_draw_at": None if last is None else format_timestamp(last),
        "daily": [{"date": (start + timedelta(days=n)).isoformat(),
                   "draws": per_day[start + timedelta(days=n)][0],
                   "draw_amount": _money(per_day[start + timedelta(days=n)][1])}
                  for n in range(WINDOW)],
    }


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Run:
    settings: Settings
    scenes: dict[str, Scene]
    #: (phase, national id) -> the frequency answer after that phase drained
    answers: dict[tuple[int, str], dict[str, Any]]
    #: phase -> every rejection notice on lenders.*.rejected (decoded), after that phase
    notices: dict[int, list[dict[str, Any]]]
    #: phase -> every record of registry.alerts (decoded), after that phase
    alerts: dict[int, list[dict[str, Any]]]
    #: phase -> registry_events_rejected_total as {(lender, reason): value}
    rejected_metric: dict[int, dict[tuple[str, str], float]]
    #: (lender, event_id) -> [(partition, offset)] of every record in lenders.<L>.loans
    positions: dict[tuple[str, str], list[tuple[int, int]]]
    stored: dict[str, Any]
    timings: dict[str, float]

    def who(self, national: str) -> str:
        return pseudonym(self.settings.pseudonym_key_bytes, national)


def _rejected_metric(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("registry_events_rejected_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line[:line.rindex("}")]))
            out[(labels["lender"], labels["reason"])] = float(line.rsplit(" ", 1)[1])
    return out


async def _publish(settings: Settings, consents: list[ConsentRecord],
                   events: list[LoanEvent]) -> None:
    for lender in sorted({r.lender_id for r in consents} | {e.lender_id for e in events}):
        async with LenderPublisher(settings, lender) as publisher:
            for rec in (r for r in consents if r.lender_id == lender):
                await publisher.publish_consent(rec)  # consent first and acknowledged
            await publisher.flush()
            for ev in (e for e in events if e.lender_id == lender):
                await publisher.publish_event(ev)
            await publisher.flush()


async def _read(settings: Settings, topics: set[str], schema: str) -> list[dict[str, Any]]:
    codec, out = codec_for(schema), []

    def keep(record: Any) -> None:
        out.append(codec.decode(record.value) | {"_partition": record.partition,
                                                 "_offset": record.offset})

    await read_to_end(settings, lambda name: name in topics, keep, timeout=60)
    return out


@pytest.fixture(scope="module")
async def run(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Run:
    began = time.monotonic()
    folder = tmp_path_factory.mktemp("cancellations")
    name = unique("t")
    settings = Settings(
        kafka_bootstrap=services.kafka_bootstrap, redis_url=services.redis_url,
        clickhouse_url=services.clickhouse_url, clickhouse_database=name,
        kafka_namespace=f"{name}.", registry_app_id=name, registry_data_dir=folder / "data",
        api_port=free_port(), registry_partitions=PARTITIONS, dedup_ttl_days=1,
    )
    now = int(time.time() * 1000)
    scenes = plan(now, settings.pseudonym_key_bytes)
    consents = [rec for s in scenes.values() for rec in s.consents]
    national_ids = [bid for s in scenes.values() for bid in s.borrowers]
    rejected_topics = {settings.topics.rejected(lender) for lender in (BANK_A, BANK_B)}
    for lender in (BANK_A, BANK_B):
        await ensure_lender_topics(settings, lender)

    answers: dict[tuple[int, str], dict[str, Any]] = {}
    notices: dict[int, list[dict[str, Any]]] = {}
    alerts: dict[int, list[dict[str, Any]]] = {}
    metric: dict[int, dict[tuple[str, str], float]] = {}
    timings: dict[str, float] = {}
    base = f"http://{settings.api_host}:{settings.api_port}"
    worker: WorkerProcess | None = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            for phase in range(1, PHASES + 1):
                started = time.monotonic()
                await _publish(settings, consents if phase == 1 else [],
                               [x.event for s in scenes.values() for x in s.sent
                                if x.phase == phase])
                if worker is None:
                    worker = WorkerProcess(settings, folder / "worker.log",
                                           {"API_TOKENS": API_TOKENS})
                await wait_drained(settings, timeout=240, worker=worker)
                deadline = time.monotonic() + 120
                while True:
                    try:
                        async with http.get(f"{base}/metrics") as response:
                            assert response.status == 200
                            metric[phase] = _rejected_metric(await response.text())
                        break
                    except (aiohttp.ClientError, AssertionError):
                        assert worker.proc.poll() is None, worker.log_tail()
                        assert time.monotonic() < deadline, (
                            f"the worker's API never came up\n{worker.log_tail()}")
                        await asyncio.sleep(0.25)
                for bid in national_ids:
                    async with http.post(f"{base}/api/v1/frequency",
                                         headers={"Authorization": f"Bearer {TOKEN}"},
                                         json={"borrower_id": bid, "window_days": WINDOW}
                                         ) as response:
                        assert response.status == 200, await response.text()
                        answers[(phase, bid)] = await response.json()
                notices[phase] = await _read(settings, rejected_topics, REJECTION)
                alerts[phase] = await _read(settings, {settings.topics.alerts}, ALERT_SCHEMA)
                timings[f"phase {phase}"] = time.monotonic() - started
        assert worker is not None
        assert worker.stop() == 0, worker.log_tail()
    finally:
        if worker is not None:
            worker.stop()

    loans = await _read(settings, {settings.topics.loans(lender) for lender in (BANK_A, BANK_B)},
                        LOAN_EVENT)
    positions: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for rec in loans:
        positions[(rec["lender_id"], rec["event_id"])].append((rec["_partition"], rec["_offset"]))
    done = subprocess.run([sys.executable, "-c", _CLICKHOUSE], env=settings_env(settings),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    timings["total"] = time.monotonic() - began
    print(f"\n[cancellations] timings: "
          f"{', '.join(f'{k} {v:.1f}s' for k, v in timings.items())}")
    return Run(settings, scenes, answers, notices, alerts, metric, dict(positions),
               json.loads(done.stdout), timings)


# --- shared checks ------------------------------------------------------------------------------


def _stored_buckets(run: Run, table: str, borrowers: list[str]
                    ) -> tuple[dict[tuple[str, str], list], int]:
    """The ClickHouse rows of ``borrowers`` (national ids), all-zero rows dropped; and how
    many were dropped."""
    wanted = {run.who(b) for b in borrowers}
    rows, zeros = {}, 0
    for who, bucket, *values in run.stored[table]:
        if who not in wanted:
            continue
        if values == [0, 0, 0, 0, 0, [], None]:
            zeros += 1
            continue
        values[6] = None if values[6] is None else int(values[6])
        rows[(who, bucket)] = values
    return rows, zeros


def _check_buckets(run: Run, scene: Scene) -> tuple[int, int]:
    """Daily and hourly rows of the scene's borrowers equal the oracle's; returns the number of
    all-zero (daily, hourly) rows dropped."""
    daily, hourly = expected_buckets(counted(scene.admitted), run.settings)
    got_daily, zero_days = _stored_buckets(run, "daily", scene.borrowers)
    got_hourly, zero_hours = _stored_buckets(run, "hourly", scene.borrowers)
    assert got_daily == daily
    assert got_hourly == hourly
    return zero_days, zero_hours


def _ledger(run: Run, scene: Scene) -> dict[tuple[str, str], list]:
    wanted = {run.who(b) for b in scene.borrowers}
    return {(row[1], row[2]): row[3:] for row in run.stored["ledger"] if row[0] in wanted}


def _check_ledger(run: Run, scene: Scene) -> None:
    """Every admitted event of the scene, cancels included, once, exactly as sent."""
    expected = {(ev.lender_id, ev.event_id): [ev.loan_id, ev.event_type.value, ev.amount_minor,
                                              ev.currency, ev.occurred_at_ms, ev.product or "",
                                              ev.cancels_event_id or ""]
                for ev in scene.admitted}
    got = {k: [v[0], v[1], int(v[2]), v[3], int(v[4]), v[5], v[6]]
           for k, v in _ledger(run, scene).items()}
    assert got == expected


def _answer(run: Run, phase: int, national: str) -> dict[str, Any]:
    body = run.answers[(phase, national)]
    assert national not in json.dumps(body)
    return body


def _check_answer(run: Run, phase: int, national: str, events: list[LoanEvent]) -> None:
    body = _answer(run, phase, national)
    expected = expected_answer([ev for ev in events if ev.borrower_id == national],
                               run.settings, date.fromisoformat(body["window_end"]))
    assert {k: body[k] for k in expected} == expected


def _up_to(scene: Scene, phase: int) -> list[LoanEvent]:
    return [s.event for s in scene.sent if s.fate == ADMITTED and s.phase <= phase]


def _notices(run: Run, phase: int, scene: Scene) -> list[tuple]:
    ids = {(s.event.lender_id, s.event.event_id) for s in scene.sent}
    return sorted((n["lender_id"], n["reason"], n["event_id"], n["source_topic"],
                   n["source_partition"], n["source_offset"])
                  for n in run.notices[phase] if (n["lender_id"], n["event_id"]) in ids)


# --- the tests ----------------------------------------------------------------------------------


def test_cancel_beyond_grace_corrects_buckets_and_answer(run: Run) -> None:
    scene = run.scenes["beyond_grace"]
    who = scene.borrowers[0]
    u, t, _, _, c = (s.event for s in scene.sent)
    assert t.occurred_at_ms + 4 * D < c.occurred_at_ms  # well beyond the 72 h grace

    before = _answer(run, 2, who)  # the target's day left stream state; not cancelled yet
    assert (before["draws"], before["draw_amount"], before["distinct_lenders"],
            before["last_draw_at"]) == (2, "3700.00", 2, format_timestamp(t.occurred_at_ms))
    _check_answer(run, 2, who, _up_to(scene, 2))

    after = _answer(run, 3, who)
    assert (after["draws"], after["draw_amount"], after["repayments"], after["repaid_amount"],
            after["distinct_lenders"], after["last_draw_at"]) == (
        1, "1200.00", 2, "750.00", 1, format_timestamp(u.occurred_at_ms))
    _check_answer(run, 3, who, counted(scene.admitted))

    zero_days, zero_hours = _check_buckets(run, scene)
    assert (zero_days, zero_hours) == (0, 0)  # the target's day and hour keep the repayment
    daily, _ = _stored_buckets(run, "daily", [who])
    target_day = (run.who(who), _local_day(t.occurred_at_ms, run.settings).isoformat())
    assert daily[target_day] == [0, 0, 1, 30_000, 0, [BANK_B], None]
    _check_ledger(run, scene)
    assert _ledger(run, scene)[(BANK_A, "a-c")][1:] == [
        "cancel", 0, "CNY", c.occurred_at_ms, "", "a-t"]
    assert _notices(run, 3, scene) == []


def test_cancel_published_before_its_event_wins(run: Run) -> None:
    scene = run.scenes["cancel_first"]
    who = scene.borrowers[0]
    d, _, t = (s.event for s in scene.sent)
    expected = (1, "500.00", 1, format_timestamp(d.occurred_at_ms))
    for phase in (1, 2, 3):  # before the draw arrives and after: the same answer
        body = _answer(run, phase, who)
        assert (body["draws"], body["draw_amount"], body["distinct_lenders"],
                body["last_draw_at"]) == expected, phase
        _check_answer(run, phase, who, counted(_up_to(scene, phase)))

    _check_ledger(run, scene)  # the draw's row is held, unchanged, beside the cancel's row
    ledger = _ledger(run, scene)
    assert ledger[(BANK_A, "b-t")][1:] == ["draw", 70_000, "CNY", t.occurred_at_ms, "jiebei", ""]
    assert ledger[(BANK_A, "b-c")][-1] == "b-t"  # hence "cancelled" for b-t
    zeros = _check_buckets(run, scene)
    hour = datetime.fromtimestamp(t.occurred_at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:00")
    hourly, _ = _stored_buckets(run, "hourly", [who])
    assert (run.who(who), hour) not in hourly  # no row, or an all-zero one
    print(f"\n[cancellations] cancel first: all-zero rows (daily, hourly) {zeros}")
    assert _notices(run, 3, scene) == []


def test_unmatched_cancel_is_reported_once_the_horizon_passes(run: Run) -> None:
    scene = run.scenes["unmatched"]
    who = scene.borrowers[0]
    other, cancel_ev, later = (s.event for s in scene.sent)
    assert later.occurred_at_ms >= cancel_ev.occurred_at_ms + D  # DEDUP_TTL_DAYS=1
    loans_topic = run.settings.topics.loans(BANK_A)
    [(partition, offset)] = run.positions[(BANK_A, "c-cancel-unknown")]

    # phase 1: the partition's stream time is below the horizon: nothing reported yet
    assert _notices(run, 1, scene) == []
    assert run.rejected_metric[1].get((BANK_A, UNMATCHED), 0) == 0
    # phase 2: a repayment two days later moves it past: reported once, with the cancel's
    # own position and id
    expected = [(BANK_A, UNMATCHED, "c-cancel-unknown", loans_topic, partition, offset)]
    assert _notices(run, 2, scene) == expected
    assert _notices(run, 3, scene) == expected  # and only once
    [notice] = [n for n in run.notices[3]
                if n["reason"] == UNMATCHED and n["lender_id"] == BANK_A]
    assert "cancels_event_id" in notice["detail"], notice["detail"]
    print(f"\n[cancellations] CANCEL_UNMATCHED detail: {notice['detail']!r}")
    assert run.rejected_metric[2].get((BANK_A, UNMATCHED)) == 1
    assert run.rejected_metric[3].get((BANK_A, UNMATCHED)) == 1
    stored = [r for r in run.stored["rejections"] if r[1] == UNMATCHED and r[0] == BANK_A]
    assert stored == [[BANK_A, UNMATCHED, notice["detail"], "c-cancel-unknown", loans_topic,
                       partition, offset]]

    # bank B's event of the same id is another lender's: untouched, still counted
    for phase in (1, 2, 3):
        body = _answer(run, phase, who)
        assert (body["draws"], body["draw_amount"],
                body["last_draw_at"]) == (1, "300.00", format_timestamp(other.occurred_at_ms))
        _check_answer(run, phase, who, counted(_up_to(scene, phase)))
    assert _answer(run, 3, who)["distinct_lenders"] == 2  # bank B's draw, bank A's repayment
    _check_ledger(run, scene)  # the cancel's own row stays
    assert _ledger(run, scene)[(BANK_A, "c-cancel-unknown")][-1] == "c-x"
    _check_buckets(run, scene)


def test_unmatched_cancel_is_reported_when_its_borrower_is_never_seen_again(run: Run) -> None:
    scene = run.scenes["unmatched_idle"]
    idle, neighbour = scene.borrowers
    cancel_ev = scene.sent[1].event
    assert scene.sent[3].event.occurred_at_ms >= cancel_ev.occurred_at_ms + D
    loans_topic = run.settings.topics.loans(BANK_B)
    [(partition, offset)] = run.positions[(BANK_B, "g-cancel-unknown")]
    assert _notices(run, 1, scene) == []
    assert run.rejected_metric[1].get((BANK_B, UNMATCHED), 0) == 0
    expected = [(BANK_B, UNMATCHED, "g-cancel-unknown", loans_topic, partition, offset)]
    assert _notices(run, 2, scene) == expected
    assert _notices(run, 3, scene) == expected
    assert run.rejected_metric[2].get((BANK_B, UNMATCHED)) == 1
    assert run.rejected_metric[3].get((BANK_B, UNMATCHED)) == 1
    assert [r[3:] for r in run.stored["rejections"] if r[1] == UNMATCHED and r[0] == BANK_B] \
        == [["g-cancel-unknown", loans_topic, partition, offset]]
    for national in (idle, neighbour):
        _check_answer(run, 3, national, counted(scene.admitted))
    assert _answer(run, 3, idle)["draws"] == 1 and _answer(run, 3, neighbour)["draws"] == 2
    _check_ledger(run, scene)
    _check_buckets(run, scene)


def test_resent_and_second_cancels_change_nothing(run: Run) -> None:
    scene = run.scenes["repeated"]
    who = scene.borrowers[0]
    first = scene.sent[0].event
    for phase in (1, 2, 3):  # after the first cancel, and after the repeated ones
        body = _answer(run, phase, who)
        assert (body["draws"], body["draw_amount"], body["distinct_lenders"],
                body["last_draw_at"]) == (1, "400.00", 1, format_timestamp(first.occurred_at_ms))
        _check_answer(run, phase, who, counted(scene.admitted))
    assert _answer(run, 1, who) | {"as_of": None, "request_id": None} == \
        _answer(run, 3, who) | {"as_of": None, "request_id": None}

    positions = run.positions[(BANK_A, "d-c1")]
    assert len(positions) == 2
    assert _notices(run, 1, scene) == []
    resent = (BANK_A, DUPLICATE, "d-c1", run.settings.topics.loans(BANK_A), *positions[1])
    assert _notices(run, 3, scene) == [resent]
    _check_ledger(run, scene)  # d-c1 held once; d-c2 and d-c3 held, counting nothing
    ledger = _ledger(run, scene)
    assert [ledger[(BANK_A, e)][-1] for e in ("d-c1", "d-c2", "d-c3")] == ["d-2", "d-2", "d-c1"]
    _check_buckets(run, scene)


def test_cancelled_draw_raises_no_velocity_alert(run: Run) -> None:
    scene = run.scenes["velocity"]
    one, two = scene.borrowers

    def of(phase: int, national: str) -> list[tuple]:
        return [(a["alert_id"], a["rule"], a["count"], a["threshold"], a["triggered_at_ms"],
                 a["lenders"]) for a in run.alerts[phase] if a["borrower"] == run.who(national)]

    fifth = next(s.event for s in scene.sent if s.event.event_id == "e2-5")
    raised = of(1, two)
    assert [a[1:] for a in raised] == [("draws_24h", 5, 5, fifth.occurred_at_ms, [BANK_B])]
    assert of(2, two) == raised and of(3, two) == raised  # not withdrawn, not raised again
    # four draws, one cancelled, then a fifth: four count, below the threshold
    assert of(1, one) == of(2, one) == of(3, one) == []
    assert _answer(run, 3, one)["draws"] == 4 and _answer(run, 3, two)["draws"] == 5
    for national in (one, two):
        _check_answer(run, 3, national, counted(scene.admitted))
    _check_ledger(run, scene)
    _check_buckets(run, scene)


def test_cancel_without_consent_cancels_nothing(run: Run) -> None:
    scene = run.scenes["no_consent"]
    who = scene.borrowers[0]
    draw_ev, cancel_ev = (s.event for s in scene.sent)
    [(partition, offset)] = run.positions[(BANK_A, "f-c")]
    assert _notices(run, 3, scene) == [
        (BANK_A, NO_CONSENT, "f-c", run.settings.topics.loans(BANK_A), partition, offset)]
    body = _answer(run, 3, who)
    assert (body["draws"], body["draw_amount"]) == (1, "800.00")
    _check_answer(run, 3, who, [draw_ev])
    _check_ledger(run, scene)
    assert (BANK_A, cancel_ev.event_id) not in _ledger(run, scene)
    _check_buckets(run, scene)


def test_whole_run_ledger_buckets_rejections_and_metrics(run: Run) -> None:
    """The deployment as a whole: nothing but what the scenarios expect."""
    admitted = [ev for s in run.scenes.values() for ev in s.admitted]
    assert len(run.stored["ledger"]) == len(admitted)
    assert run.stored["ledger_duplicates"] == 0
    daily, hourly = expected_buckets(counted(admitted), run.settings)
    everyone = [b for s in run.scenes.values() for b in s.borrowers]
    assert _stored_buckets(run, "daily", everyone)[0] == daily
    assert _stored_buckets(run, "hourly", everyone)[0] == hourly
    assert len({who for who, *_ in run.stored["daily"]}) == len(everyone)

    expected = [*((lender, UNMATCHED, eid) for scene in run.scenes.values()
                  for lender, eid in scene.unmatched),
                *((s.event.lender_id, s.fate, s.event.event_id)
                  for scene in run.scenes.values() for s in scene.sent if s.fate != ADMITTED)]
    assert sorted((r[0], r[1], r[3]) for r in run.stored["rejections"]) == sorted(expected)
    assert sorted((n["lender_id"], n["reason"], n["event_id"])
                  for n in run.notices[3]) == sorted(expected)
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for lender, reason, _ in expected:
        counts[(lender, reason)] += 1
    assert {k: v for k, v in run.rejected_metric[3].items() if v} == counts
    assert len(run.alerts[3]) == 1  # the velocity scenario's one alert
    print(f"\n[cancellations] {len(admitted)} admitted events, {len(expected)} rejections; "
          f"{run.timings}")
