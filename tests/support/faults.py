"""Helpers shared by the fault tests (ClickHouse, Redis and broker outages, poison input):
committed offsets of a group, the worker's lag status, and the exact comparison with the oracle."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.settings import Settings
from tests.support.oracle import (
    expected_buckets,
    expected_rows,
    ledger_difference,
    stored_buckets,
)


async def committed_offsets(settings: Settings, group: str,
                            topic_filter: Callable[[str], bool]) -> dict[TopicPartition, int]:
    """The group's committed offsets on the topics ``topic_filter`` accepts (retries while the
    group coordinator is not elected yet, e.g. on a fresh or restarted broker)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        for attempt in range(40):
            try:
                offsets = await admin.list_consumer_group_offsets(group)
                break
            except KafkaError as exc:
                if not exc.retriable or attempt == 39:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if topic_filter(tp.topic)}


def lag_snapshot(settings: Settings) -> dict[str, Any] | None:
    """``GET /api/v1/lag`` of the worker, or None while it does not answer."""
    url = f"http://127.0.0.1:{settings.api_port}/api/v1/lag?points=2"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


async def group_status(settings: Settings, group: str) -> str | None:
    snapshot = await asyncio.to_thread(lag_snapshot, settings)
    if not snapshot:
        return None
    found = snapshot.get("groups", {}).get(group)
    return found["status"] if found else None


def assert_matches_oracle(stored: dict[str, Any], admitted: list[Any],
                          settings: Settings) -> None:
    """Ledger (every admitted event, cancels included), daily and hourly buckets (from the
    counted events; all-zero rows dropped) equal the oracle exactly; no duplicate in the
    ledger."""
    assert stored["ledger_duplicates"] == 0
    assert stored["ledger_rows"] == len(admitted)
    wrong_ledger = ledger_difference(stored["ledger"], admitted)
    assert not wrong_ledger, wrong_ledger
    daily, hourly = expected_buckets(admitted, settings.pseudonym_key_bytes, settings.tz)
    for name, got, want in (("daily", stored_buckets(stored["daily"]), expected_rows(daily)),
                            ("hourly", stored_buckets(stored["hourly"]),
                             expected_rows(hourly))):
        wrong = sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))
        assert not wrong, (f"{len(wrong)} {name} buckets differ from the oracle, e.g. "
                           + "; ".join(f"{k}: stored {got.get(k)} expected {want.get(k)}"
                                       for k in wrong[:4]))
