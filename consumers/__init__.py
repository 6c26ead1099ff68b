"""Readers of the registry's streams: the ClickHouse sink, the lag monitor and the risk API.

Owns everything that reads the registry's topics or ClickHouse to answer. May import
``schemas`` and ``streams`` (its settings, :mod:`streams.runtime` and the consent store);
nothing of ``streams`` imports it but the composition modules.
"""
