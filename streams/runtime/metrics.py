"""The registry's metrics, on Prometheus' own client library (``prometheus_client``).

``prometheus_client`` keeps the series, their locking and the exposition formats (text 0.0.4,
and OpenMetrics when a scraper asks for it); this module only fixes the registry's metric
names and keeps the call sites short: label values are passed positionally, in the order the
metric declares its label names (``METRICS.events_rejected.inc(lender, reason)``,
``METRICS.events_in.inc(lender, amount=n)``, ``METRICS.sink_batch_rows.observe(rows)``).

What is promised:

* Each :class:`Metrics` owns its own :class:`prometheus_client.CollectorRegistry`; nothing is
  registered in the library's global default registry, so instances (tests, a worker
  re-executed in place) never collide. The process-wide instance is :data:`METRICS`.
* Besides the registry's own metrics, a scrape carries the process metrics (CPU seconds,
  resident and virtual memory, open and maximum file descriptors, start time), ``python_info``
  and the Python garbage collector's counts, from the library's collectors.
* The per-series ``*_created`` samples are turned off (:func:`disable_created_metrics`, a
  process-wide switch of the library): the exposition holds exactly the names the README lists.
* A wrong number of label values, a negative counter increment, or a name outside the classic
  Prometheus name rules raises :class:`MetricsError` instead of silently creating a
  differently-shaped series. The library's own locks make
  increments safe from any thread.
* ``registry_freshness_watermark_seconds`` is computed at scrape time from a source set with
  :meth:`Metrics.watch_freshness` (the risk API's ``as_of``); while that is unknown, or no
  source is set, the metric has no sample at all rather than a misleading 0.

The names are fixed in :class:`Metrics`; the Grafana dashboard (``infra/grafana``) and the
alert rules (``infra/prometheus/alerts.yml``) depend on them, and tests check both against a
real scrape.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import prometheus_client as prom
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder

from streams.runtime.errors import MetricsError

log = logging.getLogger(__name__)

#: Content type of :meth:`Registry.render` (Prometheus text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

#: Buckets for durations in seconds (ClickHouse inserts, API queries).
SECONDS_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: Buckets for rows per sink batch.
ROWS_BUCKETS: tuple[float, ...] = (
    1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 20000, 50000, 100000,
)

prom.disable_created_metrics()

# The classic (pre-UTF-8) name rules: what PromQL selects without quoting, and what the old
# hand-written registry enforced. prometheus_client itself now accepts any UTF-8 name.
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class _Metric:
    """One named metric of a :class:`Registry`, backed by a ``prometheus_client`` metric."""

    def __init__(self, name: str, labelnames: Sequence[str]) -> None:
        if not _METRIC_NAME.fullmatch(name):
            raise MetricsError(f"invalid metric name {name!r}")
        for label in labelnames:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__") or label == "le":
                raise MetricsError(f"{name}: invalid or reserved label name {label!r}")
        self.name = name
        self.labelnames: tuple[str, ...] = tuple(labelnames)

    def attach(self, registry: prom.CollectorRegistry) -> None:  # pragma: no cover
        raise NotImplementedError

    def _check(self, labelvalues: tuple[str, ...]) -> None:
        if len(labelvalues) != len(self.labelnames):
            raise MetricsError(
                f"{self.name} takes labels {self.labelnames}, got {len(labelvalues)} values"
            )

    def _samples(self, suffix: str = "") -> dict[tuple[str, ...], float]:
        """The current samples named ``name + suffix``, keyed by their label values."""
        out: dict[tuple[str, ...], float] = {}
        for family in self._collector.collect():
            for sample in family.samples:
                if sample.name == self.name + suffix:
                    out[tuple(sample.labels[n] for n in self.labelnames)] = sample.value
        return out

    _collector: Any


class _Wrapped(_Metric):
    """A metric kept by one ``prometheus_client`` metric object (with or without labels)."""

    _factory: Any = None

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = (),
                 **kwargs: Any) -> None:
        super().__init__(name, labelnames)
        self.help = help_text
        self._kwargs = kwargs
        try:  # validate names and buckets now, not at registration
            self._make(None)
        except ValueError as exc:
            raise MetricsError(f"{name}: {exc}") from None
        self._collector: Any = None
        self._children: dict[tuple[str, ...], Any] = {}

    def _make(self, registry: prom.CollectorRegistry | None) -> Any:
        return self._factory(self.name, self.help, self.labelnames, registry=registry,
                             **self._kwargs)

    def attach(self, registry: prom.CollectorRegistry) -> None:
        self._collector = self._make(registry)

    def _child(self, labelvalues: tuple[str, ...]) -> Any:
        child = self._children.get(labelvalues)
        if child is None:
            self._check(labelvalues)
            if self._collector is None:
                raise MetricsError(f"{self.name} is not registered in a Registry")
            child = self._collector.labels(*labelvalues) if self.labelnames else self._collector
            self._children[labelvalues] = child
        return child


class Counter(_Wrapped):
    """A monotonically increasing count. ``inc("lender-a")`` for a metric labelled ``lender``."""

    _factory = prom.Counter

    def inc(self, *labelvalues: str, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0) to the series named by ``labelvalues``."""
        if amount < 0:
            raise MetricsError(f"{self.name}: counters only go up (amount={amount})")
        self._child(labelvalues).inc(amount)

    def value(self, *labelvalues: str) -> float:
        self._check(labelvalues)
        return self._samples().get(labelvalues, 0.0)


