"""The frequency answer: a borrower's activity over the last N local days.

Window: the local days ``[today - window_days + 1, today]`` of the registry time zone, both
ends included, so ``window_days=1`` is "today so far". The answer is read from
``borrower_daily`` (highest version per day) and ``inquiries`` with ONE point-range query on
their ``(borrower, ...)`` keys, for a whole batch of concurrent asks at once
(:func:`answer_batch`); totals, distinct lenders and the daily series are computed here, so
every number in one answer comes from the same read. Days without a row are zero days: an
unknown borrower answers with zeros, never with an error. ``daily`` lists EVERY day of the
window, oldest first, zeros included.

What it promises about freshness: ``as_of`` is the watermark the caller passes (the instant up
to which admitted events are known to be in ClickHouse), or null when unknown. Events admitted
after it may be missing from the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from schemas.records import format_timestamp

MIN_WINDOW_DAYS = 1
MAX_WINDOW_DAYS = 400
_CENT = Decimal("0.01")

#: Point-read settings (per query): one read thread. A point range of a few granules gains
#: nothing from parallel reading and pays thread start-up on every query (profile in
#: the README, Performance, "Risk API latency").
POINT_READ_SETTINGS: dict[str, Any] = {"max_threads": 1}

#: ONE query for a batch of asks: the daily rows (kind 0) and the inquiries (kind 1) of every
#: borrower in ``{b}``, over the union of their windows, as stored: no aggregation in
#: ClickHouse. Rows are few (a borrower's days and versions, its inquiries in the window) and
#: the per-query GROUP BY cost more than the rows it saves (~15% of the read's CPU at 8 and 16
#: borrowers, fresh and merged parts; README, Performance, "Risk API latency").
#:
#: Daily rows: every stored version of a day; :func:`answer_batch` keeps the highest version
#: per (borrower, day), like ``FINAL``/``argMax``. Rows of one version are identical (versioned
#: absolute rows), so which of equal-version duplicates is kept does not matter.
#:
#: Inquiries: one row per inquiry since the earliest window start; an ask counts the distinct
#: institutions whose inquiries are at or after its own start (``uniqExact(institution)``
#: over the ask's window).
_BATCH_SQL = (
    "SELECT 0 AS kind, borrower, day, version, draws, draw_amount_minor, repayments, "
    "repaid_amount_minor, defaults, lenders, toUnixTimestamp64Milli(last_draw_at) "
    "FROM borrower_daily "
    "WHERE borrower IN {b:Array(String)} AND day BETWEEN {start:Date} AND {end:Date} "
    "UNION ALL "
    "SELECT 1 AS kind, borrower, toDate(0), 0, 0, 0, 0, 0, 0, [institution], "
    "toUnixTimestamp64Milli(inquired_at) "
    "FROM inquiries "
    "WHERE borrower IN {b:Array(String)} "
    "AND inquired_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')"
)


class QueryFacade(Protocol):
    """The part of :class:`consumers.clickhouse.client.ClickHouse` this module needs."""

    def query(self, sql: str, parameters: dict[str, Any] | None = None, *,
              settings: dict[str, Any] | None = None) -> list[tuple]: ...


def money(minor: int) -> str:
    """Minor units as a decimal string with two places: ``125000`` -> ``"1250.00"``."""
    return str((Decimal(minor) * _CENT).quantize(_CENT))


def window_bounds(today: date, window_days: int) -> tuple[date, date]:
    """First and last local day of the window ending ``today`` (both included)."""
    if not MIN_WINDOW_DAYS <= window_days <= MAX_WINDOW_DAYS:
        raise ValueError(f"window_days must be between {MIN_WINDOW_DAYS} and {MAX_WINDOW_DAYS}")
    return today - timedelta(days=window_days - 1), today


def window_start_utc(start: date, tz: ZoneInfo) -> datetime:
    """The instant (UTC) of local midnight starting ``start``."""
    return datetime.combine(start, time.min, tz).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class DayActivity:
    date: date
    draws: int = 0
    draw_amount_minor: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "date": self.date.isoformat(),
            "draws": self.draws,
            "draw_amount": money(self.draw_amount_minor),
        }


@dataclass(frozen=True, slots=True)
class FrequencyAnswer:
    window_days: int
    start: date
    end: date
    draws: int = 0
    draw_amount_minor: int = 0
    repayments: int = 0
    repaid_amount_minor: int = 0
    defaults: int = 0
    distinct_lenders: int = 0
    active_days: int = 0
    last_draw_at_ms: int | None = None
    as_of_ms: int | None = None
    inquiring_institutions: int = 0
    daily: list[DayActivity] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "window_days": self.window_days,
            "window_start": self.start.isoformat(),
            "window_end": self.end.isoformat(),
            "draws": self.draws,
            "draw_amount": money(self.draw_amount_minor),
            "repayments": self.repayments,
            "repaid_amount": money(self.repaid_amount_minor),
            "defaults": self.defaults,
            "distinct_lenders": self.distinct_lenders,
            "active_days": self.active_days,
            "last_draw_at": _ts(self.last_draw_at_ms),
            "as_of": _ts(self.as_of_ms),
            "inquiring_institutions": self.inquiring_institutions,
            "daily": [day.to_json() for day in self.daily],
        }


def _ts(ms: int | None) -> str | None:
    return None if ms is None else format_timestamp(int(ms))


@dataclass(frozen=True, slots=True)
class Ask:
    """One frequency question: pseudonym ``borrower`` over ``window_days`` local days ending
    ``today`` in zone ``tz``; ``as_of_ms`` is passed through to the answer."""

    borrower: str
    window_days: int
    tz: ZoneInfo
    today: date
    as_of_ms: int | None = None

    @property
    def bounds(self) -> tuple[date, date]:
        return window_bounds(self.today, self.window_days)

    @property
    def since_ms(self) -> int:
        """Local midnight starting the window, epoch ms: the inquiry count starts there."""
        return int(window_start_utc(self.bounds[0], self.tz).timestamp() * 1000)


def frequency(
    ch: QueryFacade,
    *,
    borrower: str,
    window_days: int,
    tz: ZoneInfo,
    today: date,
    as_of_ms: int | None = None,
) -> FrequencyAnswer:
    """The answer for pseudonym ``borrower`` over the ``window_days`` local days ending today.

    Raises ``ValueError`` for a window outside 1..400 days, and the facade's
    ``ClickHouseError`` when ClickHouse cannot answer.
    """
    return answer_batch(ch, [Ask(borrower, window_days, tz, today, as_of_ms)])[0]


def answer_batch(ch: QueryFacade, asks: list[Ask]) -> list[FrequencyAnswer]:
    """The answers to ``asks``, in order, from ONE ClickHouse query (see ``_BATCH_SQL``).

    Every answer is computed from the same read, so a batch costs about one point read: the
    query covers every borrower of the batch over the union of the windows, and each answer
    keeps only its own borrower, days and inquiries. Raises ``ValueError`` for a window
    outside 1..400 days (before any query), and the facade's ``ClickHouseError`` when
    ClickHouse cannot answer.
    """
    if not asks:
        return []
    bounds = [ask.bounds for ask in asks]  # validates every window first
    since = [ask.since_ms for ask in asks]
    rows = ch.query(_BATCH_SQL, {
        "b": sorted({ask.borrower for ask in asks}),
        "start": min(b[0] for b in bounds), "end": max(b[1] for b in bounds),
        "since_ms": min(since),
    }, settings=POINT_READ_SETTINGS)
    daily: dict[str, dict[date, tuple]] = {}
    versions: dict[tuple[str, date], int] = {}
    inquired: dict[str, dict[str, int]] = {}
    for kind, borrower, day, version, *values in rows:
        if kind == 0:
            key = (borrower, _as_date(day))
            if version >= versions.get(key, -1):  # highest version of the day wins
                versions[key] = version
                daily.setdefault(borrower, {})[key[1]] = tuple(values)
        else:
            institutions = inquired.setdefault(borrower, {})
            (institution,), at = values[-2], int(values[-1])
            if at > institutions.get(institution, -1):  # latest inquiry per institution
                institutions[institution] = at
    return [
        _answer(ask, start, end, daily.get(ask.borrower, {}),
                sum(1 for latest in inquired.get(ask.borrower, {}).values()
                    if latest >= since_ms))
        for ask, (start, end), since_ms in zip(asks, bounds, since, strict=True)
    ]


def _answer(ask: Ask, start: date, end: date, by_day: dict[date, tuple],
            inquiring: int) -> FrequencyAnswer:
    draws = draw_minor = repayments = repaid_minor = defaults = active = 0
    lenders: set[str] = set()
    last_draw: int | None = None
    daily: list[DayActivity] = []
    for offset in range(ask.window_days):
        day = start + timedelta(days=offset)
        row = by_day.get(day)
        if row is None:
            daily.append(DayActivity(day))
            continue
        d_draws, d_amount, d_repay, d_repaid, d_defaults, d_lenders, d_last = row
        draws += d_draws
        draw_minor += d_amount
        repayments += d_repay
        repaid_minor += d_repaid
        defaults += d_defaults
        lenders.update(d_lenders or ())
        if d_draws or d_repay or d_defaults:
            active += 1
        if d_last is not None and (last_draw is None or d_last > last_draw):
            last_draw = int(d_last)
        daily.append(DayActivity(day, int(d_draws), int(d_amount)))
    return FrequencyAnswer(
        window_days=ask.window_days,
        start=start,
        end=end,
        draws=int(draws),
        draw_amount_minor=int(draw_minor),
        repayments=int(repayments),
        repaid_amount_minor=int(repaid_minor),
        defaults=int(defaults),
        distinct_lenders=len(lenders),
        active_days=active,
        last_draw_at_ms=last_draw,
        as_of_ms=ask.as_of_ms,
        inquiring_institutions=inquiring,
        daily=daily,
    )


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
