"""The lender side: what a lender runs to publish into the registry.

* :mod:`~streams.lender.publisher` - the safe producer (acks=all + idempotence, bounded
  in-flight, keyed by borrower);
* :mod:`~streams.lender.jsonl` - ``registry publish`` (JSON Lines) and ``registry consent``;
* :mod:`~streams.lender.simulator` with :mod:`~streams.lender.population` - ``registry
  simulate``, a seeded multi-lender history plus live data, and
  :mod:`~streams.lender.ground_truth`, its independently computed expected outcome.
"""
