"""Unit tests of ``consumers/clickhouse/``."""
