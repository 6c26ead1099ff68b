"""The hand-written Prometheus registry renders valid text format 0.0.4."""

from __future__ import annotations

import re

import pytest

from consumers.metrics import Counter, Gauge, Histogram, Metrics, MetricsError, Registry

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
LABELS = rf"\{{(?:{NAME}={LABEL_VALUE})(?:,{NAME}={LABEL_VALUE})*\}}"
VALUE = r"(?:[+-]?Inf|NaN|[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
SAMPLE = re.compile(rf"^({NAME})({LABELS})? ({VALUE})$")
HELP = re.compile(rf"^# HELP ({NAME}) .*$")
TYPE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")
LABEL_PAIR = re.compile(rf"({NAME})=({LABEL_VALUE})")


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Check every line and return the samples; the samples of a metric follow its TYPE."""
    assert text.endswith("\n")
    samples = []
    declared: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if m := HELP.match(line):
            continue
        if m := TYPE.match(line):
            assert m.group(1) not in declared, f"TYPE twice for {m.group(1)}"
            declared[m.group(1)] = m.group(2)
            current = m.group(1)
            continue
        m = SAMPLE.match(line)
        assert m, f"not a valid exposition line: {line!r}"
        name = m.group(1)
        assert current and name.startswith(current), f"{name} outside its metric block"
        labels = {k: v[1:-1] for k, v in LABEL_PAIR.findall(m.group(2) or "")}
        samples.append((name, labels, float(m.group(3).replace("Inf", "inf"))))
    return samples


def test_full_registry_renders_valid_text() -> None:
    metrics = Metrics()
    metrics.events_in.inc("lender-a")
    metrics.events_in.inc("lender-a", amount=4)
    metrics.events_rejected.inc("lender-b", "NO_CONSENT")
    metrics.sink_batch_rows.observe(1234)
    metrics.sink_insert_seconds.observe(0.02)
    metrics.consumer_lag_messages.set(42, "credit-registry", "t", "3")
    metrics.consumer_status.set(1, "credit-registry", "OK")
    metrics.sink_failures.inc()
    samples = parse(metrics.render())
    values = {(n, tuple(sorted(labels.items()))): v for n, labels, v in samples}
    assert values[("registry_events_in_total", (("lender", "lender-a"),))] == 5
    assert values[("registry_sink_failures_total", ())] == 1
    lag_key = (("group", "credit-registry"), ("partition", "3"), ("topic", "t"))
    assert values[("registry_consumer_lag_messages", lag_key)] == 42
    for name in (
        "registry_events_in_total", "registry_events_admitted_total",
        "registry_events_rejected_total", "registry_security_lender_mismatch_total",
        "registry_consent_records_total", "registry_alerts_total", "registry_sink_rows_total",
        "registry_sink_batch_rows", "registry_sink_insert_seconds",
        "registry_sink_failures_total", "registry_consumer_lag_messages",
        "registry_consumer_lag_seconds", "registry_consumer_status",
        "registry_lender_freshness_seconds", "registry_frequency_queries_total",
        "registry_frequency_query_seconds",
    ):
        assert f"# TYPE {name} " in metrics.render()


def test_label_values_are_escaped() -> None:
    registry = Registry()
    counter = registry.register(Counter("x_total", "help with \\ and\nnewline", ["k"]))
    nasty = 'a"b\\c\nd'
    counter.inc(nasty)
    text = registry.render()
    assert 'x_total{k="a\\"b\\\\c\\nd"} 1' in text
    assert "# HELP x_total help with \\\\ and\\nnewline" in text
    (sample,) = parse(text)
    assert sample[1]["k"] == 'a\\"b\\\\c\\nd'


def test_histogram_buckets_are_cumulative_and_end_at_count() -> None:
    registry = Registry()
    hist = registry.register(Histogram("d_seconds", "durations", [0.1, 0.5, 1.0]))
    for value in (0.05, 0.1, 0.3, 0.7, 2.0, 5.0):
        hist.observe(value)
    samples = parse(registry.render())
    buckets = [(labels["le"], v) for n, labels, v in samples if n == "d_seconds_bucket"]
    assert buckets == [("0.1", 2), ("0.5", 3), ("1", 4), ("+Inf", 6)]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    assert ("d_seconds_count", {}, 6.0) in samples
    (total,) = [v for n, _, v in samples if n == "d_seconds_sum"]
    assert total == pytest.approx(8.15)


def test_gauge_set_remove_and_float_values() -> None:
    registry = Registry()
    gauge = registry.register(Gauge("g", "a gauge", ["a"]))
    gauge.set(1.5, "x")
    gauge.set(2, "y")
    gauge.remove("y")
    samples = parse(registry.render())
    assert samples == [("g", {"a": "x"}, 1.5)]


def test_wrong_label_count_and_negative_counter_raise() -> None:
    counter = Counter("c_total", "c", ["a", "b"])
    with pytest.raises(MetricsError):
        counter.inc("only-one")
    with pytest.raises(MetricsError):
        counter.inc("a", "b", amount=-1)
    with pytest.raises(MetricsError):
        Histogram("h", "h", [1.0, 0.5])
    with pytest.raises(MetricsError):
        Counter("bad name", "x")
    registry = Registry()
    registry.register(Counter("dup_total", "x"))
    with pytest.raises(MetricsError):
        registry.register(Gauge("dup_total", "y"))
