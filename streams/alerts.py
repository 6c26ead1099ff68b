"""Velocity alerts: per-borrower rules judged on event time in the aggregation step.

A rule has a window ``W`` (event time), a threshold ``N`` and a measure: the number of draws
(``draws_24h``) or the number of distinct lenders of those draws (``lenders_7d``). The
*trailing window* of a draw at time ``t`` holds the borrower's draws with
``t - W < occurred_at <= t``. What is promised:

* **When a rule fires.** A draw ``d`` fires rule R when its trailing window measures at least
  ``N`` and no draw in that window has fired R already. In arrival order that is the draw that
  makes the count reach ``N`` (``count == N``): seven draws in three hours fire ``draws_24h``
  once, at the fifth. Two alerts of one rule for one borrower are therefore always at least
  ``W`` apart in event time; a borrower who stays at or above the threshold is re-alerted once
  the window has slid past the previous alert and re-crossed.
* **Late draws count.** A draw that arrives out of order is inserted at its event time, and
  every window that contains it (those ending at draws in ``[t, t + W)``) is judged again, so
  five draws within 24 h fire even when they arrive out of order. An alert already sent is
  never withdrawn. This holds for any draw the registry admits, including draws beyond the
  bucket grace period (they take the buckets' correction path but still count here), as long
  as the window is complete in state (next point).
* **Bounded state, honest edges.** Draws are kept for ``retention = largest window + grace``
  behind stream time (the partition's largest event time), so a draw up to ``grace`` late is
  judged exactly. Older draws leave state and ``draws_evicted_through_ms`` advances; a draw at
  or before that mark is not recorded (it can no longer be told from a replay), and a window
  reaching back to it is not judged (it could be missing draws), so no alert is raised from
  an incomplete window.
* **Replays are recognised.** Only new draws are recorded: a draw whose key the day bucket
  already saw, or whose key is among the recent draws (this also covers replays of
  correction-path events), is a duplicate. A duplicate raises nothing new; instead every alert
  already raised whose window contains it is *re-emitted* with the same ``alert_id``, marked
  ``reemitted``. That closes the one gap of at-least-once processing: the state changelog
  reached Kafka but the alert did not before a crash. Subscribers de-duplicate by
  ``alert_id``; re-emitted records carry the same rule, window and trigger, while ``count`` and
  ``lenders`` describe the window as state knows it at re-emission (a later late draw may have
  added to it).
* **Deterministic ids.** ``alert_id`` is the hex BLAKE2b-128 of ``borrower|rule|key`` where
  ``key`` is the 64-bit event key of the triggering draw, so a replay that rebuilds the same
  state raises the same ids.

Every decision is a pure function of (state, event, stream time); the wall clock enters only
as ``emitted_at_ms`` when a record is encoded. Cost: a draw costs one pass over the borrower's
recent draws per rule (in-order draws judge one window; a late draw judges every window that
contains it).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from schemas.calendar import HOUR_MS
from streams.buckets import DRAW, BorrowerState, RecentDraw

ALERT_SCHEMA = "registry.internal.VelocityAlert"
DRAWS_24H = "draws_24h"
LENDERS_7D = "lenders_7d"
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class Rule:
    """One velocity rule; ``distinct_lenders`` selects the measure (else: number of draws)."""

    name: str
    window_ms: int
    threshold: int
    distinct_lenders: bool = False


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert raised (or re-emitted) for a borrower; see the module docstring."""

    alert_id: str
    rule: str
    borrower: str
    count: int
    threshold: int
    window_start_ms: int
    window_end_ms: int
    lenders: tuple[str, ...]
    triggered_at_ms: int
    #: True when a duplicate draw caused this record to be sent again (not a new alert)
    reemitted: bool = False

    def to_avro(self, emitted_at_ms: int) -> dict[str, Any]:
        """The ``registry.internal.VelocityAlert`` record (``reemitted`` is not on the wire)."""
        return {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "borrower": self.borrower,
            "count": self.count,
            "threshold": self.threshold,
            "window_start_ms": self.window_start_ms,
            "window_end_ms": self.window_end_ms,
            "lenders": list(self.lenders),
            "triggered_at_ms": self.triggered_at_ms,
            "emitted_at_ms": emitted_at_ms,
        }


def alert_id(borrower: str, rule: str, key: int) -> str:
    """Hex BLAKE2b-128 of ``borrower|rule|key``: the same crossing always has the same id."""
    return blake2b(f"{borrower}|{rule}|{key}".encode(), digest_size=16).hexdigest()


