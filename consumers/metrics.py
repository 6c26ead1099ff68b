"""A tiny Prometheus registry: counters, gauges and histograms rendered as text format 0.0.4.

Why not ``prometheus_client``: the registry needs three metric kinds, one process, no
multiprocess mode and no push gateway; a hundred lines we own beat a dependency whose global
default registry leaks between tests.

What is promised:

* Increments are one dict lookup and one add, keyed by the tuple of label *values* given
  positionally in the order the metric declared its label names. They are meant to be called
  from the event-loop thread (the worker, the API); they take no lock, so two threads racing on
  the same series could lose an increment.
* ``render()`` yields a valid text exposition: a ``# HELP`` and ``# TYPE`` line per metric, then
  one sample per line; label values are escaped (``\\``, ``"`` and newline), histogram buckets
  are cumulative and end with ``le="+Inf"`` equal to ``_count``.
* A wrong number of label values raises :class:`MetricsError` instead of silently creating a
  differently-shaped series.

The names of the registry's own metrics are fixed in :class:`Metrics`; dashboards and alerts
depend on them.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import TypeVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Buckets for durations in seconds (ClickHouse inserts, API queries).
SECONDS_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: Buckets for rows per sink batch.
ROWS_BUCKETS: tuple[float, ...] = (
    1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 20000, 50000, 100000,
)


class MetricsError(ValueError):
    """A metric used against its declaration (wrong label count, bad name or buckets)."""


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def escape_label_value(value: str) -> str:
    """Escape a label value as the text format requires: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _check_name(name: str) -> None:
    ok = name and (name[0].isalpha() or name[0] in "_:")
    if not ok or not all(c.isalnum() or c in "_:" for c in name):
        raise MetricsError(f"invalid metric or label name {name!r}")


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        _check_name(name)
        for label in labelnames:
            _check_name(label)
            if label == "le" or label.startswith("__"):
                raise MetricsError(f"reserved label name {label!r}")
        self.name = name
        self.help = help_text
        self.labelnames: tuple[str, ...] = tuple(labelnames)
        self._arity = len(self.labelnames)

    def _key(self, labelvalues: tuple[str, ...]) -> tuple[str, ...]:
        if len(labelvalues) != self._arity:
            raise MetricsError(
                f"{self.name} takes labels {self.labelnames}, got {len(labelvalues)} values"
            )
        return labelvalues

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> Iterable[str]:  # pragma: no cover - overridden
        return ()

    def render(self) -> str:
        return "\n".join([*self.header(), *self.samples()]) + "\n"


class Counter(_Metric):
    """A monotonically increasing count. ``inc("lender-a")`` for a metric labelled ``lender``."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[tuple[str, ...], float] = {} if labelnames else {(): 0.0}

    def inc(self, *labelvalues: str, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0) to the series named by ``labelvalues``."""
        if amount < 0:
            raise MetricsError(f"{self.name}: counters only go up (amount={amount})")
        key = self._key(labelvalues)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labelvalues: str) -> float:
        return self._values.get(self._key(labelvalues), 0.0)

    def samples(self) -> Iterable[str]:
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_labels_text(self.labelnames, key)} {_format_value(value)}"


class Gauge(_Metric):
    """A value that is set (or moved up and down); series can be removed when they vanish."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def set(self, value: float, *labelvalues: str) -> None:
        self._values[self._key(labelvalues)] = float(value)

    def inc(self, *labelvalues: str, amount: float = 1.0) -> None:
        key = self._key(labelvalues)
        self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, *labelvalues: str, amount: float = 1.0) -> None:
        self.inc(*labelvalues, amount=-amount)

    def value(self, *labelvalues: str) -> float | None:
        return self._values.get(self._key(labelvalues))

    def remove(self, *labelvalues: str) -> None:
        self._values.pop(self._key(labelvalues), None)

    def series(self) -> list[tuple[str, ...]]:
        """The label-value tuples currently exported."""
        return list(self._values)

    def samples(self) -> Iterable[str]:
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_labels_text(self.labelnames, key)} {_format_value(value)}"


class Histogram(_Metric):
    """Observations counted into fixed buckets (upper bounds, inclusive) plus sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        buckets: Sequence[float],
        labelnames: Sequence[str] = (),
    ) -> None:
        super().__init__(name, help_text, labelnames)
        bounds = [float(b) for b in buckets if not math.isinf(b)]
        if not bounds or any(a >= b for a, b in pairwise(bounds)):
            raise MetricsError(f"{name}: buckets must be non-empty and strictly increasing")
        self.bounds: tuple[float, ...] = tuple(bounds)
        # Per series: [count in bucket 0..n-1, count above the last bound, sum].
        self._series: dict[tuple[str, ...], list[float]] = {}
        if not labelnames:
            self._series[()] = [0.0] * (len(self.bounds) + 2)

    def observe(self, value: float, *labelvalues: str) -> None:
        key = self._key(labelvalues)
        cells = self._series.get(key)
        if cells is None:
            cells = self._series[key] = [0.0] * (len(self.bounds) + 2)
        cells[bisect_left(self.bounds, value)] += 1
        cells[-1] += value

    def count(self, *labelvalues: str) -> int:
        cells = self._series.get(self._key(labelvalues))
        return int(sum(cells[:-1])) if cells else 0

    def samples(self) -> Iterable[str]:
        names = self.labelnames
        for key, cells in sorted(self._series.items()):
            running = 0.0
            for bound, in_bucket in zip(self.bounds, cells, strict=False):
                running += in_bucket
                le = f'le="{_format_value(bound)}"'
                yield f"{self.name}_bucket{_labels_text(names, key, le)} {_format_value(running)}"
            running += cells[len(self.bounds)]
            inf = 'le="+Inf"'
            yield f"{self.name}_bucket{_labels_text(names, key, inf)} {_format_value(running)}"
            yield f"{self.name}_sum{_labels_text(names, key)} {_format_value(cells[-1])}"
            yield f"{self.name}_count{_labels_text(names, key)} {_format_value(running)}"


