"""The metrics facade on ``prometheus_client``: the README's names and labels, process metrics,
one registry per instance, and an exposition that Prometheus' own ``promtool`` accepts."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.runtime.errors import MetricsError
from streams.runtime.metrics import (
    CONTENT_TYPE,
    METRICS,
    Counter,
    Gauge,
    Histogram,
    Metrics,
    Registry,
)

#: The registry's metrics as the README lists them: name -> (type, label names).
README_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "registry_events_in_total": ("counter", ("lender",)),
    "registry_events_admitted_total": ("counter", ("lender",)),
    "registry_events_rejected_total": ("counter", ("lender", "reason")),
    "registry_security_lender_mismatch_total": ("counter", ("lender",)),
    "registry_security_api_denied_total": ("counter", ("route", "reason")),
    "registry_consent_records_total": ("counter", ("lender", "action")),
    "registry_alerts_total": ("counter", ("rule",)),
    "registry_sink_rows_total": ("counter", ("table",)),
    "registry_sink_batch_rows": ("histogram", ()),
    "registry_sink_insert_seconds": ("histogram", ()),
    "registry_sink_failures_total": ("counter", ()),
    "registry_sink_dead_letter_rows_total": ("counter", ("table",)),
    "registry_consumer_lag_messages": ("gauge", ("group", "topic", "partition")),
    "registry_consumer_lag_seconds": ("gauge", ("group", "topic", "partition")),
    "registry_consumer_status": ("gauge", ("group", "status")),
    "registry_lender_freshness_seconds": ("gauge", ("lender",)),
    "registry_frequency_queries_total": ("counter", ("institution",)),
    "registry_frequency_query_seconds": ("histogram", ()),
    "registry_freshness_watermark_seconds": ("gauge", ()),
}
PROCESS_METRICS = ("process_cpu_seconds_total", "process_resident_memory_bytes",
                   "process_open_fds", "process_start_time_seconds")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a text exposition, parsed by the library's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def types(text: str) -> dict[str, str]:
    """``# TYPE`` of each family, under the name written on the TYPE line."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            out[name] = kind
    return out


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make setup` installs Debian's prometheus package"
    return path


def test_every_readme_metric_is_declared_with_its_labels() -> None:
    metrics = Metrics()
    declared = types(metrics.render())
    for name, (kind, labels) in README_METRICS.items():
        assert declared[name] == kind, name
        assert metrics.get(name).labelnames == labels, name
    registry_names = {n for n in declared if n.startswith("registry_")}
    assert registry_names == set(README_METRICS)


def test_values_and_labels_through_the_facade() -> None:
    metrics = Metrics()
    metrics.events_in.inc("lender-a")
    metrics.events_in.inc("lender-a", amount=4)
    metrics.events_rejected.inc("lender-b", "NO_CONSENT")
    metrics.sink_dead_letters.inc("admitted_events", amount=3)
    metrics.sink_batch_rows.observe(1234)
    metrics.sink_insert_seconds.observe(0.02)
    metrics.consumer_lag_messages.set(42, "credit-registry", "t", "3")
    metrics.consumer_status.set(1, "credit-registry", "OK")
    metrics.sink_failures.inc()
    values = samples(metrics.render())
    assert values[("registry_events_in_total", (("lender", "lender-a"),))] == 5
    assert values[("registry_events_rejected_total",
                   (("lender", "lender-b"), ("reason", "NO_CONSENT")))] == 1
    assert values[("registry_sink_dead_letter_rows_total", (("table", "admitted_events"),))] == 3
    assert values[("registry_sink_failures_total", ())] == 1
    lag_key = (("group", "credit-registry"), ("partition", "3"), ("topic", "t"))
    assert values[("registry_consumer_lag_messages", lag_key)] == 42
    assert values[("registry_sink_batch_rows_count", ())] == 1
    assert values[("registry_sink_batch_rows_sum", ())] == 1234
    assert metrics.events_in.value("lender-a") == 5
    assert metrics.events_in.value("nobody") == 0
    assert metrics.sink_batch_rows.count() == 1
    assert not any(name.endswith("_created") for name, _ in values)


def test_process_metrics_are_exported() -> None:
    values = samples(Metrics().render())
    names = {name for name, _ in values}
    for name in PROCESS_METRICS:
        assert name in names, name
    assert values[("process_resident_memory_bytes", ())] > 0


def test_each_instance_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.events_in.inc("x", amount=2)
    assert a.events_in.value("x") == 2
    assert b.events_in.value("x") == 0
    assert METRICS.events_in.value("only-in-a-test-instance") == 0
    assert a.collector_registry is not b.collector_registry


def test_label_values_are_escaped() -> None:
    registry = Registry()
    counter = registry.register(Counter("x_total", "help with \\ and\nnewline", ["k"]))
    nasty = 'a"b\\c\nd'
    counter.inc(nasty)
    text = registry.render()
    assert 'x_total{k="a\\"b\\\\c\\nd"} 1.0' in text
    assert "# HELP x_total help with \\\\ and\\nnewline" in text
    assert samples(text)[("x_total", (("k", nasty),))] == 1


def test_histogram_buckets_are_cumulative_and_end_at_count() -> None:
    registry = Registry()
    hist = registry.register(Histogram("d_seconds", "durations", [0.1, 0.5, 1.0]))
    for value in (0.05, 0.1, 0.3, 0.7, 2.0, 5.0):
        hist.observe(value)
    values = samples(registry.render())
    buckets = [(dict(labels)["le"], v) for (n, labels), v in values.items()
               if n == "d_seconds_bucket"]
    assert buckets == [("0.1", 2), ("0.5", 3), ("1.0", 4), ("+Inf", 6)]
    assert values[("d_seconds_count", ())] == 6
    assert values[("d_seconds_sum", ())] == pytest.approx(8.15)


def test_gauge_set_remove_series_and_float_values() -> None:
    registry = Registry()
    gauge = registry.register(Gauge("g", "a gauge", ["a"]))
    gauge.set(1.5, "x")
    gauge.set(2, "y")
    gauge.inc("y", amount=3)
    assert gauge.value("y") == 5
    assert sorted(gauge.series()) == [("x",), ("y",)]
    gauge.remove("y")
    gauge.remove("never-set")
    assert gauge.series() == [("x",)]
    assert samples(registry.render()) == {("g", (("a", "x"),)): 1.5}
    gauge.set(7, "y")  # a removed series can come back
    assert gauge.value("y") == 7


def test_freshness_watermark_has_no_sample_until_known() -> None:
    metrics = Metrics()
    key = ("registry_freshness_watermark_seconds", ())
    assert key not in samples(metrics.render())
    known: list[int | None] = [None]
    metrics.watch_freshness(lambda: known[0])
    assert key not in samples(metrics.render())
    known[0] = 1_700_000_000_250
    assert samples(metrics.render())[key] == 1_700_000_000.25

    def broken() -> int:
        raise RuntimeError("boom")

    metrics.watch_freshness(broken)
    assert key not in samples(metrics.render())  # the rest of the scrape still renders
    metrics.watch_freshness(None)
    assert key not in samples(metrics.render())


def test_exposition_negotiates_openmetrics() -> None:
    metrics = Metrics()
    metrics.events_in.inc("a")
    body, content_type = metrics.exposition(None)
    assert content_type == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    # the same exposition as render(), apart from process metrics moving between the calls
    def stable(text: str) -> list[str]:
        return [ln for ln in text.splitlines()
                if not ln.startswith(("process_", "python_gc_"))]

    assert stable(body.decode()) == stable(metrics.render())
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.decode().endswith("# EOF\n")
    assert 'registry_events_in_total{lender="a"} 1.0' in body.decode()


def test_wrong_label_count_negative_counter_and_bad_declarations_raise() -> None:
    registry = Registry()
    counter = registry.register(Counter("c_total", "c", ["a", "b"]))
    with pytest.raises(MetricsError):
        counter.inc("only-one")
    with pytest.raises(MetricsError):
        counter.inc("a", "b", amount=-1)
    with pytest.raises(MetricsError):
        Histogram("h", "h", [1.0, 0.5])
    with pytest.raises(MetricsError):
        Counter("bad name", "x")
    with pytest.raises(MetricsError):
        Gauge("g", "x", ["__reserved"])
    registry.register(Counter("dup_total", "x"))
    with pytest.raises(MetricsError):
        registry.register(Gauge("dup_total", "y"))
    with pytest.raises(MetricsError):
        Counter("unregistered_total", "x").inc()


def test_promtool_accepts_the_exposition() -> None:
    metrics = Metrics()
    metrics.events_rejected.inc("bank-a", "NO_CONSENT", amount=2)
    metrics.consumer_lag_seconds.set(1.5, "g", "t", "0")
    metrics.frequency_query_seconds.observe(0.003)
    metrics.watch_freshness(lambda: 1_700_000_000_000)
    result = subprocess.run([promtool(), "check", "metrics"], input=metrics.render(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""  # not even a lint warning