class Gauge(_Wrapped):
    """A value that is set (or moved up and down); series can be removed when they vanish."""

    _factory = prom.Gauge

    def set(self, value: float, *labelvalues: str) -> None:
        self._child(labelvalues).set(value)

    def inc(self, *labelvalues: str, amount: float = 1.0) -> None:
        self._child(labelvalues).inc(amount)

    def dec(self, *labelvalues: str, amount: float = 1.0) -> None:
        self._child(labelvalues).dec(amount)

    def value(self, *labelvalues: str) -> float | None:
        self._check(labelvalues)
        return self._samples().get(labelvalues)

    def remove(self, *labelvalues: str) -> None:
        """Stop exporting the series (no-op if it does not exist)."""
        self._check(labelvalues)
        self._children.pop(labelvalues, None)
        if self.labelnames and self._collector is not None:
            self._collector.remove(*labelvalues)

    def series(self) -> list[tuple[str, ...]]:
        """The label-value tuples currently exported."""
        return list(self._samples())


class Histogram(_Wrapped):
    """Observations counted into fixed buckets (upper bounds, inclusive) plus sum and count."""

    _factory = prom.Histogram

    def __init__(self, name: str, help_text: str, buckets: Sequence[float],
                 labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames, buckets=tuple(buckets))

    def observe(self, value: float, *labelvalues: str) -> None:
        self._child(labelvalues).observe(value)

    def count(self, *labelvalues: str) -> int:
        self._check(labelvalues)
        return int(self._samples("_count").get(labelvalues, 0))


class SourcedGauge(_Metric):
    """An unlabelled gauge read from a callable at scrape time; no sample while it is None."""

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, ())
        self.help = help_text
        self._source: Callable[[], float | None] | None = None
        self._collector = self

    def attach(self, registry: prom.CollectorRegistry) -> None:
        registry.register(self)

    def set_source(self, source: Callable[[], float | None] | None) -> None:
        self._source = source

    def value(self) -> float | None:
        if self._source is None:
            return None
        try:
            return self._source()
        except Exception:  # a broken source must not break the whole scrape
            log.exception("metric %s: source failed", self.name)
            return None

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, self.help)]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, self.help)
        value = self.value()
        if value is not None:
            family.add_metric([], float(value))
        return [family]


_M = TypeVar("_M", bound=_Metric)


class Registry:
    """An ordered set of metrics with unique names, on a ``CollectorRegistry`` of its own."""

    def __init__(self) -> None:
        self.collector_registry = prom.CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, _Metric] = {}

    def register(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise MetricsError(f"metric {metric.name!r} registered twice")
        try:
            metric.attach(self.collector_registry)
        except ValueError as exc:  # a name clash with another metric's samples
            raise MetricsError(f"{metric.name}: {exc}") from None
        self._metrics[metric.name] = metric
        return metric

    def get(self, name: str) -> _Metric:
        return self._metrics[name]

    def render(self) -> str:
        """Everything registered, in Prometheus text format 0.0.4 (:data:`CONTENT_TYPE`)."""
        return prom.generate_latest(self.collector_registry).decode()

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """Body and content type for a scrape whose ``Accept`` header is ``accept``:
        OpenMetrics when the scraper asks for it, else text format 0.0.4."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.collector_registry), content_type


class Metrics(Registry):
    """The registry's named metrics. Label values are passed positionally in declared order."""

    def __init__(self) -> None:
        super().__init__()
        prom.ProcessCollector(registry=self.collector_registry)
        prom.PlatformCollector(registry=self.collector_registry)
        prom.GCCollector(registry=self.collector_registry)
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
        self.security_api_denied = r(Counter(
            "registry_security_api_denied_total", "Risk API requests refused: reason "
            "unauthorized (401, unknown or no token) or forbidden (403, scope missing).",
            ["route", "reason"]))
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
            "Rows ClickHouse refused (not an outage), written to the dead-letter table instead "
            "of their target table, by target table.", ["table"]))
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
        self.freshness_watermark = r(SourcedGauge(
            "registry_freshness_watermark_seconds",
            "Unix time up to which frequency answers are complete (the risk API's as_of); "
            "no sample while unknown."))

    def watch_freshness(self, as_of_ms: Callable[[], int | None] | None) -> None:
        """Export ``as_of_ms()`` (epoch ms, or None while unknown) as
        ``registry_freshness_watermark_seconds``, read at each scrape."""
        if as_of_ms is None:
            self.freshness_watermark.set_source(None)
            return

        def seconds() -> float | None:
            ms = as_of_ms()
            return None if ms is None else ms / 1000.0

        self.freshness_watermark.set_source(seconds)


#: The process-wide registry incremented by the worker, the sink and the API.
METRICS = Metrics()