class AlertRules:
    """Judges the velocity rules on a borrower's :class:`BorrowerState`.

    ``grace_ms`` is how late a draw may be and still be judged exactly; it is added to the
    largest window to give the retention of recent draws. A rule with threshold 0 is off.
    """

    def __init__(self, rules: Sequence[Rule], grace_ms: int) -> None:
        self.rules = tuple(r for r in rules if r.threshold > 0)
        self.retention_ms = max((r.window_ms for r in self.rules), default=0) + grace_ms

    @classmethod
    def standard(cls, draws_24h: int, lenders_7d: int, grace_ms: int) -> AlertRules:
        """The registry's two rules with the given thresholds (0 switches a rule off)."""
        return cls(
            [Rule(DRAWS_24H, DAY_MS, draws_24h),
             Rule(LENDERS_7D, 7 * DAY_MS, lenders_7d, distinct_lenders=True)],
            grace_ms,
        )

    def prune(self, state: BorrowerState, stream_time_ms: int) -> None:
        """Forget draws older than the retention; advance the mark (never backwards)."""
        if not self.rules:
            return
        cutoff = stream_time_ms - self.retention_ms
        if cutoff <= state.draws_evicted_through_ms:
            return
        state.draws_evicted_through_ms = cutoff
        draws = state.recent_draws
        if draws and draws[0].at_ms <= cutoff:
            del draws[: bisect_right([d.at_ms for d in draws], cutoff)]

    def forget(self, state: BorrowerState, key: int) -> None:
        """A cancel withdrew the draw ``key``: it no longer counts in any window. A draw at
        which a rule already fired stays: the alert raised is not withdrawn, and the windows
        holding it cannot fire again (each rule fires once per window), so nothing is raised
        again because of it."""
        draws = state.recent_draws
        if any(d.key == key and not d.fired for d in draws):
            state.recent_draws = [d for d in draws if d.key != key or d.fired]

    def observe(
        self,
        state: BorrowerState,
        ev: dict[str, Any],
        key: int,
        *,
        stream_time_ms: int,
        duplicate: bool = False,
    ) -> list[Alert]:
        """Record the admitted event ``ev`` (event key ``key``) and return the alerts it raises.

        ``duplicate`` is the bucket layer's verdict (its day bucket had seen ``key``). Call after
        the buckets applied the event, with the partition's stream time including it. Returns
        new alerts, or, for a duplicate, the re-emissions described in the module docstring.
        """
        self.prune(state, stream_time_ms)
        if not self.rules or ev["event_type"] != DRAW:
            return []
        at = ev["occurred_at_ms"]
        if at <= state.draws_evicted_through_ms:
            return []  # too old to judge, and too old to tell from a replay
        draws = state.recent_draws
        if duplicate or any(d.key == key for d in draws):
            return self._reemit(state, ev["borrower"], at)
        insort(draws, RecentDraw(at, ev["lender_id"], key), key=lambda d: (d.at_ms, d.key))
        times = [d.at_ms for d in draws]
        alerts: list[Alert] = []
        for rule in self.rules:
            # the windows containing ``at`` are those ending at draws in [at, at + W)
            first, last = bisect_left(times, at), bisect_left(times, at + rule.window_ms)
            for i in range(first, last):
                end = draws[i]
                if rule.name in end.fired:
                    continue
                start = end.at_ms - rule.window_ms  # exclusive
                if start < state.draws_evicted_through_ms:
                    continue  # the window reaches into forgotten draws
                window = draws[bisect_right(times, start) : bisect_right(times, end.at_ms)]
                alert = self._judge(rule, ev["borrower"], end, window)
                if alert is not None:
                    end.fired.append(rule.name)
                    alerts.append(alert)
        return alerts

    def _judge(
        self, rule: Rule, borrower: str, end: RecentDraw, window: Sequence[RecentDraw]
    ) -> Alert | None:
        lenders = {d.lender for d in window}
        count = len(lenders) if rule.distinct_lenders else len(window)
        if count < rule.threshold or any(rule.name in d.fired for d in window):
            return None
        return _alert(rule, borrower, end, count, lenders)

    def _reemit(self, state: BorrowerState, borrower: str, at: int) -> list[Alert]:
        draws = state.recent_draws
        if not any(d.fired for d in draws):
            return []
        times = [d.at_ms for d in draws]
        out: list[Alert] = []
        for rule in self.rules:
            for i in range(bisect_left(times, at), bisect_left(times, at + rule.window_ms)):
                end = draws[i]
                if rule.name not in end.fired:
                    continue
                start = end.at_ms - rule.window_ms
                window = draws[bisect_right(times, start) : bisect_right(times, end.at_ms)]
                lenders = {d.lender for d in window}
                count = len(lenders) if rule.distinct_lenders else len(window)
                out.append(_alert(rule, borrower, end, count, lenders, reemitted=True))
        return out


def _alert(
    rule: Rule,
    borrower: str,
    end: RecentDraw,
    count: int,
    lenders: set[str],
    *,
    reemitted: bool = False,
) -> Alert:
    return Alert(
        alert_id=alert_id(borrower, rule.name, end.key),
        rule=rule.name,
        borrower=borrower,
        count=count,
        threshold=rule.threshold,
        window_start_ms=end.at_ms - rule.window_ms + 1,
        window_end_ms=end.at_ms,
        lenders=tuple(sorted(lenders)),
        triggered_at_ms=end.at_ms,
        reemitted=reemitted,
    )
