"""The test suite: ``unit/`` (no services), ``integration/`` (real Kafka, Redis, ClickHouse)
and ``support/``, the helpers both use and the benchmark suite imports as ``tests.support``."""