_M = TypeVar("_M", bound=_Metric)


class Registry:
    """An ordered set of metrics with unique names."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def register(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise MetricsError(f"metric {metric.name!r} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def get(self, name: str) -> _Metric:
        return self._metrics[name]

    def render(self) -> str:
        """The whole registry in Prometheus text format 0.0.4."""
        return "".join(metric.render() for metric in self._metrics.values())


class Metrics(Registry):
    """The registry's named metrics. Label values are passed positionally in declared order."""

    def __init__(self) -> None:
        super().__init__()
        r = self.register
        # --- admission ------------------------------------------------------------------
        self.events_in = r(Counter(
            "registry_events_in_total", "Loan events read from lender topics.", ["lender"]))
        self.events_admitted = r(Counter(
            "registry_events_admitted_total", "Loan events admitted (consent in force).",
            ["lender"]))
        self.events_rejected = r(Counter(
            "registry_events_rejected_total", "Loan events rejected, by reason code.",
            ["lender", "reason"]))
        self.security_lender_mismatch = r(Counter(
            "registry_security_lender_mismatch_total",
            "Events whose lender_id differs from the lender owning the topic.", ["lender"]))
        self.consent_records = r(Counter(
            "registry_consent_records_total", "Consent records applied, by action.",
            ["lender", "action"]))
        self.alerts = r(Counter(
            "registry_alerts_total", "Velocity alerts raised, by rule.", ["rule"]))
        # --- ClickHouse sink --------------------------------------------------------------
        self.sink_rows = r(Counter(
            "registry_sink_rows_total", "Rows inserted into ClickHouse, by table.", ["table"]))
        self.sink_batch_rows = r(Histogram(
            "registry_sink_batch_rows", "Rows per ClickHouse insert.", ROWS_BUCKETS))
        self.sink_insert_seconds = r(Histogram(
            "registry_sink_insert_seconds", "Duration of one ClickHouse insert.",
            SECONDS_BUCKETS))
        self.sink_failures = r(Counter(
            "registry_sink_failures_total", "Failed ClickHouse insert attempts."))
        self.sink_dead_letters = r(Counter(
            "registry_sink_dead_letter_rows_total",
            "Rows ClickHouse refused, stored in sink_dead_letters, by table.", ["table"]))
        # --- consumer lag -----------------------------------------------------------------
        self.consumer_lag_messages = r(Gauge(
            "registry_consumer_lag_messages", "Log-end offset minus committed offset.",
            ["group", "topic", "partition"]))
        self.consumer_lag_seconds = r(Gauge(
            "registry_consumer_lag_seconds", "Age of the oldest unconsumed message.",
            ["group", "topic", "partition"]))
        self.consumer_status = r(Gauge(
            "registry_consumer_status",
            "1 for the group's current status (OK, WARN, STALLED, STOPPED, ERROR), else 0.",
            ["group", "status"]))
        self.lender_freshness_seconds = r(Gauge(
            "registry_lender_freshness_seconds",
            "Seconds since the newest message on the lender's loans topic.", ["lender"]))
        # --- risk API ---------------------------------------------------------------------
        self.frequency_queries = r(Counter(
            "registry_frequency_queries_total", "Frequency queries answered, by institution.",
            ["institution"]))
        self.frequency_query_seconds = r(Histogram(
            "registry_frequency_query_seconds", "Duration of one frequency query.",
            SECONDS_BUCKETS))


#: The process-wide registry incremented by the worker, the sink and the API.
METRICS = Metrics()
