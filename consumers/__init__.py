"""Readers of the registry's streams: the ClickHouse sink, the lag monitor and the risk API."""
