"""Memory: RSS of the aggregation state for B borrowers with open windows.

``python -m bench.memory --borrowers 1000000``. One synthetic admitted event per borrower
(occurred in the last 24 h, so its day and hour buckets are open) goes through
``Aggregator.process`` in batches of 2000; the states are kept as the Faust table keeps them in
memory (``bytes(pseudonym) -> StateCodec.dump(state)`` in a dict). RSS is read with psutil
before and after (after a gc), in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import gc
import random
import time

import psutil

from bench import emit
from schemas.calendar import HOUR_MS, Calendar
from schemas.pseudonym import partition_of
from streams.aggregation import Aggregator, StateCodec
from streams.buckets import BucketPolicy
from streams.settings import Settings

BATCH = 2000
PARTITIONS = 6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--borrowers", type=int, default=1_000_000)
    args = parser.parse_args()
    settings = Settings()
    proc = psutil.Process()
    gc.collect()
    before = proc.memory_info().rss
    aggregator = Aggregator(BucketPolicy(Calendar(settings.tz), settings.grace_hours * HOUR_MS,
                                         settings.hourly_state_hours * HOUR_MS))
    codec = StateCodec()
    table: dict[bytes, bytes] = {}
    rng = random.Random(3)
    now = int(time.time() * 1000)
    started = time.perf_counter()
    offsets = [0] * PARTITIONS
    for start in range(0, args.borrowers, BATCH):
        parts: dict[int, list[dict]] = {}
        for i in range(start, min(start + BATCH, args.borrowers)):
            borrower = f"{rng.getrandbits(128):032x}"
            ev = {"borrower": borrower, "lender_id": f"lender-{i % 5}", "event_id": f"e{i}",
                  "loan_id": f"L-{i}", "event_type": "draw" if i % 3 else "repayment",
                  "amount_minor": 10_000 + i % 9_000, "currency": "CNY",
                  "occurred_at_ms": now - rng.randrange(86_400_000), "product": "cash",
                  "admitted_at_ms": now}
            parts.setdefault(partition_of(borrower, PARTITIONS), []).append(ev)
        for p, evs in parts.items():
            # (items, states, ...): the tuple grows as the aggregator learns new outputs
            states = aggregator.process(p, offsets[p], evs,
                                        lambda b: codec.load(table.get(b.encode())))[1]
            offsets[p] += 1
            for borrower, state in states.items():
                table[borrower.encode()] = codec.dump(state)
    elapsed = time.perf_counter() - started
    gc.collect()
    after = proc.memory_info().rss
    value_bytes = sum(len(v) for v in table.values())
    emit({"borrowers": len(table), "rss_before_mib": before / 2**20,
          "rss_after_mib": after / 2**20, "state_mib": (after - before) / 2**20,
          "bytes_per_borrower": (after - before) / len(table),
          "encoded_value_bytes_per_borrower": value_bytes / len(table),
          "feed_s": elapsed, "us_per_event": elapsed / len(table) * 1e6})


if __name__ == "__main__":
    main()
